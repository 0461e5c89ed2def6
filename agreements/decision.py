"""The one policy decision: may this agency have these fields, for this purpose, now?

Decisions are values: :class:`Permit` with the exact fields and forms, or
:class:`Deny` with a stable code (the rule that refused) and a reason a person
can act on. Deny is the default; each rule below names the obligation it
implements. Every release path in the broker calls :func:`decide_under`
(which calls :func:`decide`); none decides on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Literal

from agreements.models import Agreement, OutputKind, PartyRole, ReleasedField, ReleaseForm

# How a version is being asked:
# - live: the version in force now answers a request;
# - pending: a later, already activated version whose effective date has not
#   come; it can only narrow what the live version permits (a narrower version
#   applies at once, a wider one waits for its date);
# - received_under: the version records were received under; it too can only
#   narrow, so a later wider version never widens what was shared under it;
# - rehearsal: a DPO's policy test of a draft, which ignores status and approvals.
Mode = Literal["live", "pending", "received_under", "rehearsal"]


@dataclass(frozen=True)
class ReleaseRequest:
    """What a recipient asks for. ``fields`` None means "everything I am allowed"."""

    agency: str
    purpose: str
    output: OutputKind
    on: date
    fields: tuple[tuple[str, str], ...] | None = None  # (dataset, field) pairs
    role: PartyRole = "recipient"


@dataclass(frozen=True)
class SupplyRequest:
    """A provider offering records of a dataset under an agreement."""

    agency: str
    dataset: str
    on: date


@dataclass(frozen=True)
class Permit:
    """Allowed: exactly these fields, in these forms. ``rule`` names the release that allowed it."""

    agreement_id: str
    agreement_version: int
    fields: tuple[ReleasedField, ...] = ()
    reveal_record_reference: bool = False
    minimum_cell_size: int = 5
    rule: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Deny:
    """Refused: ``code`` is the stable name of the rule that refused; ``reason`` says what to do."""

    code: str
    reason: str

    @property
    def rule(self) -> str:
        """The rule that refused, which is the code."""
        return self.code


Decision = Permit | Deny


def _status_problem(agreement: Agreement, mode: Mode) -> Deny | None:
    if mode == "rehearsal":
        return None
    allowed = ("active", "superseded") if mode == "received_under" else ("active",)
    # Only an active agreement shares anything (ICO code: sharing rests on an agreed basis).
    if agreement.status not in allowed:
        why = f" ({agreement.status_reason})" if agreement.status_reason else ""
        return Deny(
            "agreement_not_active",
            f"agreement '{agreement.id}' version {agreement.version} is "
            f"{agreement.status}{why}; only an active agreement shares",
        )
    # An active version nobody approved is a defect; it never shares.
    approved = {a.party for a in agreement.approvals}
    missing = [p.id for p in agreement.parties if p.id not in approved]
    if missing:
        return Deny(
            "agreement_not_approved",
            f"agreement '{agreement.id}' version {agreement.version} lacks approval by "
            f"{', '.join(missing)}",
        )
    return None


def _dates_problem(agreement: Agreement, on: date, mode: Mode) -> Deny | None:
    if mode == "received_under":
        return None
    # A version is not in force before its effective date.
    if mode in ("live", "rehearsal") and on < agreement.effective_from:
        return Deny(
            "agreement_not_yet_effective",
            f"agreement '{agreement.id}' version {agreement.version} takes effect on "
            f"{agreement.effective_from.isoformat()}",
        )
    # Fail closed at expiry: nothing is shared under an expired agreement.
    if on >= agreement.expires_on:
        return Deny("agreement_expired", f"agreement '{agreement.id}' has expired; renew it")
    # Fail closed when the review is overdue beyond its grace period.
    review = agreement.review_by
    if review is not None and on > review + timedelta(days=agreement.grace_days):
        return Deny(
            "agreement_review_overdue",
            f"agreement '{agreement.id}' is past its review date and grace period; "
            "its DPOs must review and renew it",
        )
    return None


def review_warnings(agreement: Agreement, on: date) -> tuple[str, ...]:
    """Warnings due to the agreement's contacts on ``on`` (review overdue, within grace)."""
    review = agreement.review_by
    if review is None or on <= review:
        return ()
    stops = review + timedelta(days=agreement.grace_days)
    return (
        f"review_overdue: agreement '{agreement.id}' was due for review on "
        f"{review.isoformat()}; it stops sharing after {stops.isoformat()} unless renewed",
    )


def in_force_problem(agreement: Agreement, on: date, mode: Mode = "live") -> Deny | None:
    """Why this version cannot share anything on ``on`` in this mode, or None."""
    return _status_problem(agreement, mode) or _dates_problem(agreement, on, mode)


