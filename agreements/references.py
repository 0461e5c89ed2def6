"""Cross-reference checks on a parsed agreement: what the schema alone cannot see.

Each problem is a path into the document and a message that says what to do;
the loader turns the path into a file, line and column.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from datetime import date
from typing import get_args

from agreements.approval import check_approvals
from agreements.models import (
    IDENTIFIER_FORMS,
    RELEASABLE_IDENTIFIERS,
    Agreement,
    Dataset,
    FieldSpec,
    IdentifierName,
    Purpose,
    ReleasedField,
)

PathPart = str | int
Found = Iterable[tuple[tuple[PathPart, ...], str]]


def suggest(value: object, choices: Iterable[str]) -> str:
    """A "did you mean" hint naming the closest of ``choices``, or nothing when none is close."""
    # Only short text is echoed back: a value can be anything, even an alias bomb.
    if not isinstance(value, str) or len(value) > 100:
        return ""
    close = difflib.get_close_matches(value, list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _duplicates(ids: Sequence[str]) -> list[int]:
    seen: set[str] = set()
    repeated = []
    for index, value in enumerate(ids):
        if value in seen:
            repeated.append(index)
        seen.add(value)
    return repeated


_CLOSED = ("expired", "terminated", "superseded")


def reference_problems(
    agreement: Agreement, today: date, *, verify_approvals: bool = True
) -> Iterable[tuple[tuple[PathPart, ...], str]]:
    """Every cross-reference problem, as (path, message); signatures only when asked."""
    yield from _identity_problems(agreement, today)
    for section, ids in (
        ("parties", [p.id for p in agreement.parties]),
        ("purposes", [p.id for p in agreement.purposes]),
        ("datasets", [d.id for d in agreement.datasets]),
    ):
        for index in _duplicates(ids):
            yield (
                (section, index, "id"),
                f"id '{ids[index]}' is used twice; give each of the {section} its own id",
            )
    party_ids = {p.id: p for p in agreement.parties}
    for p_index, purpose in enumerate(agreement.purposes):
        for party_id in purpose.lawful_basis:
            if party_id not in party_ids:
                yield (
                    ("purposes", p_index, "lawful_basis", party_id),
                    f"lawful basis names unknown party '{party_id}'{suggest(party_id, party_ids)}",
                )
    for d_index, dataset in enumerate(agreement.datasets):
        provider = party_ids.get(dataset.provider)
        if provider is None:
            hint = suggest(dataset.provider, party_ids)
            yield (
                ("datasets", d_index, "provider"),
                f"provider '{dataset.provider}' is not a party{hint}",
            )
        elif "provider" not in provider.roles:
            yield (
                ("datasets", d_index, "provider"),
                f"party '{provider.id}' is not a provider; add 'provider' to its roles",
            )
        names = [f.name for f in dataset.fields]
        for index in _duplicates(names):
            yield (
                ("datasets", d_index, "fields", index, "name"),
                f"dataset '{dataset.id}' declares field '{names[index]}' twice; "
                "remove or rename one",
            )
        for f_index, spec in enumerate(dataset.fields):
            if spec.type == "code" and not spec.values:
                yield (
                    ("datasets", d_index, "fields", f_index, "values"),
                    f"code field '{spec.name}' must list its values, such as [yes, no]",
                )
    yield from _release_problems(agreement)
    yield from _party_reference_problems(agreement, verify_approvals=verify_approvals)


def _identity_problems(
    agreement: Agreement, today: date
) -> Iterable[tuple[tuple[PathPart, ...], str]]:
    if agreement.effective_from >= agreement.expires_on:
        yield ("expires_on",), "expires_on must be after effective_from"
    review = agreement.review_by
    if review is not None and not agreement.effective_from <= review <= agreement.expires_on:
        yield ("review_by",), "dates must be in order: effective_from <= review_by <= expires_on"
    if agreement.expires_on <= today and agreement.status not in _CLOSED:
        yield (
            ("expires_on",),
            f"expires_on {agreement.expires_on.isoformat()} is in the past; "
            "set a future expiry or mark the agreement expired",
        )
    if agreement.status == "superseded":
        yield ("status",), "status 'superseded' is set by the broker, not written in a file"
    if agreement.status in ("suspended", "terminated") and not agreement.status_reason:
        yield (
            ("status",),
            f"a {agreement.status} agreement must say why in status_reason",
        )


def _party_reference_problems(
    agreement: Agreement, *, verify_approvals: bool
) -> Iterable[tuple[tuple[PathPart, ...], str]]:
    """Contacts and approvals must name parties; each party approves a version once."""
    party_ids = [p.id for p in agreement.parties]
    for index, contact in enumerate(agreement.contacts):
        if contact.party not in party_ids:
            yield (
                ("contacts", index, "party"),
                f"contact names unknown party '{contact.party}'{suggest(contact.party, party_ids)}",
            )
    approvers = [a.party for a in agreement.approvals]
    for index in _duplicates(approvers):
        yield ("approvals", index, "party"), f"'{approvers[index]}' approves this version twice"
    for index, verdict in enumerate(check_approvals(agreement)):
        if verdict.party not in party_ids:
            # Said here rather than by the signature check, to point at the name and suggest.
            yield (
                ("approvals", index, "party"),
                f"approval names unknown party '{verdict.party}'"
                f"{suggest(verdict.party, party_ids)}; only a party approves",
            )
        elif verdict.problem is not None and verify_approvals:
            yield ("approvals", index), verdict.problem


def _release_problems(agreement: Agreement) -> Iterable[tuple[tuple[PathPart, ...], str]]:
    party_ids = {p.id: p for p in agreement.parties}
    purpose_ids = {p.id: p for p in agreement.purposes}
    granted: set[tuple[str, str]] = set()
    for r_index, release in enumerate(agreement.releases):
        here: tuple[PathPart, ...] = ("releases", r_index)
        # One release per purpose and recipient: what a recipient gets is read in one place.
        if (release.purpose, release.recipient) in granted:
            yield (
                (*here, "recipient"),
                f"a release to '{release.recipient}' for '{release.purpose}' is already declared; "
                "merge the two",
            )
        granted.add((release.purpose, release.recipient))
        purpose = purpose_ids.get(release.purpose)
        if purpose is None:
            hint = suggest(release.purpose, purpose_ids)
            yield (*here, "purpose"), f"purpose '{release.purpose}' is not declared{hint}"
        recipient = party_ids.get(release.recipient)
        if recipient is None:
            hint = suggest(release.recipient, party_ids)
            yield (*here, "recipient"), f"recipient '{release.recipient}' is not a party{hint}"
        elif "recipient" not in recipient.roles:
            yield (
                (*here, "recipient"),
                f"party '{recipient.id}' does not have the recipient role; add 'recipient' "
                "to its roles, or release to a party that has it",
            )
        # An unknown recipient is reported once above, not again as lacking a basis.
        if purpose and recipient and recipient.id not in purpose.lawful_basis:
            yield (
                (*here, "recipient"),
                f"recipient '{recipient.id}' has no lawful basis for '{purpose.id}'; "
                "add one under the purpose's lawful_basis, or remove the release",
            )
        for f_index, released in enumerate(release.fields):
            yield from _released_field_problems(
                agreement, purpose, released, (*here, "fields", f_index)
            )


def _released_field_problems(
    agreement: Agreement,
    purpose: Purpose | None,
    released: ReleasedField,
    where: tuple[PathPart, ...],
) -> Iterable[tuple[tuple[PathPart, ...], str]]:
    dataset = agreement.dataset(released.dataset)
    if dataset is None:
        hint = suggest(released.dataset, [d.id for d in agreement.datasets])
        yield (*where, "dataset"), f"dataset '{released.dataset}' is not declared{hint}"
        return
    known_provider = agreement.party(dataset.provider) is not None
    if purpose is not None and known_provider and dataset.provider not in purpose.lawful_basis:
        yield (
            (*where, "dataset"),
            f"provider '{dataset.provider}' has no lawful basis for '{purpose.id}'; "
            "add one under the purpose's lawful_basis",
        )
    spec = dataset.releasable(released.field)
    if spec is None and released.field in _LINK_ONLY:
        yield (
            (*where, "field"),
            f"'{released.field}' is an identifier the broker uses only to link records; "
            "it never leaves the broker, so remove it from the release",
        )
        return
    if spec is None:
        releasable = [i for i in dataset.identifiers if i in RELEASABLE_IDENTIFIERS]
        hint = suggest(released.field, [*(f.name for f in dataset.fields), *releasable])
        yield (
            (*where, "field"),
            f"field '{released.field}' is not declared in dataset '{dataset.id}'{hint}",
        )
        return
    if purpose is not None:
        yield from _condition_problems(purpose, dataset, spec, where)
    yield from _form_problems(spec, released.form, where)


# Identifiers that only link records: no form of them is coarse enough to release.
_LINK_ONLY = frozenset(get_args(IdentifierName)) - set(IDENTIFIER_FORMS)

# Which field types each coarser form can be computed from.
_FORM_TYPES: dict[str, tuple[str, ...]] = {
    "age": ("date",),
    "age_band": ("date",),
    "month": ("date",),
    "postcode_district": ("postcode",),
    "postcode_sector": ("postcode",),
    "flag": ("integer", "number", "boolean"),
}


def _form_problems(
    spec: FieldSpec, form: str, released: tuple[PathPart, ...]
) -> Iterable[tuple[tuple[PathPart, ...], str]]:
    where = (*released, "form")
    if spec.classification == "identifier":
        allowed = IDENTIFIER_FORMS.get(spec.name, ())
        if form not in allowed:
            # "as_supplied" is the default and seldom written: point at the field then.
            yield (
                (*released, "field") if form == "as_supplied" else where,
                f"identifier '{spec.name}' may leave the broker only as "
                f"{' or '.join(allowed)}, never as '{form}'; set its form to one of these",
            )
        return
    types = _FORM_TYPES.get(form)
    if types is not None and spec.type not in types:
        yield (
            where,
            f"form '{form}' needs a field of type {', '.join(types)}; '{spec.name}' is {spec.type}",
        )


def _condition_problems(
    purpose: Purpose, dataset: Dataset, spec: FieldSpec, where: tuple[PathPart, ...]
) -> Iterable[tuple[tuple[PathPart, ...], str]]:
    """Special category and criminal offence data need their extra conditions (UK GDPR 9, 10)."""
    basis = purpose.lawful_basis.get(dataset.provider)
    if basis is None:
        return
    if spec.classification == "special_category" and not (basis.article_9 and basis.dpa_schedule_1):
        yield (
            (*where, "field"),
            f"'{spec.name}' is special category data but purpose '{purpose.id}' gives "
            f"'{dataset.provider}' no Article 9 and DPA 2018 Schedule 1 condition; add "
            f"article_9 and dpa_schedule_1 to its lawful basis, or remove the field",
        )
    if spec.classification == "criminal_offence" and not (
        basis.article_10 and basis.dpa_schedule_1
    ):
        yield (
            (*where, "field"),
            f"'{spec.name}' is criminal offence data but purpose '{purpose.id}' gives "
            f"'{dataset.provider}' no Article 10 and DPA 2018 Schedule 1 condition; add "
            f"article_10 and dpa_schedule_1 to its lawful basis, or remove the field",
        )
