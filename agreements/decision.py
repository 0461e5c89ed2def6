"""The one policy decision: may this agency have these fields, for this purpose, now?

Decisions are values: :class:`Permit` with the exact fields and forms, or
:class:`Deny` with a stable code and a reason a person can act on. Deny is the
default; each rule below names the obligation it implements. Every release
path in the broker calls :func:`decide`; none decides on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from agreements.models import Agreement, OutputKind, ReleasedField


@dataclass(frozen=True)
class ReleaseRequest:
    """What a recipient asks for. ``fields`` None means "everything I am allowed"."""

    agency: str
    purpose: str
    output: OutputKind
    on: date
    fields: tuple[tuple[str, str], ...] | None = None  # (dataset, field) pairs


@dataclass(frozen=True)
class SupplyRequest:
    """A provider offering records of a dataset under an agreement."""

    agency: str
    dataset: str
    on: date


@dataclass(frozen=True)
class Permit:
    """Allowed: exactly these fields, in these forms."""

    agreement_id: str
    agreement_version: int
    fields: tuple[ReleasedField, ...] = ()
    reveal_record_reference: bool = False


@dataclass(frozen=True)
class Deny:
    """Refused: ``code`` is stable for machines, ``reason`` says why and what to do."""

    code: str
    reason: str


Decision = Permit | Deny


def _agreement_in_force(agreement: Agreement, on: date) -> Deny | None:
    # Only an active agreement shares anything (ICO code: sharing must rest on an agreed basis).
    if agreement.status != "active":
        return Deny(
            "agreement_not_active",
            f"agreement '{agreement.id}' is {agreement.status}; only an active agreement shares",
        )
    # A version is not in force before its effective date.
    if on < agreement.effective_from:
        return Deny(
            "agreement_not_yet_effective", f"agreement '{agreement.id}' is not yet in force"
        )
    # Fail closed at expiry: nothing is shared under an expired agreement.
    if on >= agreement.expires_on:
        return Deny("agreement_expired", f"agreement '{agreement.id}' has expired; renew it")
    # Fail closed when the review is overdue (storage limitation and accountability).
    if on > agreement.review_by:
        return Deny(
            "agreement_review_overdue",
            f"agreement '{agreement.id}' is past its review date; its DPOs must review it",
        )
    return None


# One return per rule reads as the checklist it is; merging them would hide which rule denied.
def decide(agreement: Agreement, request: ReleaseRequest) -> Decision:  # noqa: PLR0911
    """Decide a release request against one agreement version; deny by default."""
    refused = _agreement_in_force(agreement, request.on)
    if refused is not None:
        return refused
    party = agreement.party(request.agency)
    # Only parties to the agreement receive anything under it.
    if party is None:
        return Deny(
            "agency_not_party", f"agency '{request.agency}' is not a party to this agreement"
        )
    # A party must hold the recipient role to receive (purpose limitation).
    if "recipient" not in party.roles:
        return Deny("agency_not_recipient", f"agency '{request.agency}' is not a recipient")
    # Purpose limitation: only declared purposes.
    if agreement.purpose(request.purpose) is None:
        return Deny("purpose_unknown", f"purpose '{request.purpose}' is not in this agreement")
    release = next(
        (
            r
            for r in agreement.releases
            if r.purpose == request.purpose and r.recipient == request.agency
        ),
        None,
    )
    # Data minimisation: a recipient receives only what a release grants it for this purpose.
    if release is None:
        return Deny(
            "no_release_for_recipient",
            f"nothing is released to '{request.agency}' for purpose '{request.purpose}'",
        )
    if request.output not in release.outputs:
        return Deny(
            "output_not_allowed",
            f"output '{request.output}' is not allowed for purpose '{request.purpose}'",
        )
    granted = {(f.dataset, f.field): f for f in release.fields}
    # An empty request is an error, not "everything": it would still reveal a match.
    if request.fields is not None and not request.fields:
        return Deny("fields_empty", "name at least one field, or omit the list for all permitted")
    if request.fields is None:
        chosen = release.fields
    else:
        missing = [pair for pair in request.fields if pair not in granted]
        # Minimisation again: asking for one field too many refuses the request.
        if missing:
            names = ", ".join(f"{d}.{f}" for d, f in missing)
            return Deny(
                "field_not_permitted",
                f"not released to '{request.agency}' for '{request.purpose}': {names}",
            )
        chosen = tuple(granted[pair] for pair in dict.fromkeys(request.fields))
    return Permit(
        agreement_id=agreement.id,
        agreement_version=agreement.version,
        fields=chosen,
        reveal_record_reference=release.reveal_record_reference,
    )


def decide_supply(agreement: Agreement, request: SupplyRequest) -> Decision:
    """Decide whether a provider may supply records of a dataset; deny by default."""
    refused = _agreement_in_force(agreement, request.on)
    if refused is not None:
        return refused
    dataset = agreement.dataset(request.dataset)
    if dataset is None:
        return Deny("dataset_unknown", f"dataset '{request.dataset}' is not in this agreement")
    # Only the declared provider supplies a dataset (accountability for accuracy).
    if dataset.provider != request.agency:
        return Deny(
            "agency_not_provider",
            f"agency '{request.agency}' is not the provider of dataset '{request.dataset}'",
        )
    return Permit(agreement_id=agreement.id, agreement_version=agreement.version)