# One return per rule reads as the checklist it is; merging them would hide which rule denied.
def decide(  # noqa: PLR0911
    agreement: Agreement, request: ReleaseRequest, *, mode: Mode = "live"
) -> Decision:
    """Decide a release request against one agreement version; deny by default."""
    refused = in_force_problem(agreement, request.on, mode)
    if refused is not None:
        return refused
    party = agreement.party(request.agency)
    # Only parties to the agreement receive anything under it.
    if party is None:
        return Deny(
            "agency_not_party", f"agency '{request.agency}' is not a party to this agreement"
        )
    # A party acts only in the roles the agreement gives it, and receives only as a recipient.
    if request.role not in party.roles or "recipient" not in party.roles:
        role = request.role if request.role not in party.roles else "recipient"
        return Deny(f"agency_not_{role}", f"agency '{request.agency}' is not a {role}")
    # Purpose limitation: only declared purposes.
    if agreement.purpose(request.purpose) is None:
        return Deny("purpose_unknown", f"purpose '{request.purpose}' is not in this agreement")
    release = agreement.release_for(request.purpose, request.agency)
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
        minimum_cell_size=release.minimum_cell_size,
        rule=f"release of '{request.purpose}' to '{request.agency}' (version {agreement.version})",
        warnings=review_warnings(agreement, request.on) if mode != "received_under" else (),
    )


def decide_supply(agreement: Agreement, request: SupplyRequest, *, mode: Mode = "live") -> Decision:
    """Decide whether a provider may supply records of a dataset; deny by default."""
    refused = in_force_problem(agreement, request.on, mode)
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
    return Permit(
        agreement_id=agreement.id,
        agreement_version=agreement.version,
        rule=f"dataset '{request.dataset}' supplied by '{request.agency}'",
        warnings=review_warnings(agreement, request.on),
    )


# --- versions -------------------------------------------------------------

# (finer, coarser) pairs; every form is finer than "redacted" and coarser than "as_supplied".
_COARSER: frozenset[tuple[str, str]] = frozenset(
    {("age", "age_band"), ("postcode_sector", "postcode_district")}
)


def coarser_form(first: ReleaseForm, second: ReleaseForm) -> ReleaseForm:
    """The coarser of two forms of one field; two unrelated forms give "redacted"."""
    if second in (first, "as_supplied") or first == "redacted":
        return first
    if first == "as_supplied" or second == "redacted" or (first, second) in _COARSER:
        return second
    if (second, first) in _COARSER:
        return first
    return "redacted"


def narrowest(first: Decision, second: Decision) -> Decision:
    """What both decisions allow: a deny wins; otherwise common fields in their coarser form."""
    if isinstance(first, Deny):
        return first
    if isinstance(second, Deny):
        return second
    other = {(f.dataset, f.field): f.form for f in second.fields}
    fields = tuple(
        f.model_copy(update={"form": coarser_form(f.form, other[(f.dataset, f.field)])})
        for f in first.fields
        if (f.dataset, f.field) in other
    )
    if first.fields and not fields:
        return Deny(
            "field_not_permitted",
            f"version {second.agreement_version} releases none of the requested fields",
        )
    return replace(
        first,
        fields=fields,
        reveal_record_reference=first.reveal_record_reference and second.reveal_record_reference,
        minimum_cell_size=max(first.minimum_cell_size, second.minimum_cell_size),
        rule=f"{first.rule}, narrowed by {second.rule}"
        if second.rule != first.rule
        else first.rule,
        warnings=tuple(dict.fromkeys((*first.warnings, *second.warnings))),
    )


def current_version(versions: Sequence[Agreement], on: date) -> Agreement | None:
    """The version in force on ``on``: the latest active one already effective."""
    candidates = [v for v in versions if v.status == "active" and v.effective_from <= on]
    return max(candidates, key=lambda v: v.version, default=None)


def _no_version(versions: Sequence[Agreement], on: date) -> Deny:
    if not versions:
        return Deny("agreement_unknown", "no version of this agreement is loaded")
    latest = max(versions, key=lambda v: v.version)
    refused = in_force_problem(latest, on)
    return refused or Deny(
        "agreement_not_active", f"agreement '{latest.id}' has no version in force"
    )


def decide_under(
    versions: Sequence[Agreement], request: ReleaseRequest, *, received_under: int | None = None
) -> Decision:
    """Decide against every version of one agreement, as the broker must.

    The version in force decides; any later activated version (not yet
    effective) and the version the records were ``received_under`` can only
    narrow that decision, never widen it.
    """
    current = current_version(versions, request.on)
    if current is None:
        return _no_version(versions, request.on)
    decision = decide(current, request)
    for later in versions:
        if later.version > current.version and later.status == "active":
            decision = narrowest(decision, decide(later, request, mode="pending"))
    if received_under is not None and received_under != current.version:
        original = next((v for v in versions if v.version == received_under), None)
        if original is None:
            return Deny(
                "agreement_version_unknown",
                f"records were received under version {received_under}, which is not loaded",
            )
        decision = narrowest(decision, decide(original, request, mode="received_under"))
    return decision


def decide_supply_under(versions: Sequence[Agreement], request: SupplyRequest) -> Decision:
    """Decide a supply against every version: the version in force, narrowed by later ones."""
    current = current_version(versions, request.on)
    if current is None:
        return _no_version(versions, request.on)
    decision = decide_supply(current, request)
    for later in versions:
        if later.version > current.version and later.status == "active":
            pending = decide_supply(later, request, mode="pending")
            if isinstance(pending, Deny) and isinstance(decision, Permit):
                decision = pending
    return decision
