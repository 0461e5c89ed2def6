"""Hypothesis strategies for random but valid agreements, requests against them, and narrowings.

Agreements are built directly from the pydantic models, not from YAML, so that
a property can explore shapes the shipped example never has: a party that
both provides and receives, a purpose whose lawful bases lack Article 9, a
dataset whose only releasable field is an identifier. "Valid" means the
loader's cross-reference checks find nothing except the approvals' signatures
(see :func:`validity_problems`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any, TypeVar, get_args

from hypothesis import strategies as st

from agreements.decision import ReleaseRequest
from agreements.models import (
    IDENTIFIER_FORMS,
    RELEASABLE_IDENTIFIERS,
    Agreement,
    Dataset,
    FieldSpec,
    LawfulBasis,
    OutputKind,
    Party,
    PartyRole,
    Purpose,
    Release,
    ReleasedField,
    ReleaseForm,
)
from agreements.references import reference_problems
from agreements.terms import Approval, ReviewTerms

__all__ = [
    "ALL_FORMS",
    "ALL_OUTPUTS",
    "OUTSIDER",
    "POSTCODES",
    "UNKNOWN_PURPOSE",
    "agreement_with_request",
    "agreements",
    "dates_around",
    "field_pairs",
    "forms_by_field",
    "is_coarsening",
    "narrowed",
    "narrowings",
    "releasable_forms",
    "requests_for",
    "stored_records",
    "validity_problems",
]

T = TypeVar("T")

ALL_FORMS: tuple[ReleaseForm, ...] = get_args(ReleaseForm)
ALL_OUTPUTS: tuple[OutputKind, ...] = get_args(OutputKind)
ALL_ROLES: tuple[PartyRole, ...] = get_args(PartyRole)
OUTSIDER = "outsider-agency"
UNKNOWN_PURPOSE = "unknown-purpose"

_PARTY_POOL: tuple[tuple[str, str], ...] = (
    ("police", "police"),
    ("school", "school"),
    ("social-care", "childrens_social_care"),
    ("health", "health"),
    ("yot", "youth_justice"),
    ("council", "local_authority"),
    ("charity", "voluntary_sector"),
)
_PURPOSE_POOL = ("triage", "violence-reduction", "early-help", "missing-children")
_DATASET_POOL = ("attendance", "ed-visits", "incidents", "referrals", "exclusions", "contacts")
# Field names deliberately avoid the identifier names, so a declared field never
# shadows an identifier that Dataset.releasable would otherwise offer.
_FIELD_POOL = (
    "attendance_pct",
    "excluded",
    "missing_count",
    "injury_type",
    "arrival_date",
    "home_area",
    "notes",
    "risk_score",
    "referral_made",
    "offence_code",
    "last_seen",
    "keyworker",
)
_FIELD_TYPES = ("string", "integer", "number", "boolean", "date", "code", "postcode")
_CLASSIFICATIONS = ("identifier", "personal", "special_category", "criminal_offence", "operational")
_IDENTIFIERS = (
    "given_name",
    "family_name",
    "date_of_birth",
    "sex",
    "postcode",
    "nhs_number",
    "upn",
)

# Which field types each coarser form can be computed from; restated here rather
# than imported so that a change to the loader's rule shows up as a validity failure.
_FORM_NEEDS: dict[str, tuple[str, ...]] = {
    "age": ("date",),
    "age_band": ("date",),
    "month": ("date",),
    "postcode_district": ("postcode",),
    "postcode_sector": ("postcode",),
    "flag": ("integer", "number", "boolean"),
}

# What each form may be coarsened to, stated independently of coarser_form:
# anything is coarser than the value itself, a band is coarser than an age, a
# district is coarser than a sector, and redaction is coarser than everything.
_COARSENINGS: dict[str, frozenset[str]] = {
    "as_supplied": frozenset(ALL_FORMS) - {"as_supplied"},
    "age": frozenset({"age_band", "redacted"}),
    "postcode_sector": frozenset({"postcode_district", "redacted"}),
    "age_band": frozenset({"redacted"}),
    "postcode_district": frozenset({"redacted"}),
    "month": frozenset({"redacted"}),
    "flag": frozenset({"redacted"}),
    "redacted": frozenset(),
}

# A request fields pair naming a field no dataset declares.
_UNDECLARED = ("no-such-dataset", "no_such_field")


def is_coarsening(old: ReleaseForm, new: ReleaseForm) -> bool:
    """Whether ``new`` reveals no more than ``old`` (equal, or a strict coarsening)."""
    return new == old or new in _COARSENINGS[old]


def releasable_forms(spec: FieldSpec) -> tuple[ReleaseForm, ...]:
    """The forms the loader lets this field leave in; empty when it may not leave at all."""
    if spec.classification == "identifier":
        allowed = IDENTIFIER_FORMS.get(spec.name, ())
        return tuple(f for f in ALL_FORMS if f in allowed)
    return tuple(f for f in ALL_FORMS if spec.type in _FORM_NEEDS.get(f, (spec.type,)))


def _conditions_met(spec: FieldSpec, basis: LawfulBasis) -> bool:
    # UK GDPR Articles 9 and 10 each need a DPA 2018 Schedule 1 condition as well.
    if spec.classification == "special_category":
        return bool(basis.article_9 and basis.dpa_schedule_1)
    if spec.classification == "criminal_offence":
        return bool(basis.article_10 and basis.dpa_schedule_1)
    return True


def _specs(dataset: Dataset) -> list[FieldSpec]:
    """Every field a release could name: declared fields, then releasable identifiers."""
    extra = [
        RELEASABLE_IDENTIFIERS[name]
        for name in dataset.identifiers
        if name in RELEASABLE_IDENTIFIERS and dataset.field(name) is None
    ]
    return [*dataset.fields, *extra]


def field_pairs(agreement: Agreement) -> list[tuple[str, str]]:
    """Every (dataset, field) pair a request could name, identifiers included."""
    pairs: list[tuple[str, str]] = [(d.id, n) for d in agreement.datasets for n in d.identifiers]
    pairs += [(d.id, f.name) for d in agreement.datasets for f in d.fields]
    return list(dict.fromkeys(pairs))


def validity_problems(agreement: Agreement, today: date) -> list[str]:
    """What the loader would reject, ignoring the approvals' (deliberately fake) signatures."""
    return [
        f"{'.'.join(map(str, path))}: {message}"
        for path, message in reference_problems(agreement, today)
        if path[0] != "approvals"
    ]


# --- agreements -----------------------------------------------------------


def _text(prefix: str) -> st.SearchStrategy[str]:
    return st.integers(1, 999).map(lambda n: f"{prefix} {n}")


# Hypothesis validates every strategy object the first time it is drawn from;
# building fresh ones for every field of every agreement made generation the
# slowest part of these tests, so the small ones are made once and cached.
@functools.cache
def _ints(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


@functools.cache
def _one_of(options: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(options)


def _subset(draw: st.DrawFn, options: tuple[T, ...], *, min_size: int = 1) -> tuple[T, ...]:
    """A random subset of ``options`` in their order, of at least ``min_size`` members."""
    mask = draw(_ints(0, 2 ** len(options) - 1))
    chosen = tuple(o for i, o in enumerate(options) if mask >> i & 1)
    # Too small a draw (the empty mask that shrinking heads for) takes the first few.
    return chosen if len(chosen) >= min_size else options[:min_size]


def _subset_at_most(
    draw: st.DrawFn, options: tuple[T, ...], most: int, *, min_size: int = 1
) -> tuple[T, ...]:
    chosen = _subset(draw, options, min_size=min_size)
    if len(chosen) <= most:
        return chosen
    start = draw(_ints(0, len(chosen) - most))
    return chosen[start : start + most]


@st.composite
def _parties(draw: st.DrawFn) -> tuple[Party, ...]:
    chosen = _subset_at_most(draw, _PARTY_POOL, 5, min_size=2)
    roles = [set(_subset(draw, ALL_ROLES)) for _ in chosen]
    # At least one provider and one recipient, possibly the same party.
    roles[draw(_ints(0, len(chosen) - 1))].add("provider")
    roles[draw(_ints(0, len(chosen) - 1))].add("recipient")
    return tuple(
        Party(
            id=party_id,
            name=f"{party_id.title()} service",
            type=kind,
            roles=tuple(r for r in ALL_ROLES if r in party_roles),
            controller=draw(_one_of(("separate", "joint"))),
        )
        for (party_id, kind), party_roles in zip(chosen, roles, strict=True)
    )


_ARTICLE_6 = ("6(1)(e) public task", "6(1)(c) legal obligation")


def _basis(draw: st.DrawFn) -> LawfulBasis:
    # One draw decides which optional conditions are present (cheaper than one each).
    present = draw(_ints(0, 15))
    return LawfulBasis(
        article_6=_ARTICLE_6[draw(_ints(0, 1))],
        article_9="9(2)(g) substantial public interest" if present & 1 else None,
        article_10="10 with Schedule 1 Part 2" if present & 2 else None,
        dpa_schedule_1="Schedule 1 para 18 safeguarding" if present & 4 else None,
        statutory_gateway="Children Act 2004 s.11" if present & 8 else None,
    )


def _purposes(draw: st.DrawFn, parties: tuple[Party, ...]) -> tuple[Purpose, ...]:
    return tuple(
        Purpose(
            id=purpose_id,
            description=f"Sharing for {purpose_id}",
            lawful_basis={p.id: _basis(draw) for p in parties},
        )
        for purpose_id in _subset_at_most(draw, _PURPOSE_POOL, 3)
    )


def _field_spec(draw: st.DrawFn, name: str) -> FieldSpec:
    kind = draw(_one_of(_FIELD_TYPES))
    return FieldSpec(
        name=name,
        type=kind,
        classification=draw(_one_of(_CLASSIFICATIONS)),
        required=draw(_one_of((False, True))),
        # A code field must list its values (the loader refuses one that does not).
        values=_subset_at_most(draw, tuple("ABCDEFGH"), 5) if kind == "code" else None,
    )


def _datasets(draw: st.DrawFn, parties: tuple[Party, ...]) -> tuple[Dataset, ...]:
    providers = tuple(p.id for p in parties if "provider" in p.roles)
    return tuple(
        Dataset(
            id=dataset_id,
            provider=draw(_one_of(providers)),
            identifiers=_subset(draw, _IDENTIFIERS),
            fields=tuple(_field_spec(draw, n) for n in _subset_at_most(draw, _FIELD_POOL, 6)),
        )
        for dataset_id in _subset_at_most(draw, _DATASET_POOL, 4)
    )


def _releases(
    draw: st.DrawFn,
    parties: tuple[Party, ...],
    purposes: tuple[Purpose, ...],
    datasets: tuple[Dataset, ...],
) -> tuple[Release, ...]:
    releases = []
    for purpose in purposes:
        for recipient in (p for p in parties if "recipient" in p.roles):
            # Most pairs get a release, so that permits are common enough to test.
            if draw(_ints(0, 3)) == 0:
                continue
            candidates = tuple(
                (dataset.id, spec.name, forms)
                for dataset in datasets
                for spec in _specs(dataset)
                if (forms := releasable_forms(spec))
                and _conditions_met(spec, purpose.lawful_basis[dataset.provider])
            )
            if not candidates:
                continue
            fields = tuple(
                ReleasedField(dataset=d, field=name, form=draw(_one_of(forms)))
                for d, name, forms in _subset(draw, candidates)
            )
            releases.append(
                Release(
                    purpose=purpose.id,
                    recipient=recipient.id,
                    outputs=_subset(draw, ALL_OUTPUTS),
                    fields=fields,
                    reveal_record_reference=draw(_one_of((False, True))),
                    minimum_cell_size=draw(_ints(1, 50)),
                )
            )
    return tuple(releases)


def _approval(party: Party, on: date) -> Approval:
    # decide() only checks that every party has an approval *entry*; it never
    # verifies signatures (the loader does). These keys and signatures are
    # syntactically valid base64 of the right length (32-byte key, 64-byte
    # signature) and mean nothing.
    return Approval(
        party=party.id,
        approver=f"DPO of {party.id}",
        role="Data Protection Officer",
        approved_on=on,
        public_key="A" * 43 + "=",
        signature="A" * 86 + "==",
    )


@st.composite
def agreements(draw: st.DrawFn, *, version: int = 1) -> Agreement:
    """A valid, active, fully approved agreement version with random parties, data and releases."""
    parties = draw(_parties())
    purposes = _purposes(draw, parties)
    datasets = _datasets(draw, parties)
    effective_from = date(2025, 1, 1) + timedelta(days=draw(st.integers(0, 1000)))
    expires_on = effective_from + timedelta(days=draw(st.integers(30, 1500)))
    life = (expires_on - effective_from).days
    review_by = draw(
        st.none() | st.integers(0, life).map(lambda d: effective_from + timedelta(days=d))
    )
    review = draw(
        st.none()
        | st.builds(ReviewTerms, frequency_months=st.integers(1, 60), grace_days=st.integers(0, 90))
    )
    return Agreement(
        id="random-agreement",
        title="A randomly drawn agreement",
        version=version,
        status="active",
        effective_from=effective_from,
        review_by=review_by,
        expires_on=expires_on,
        parties=parties,
        purposes=purposes,
        datasets=datasets,
        releases=_releases(draw, parties, purposes, datasets),
        review=review,
        approvals=tuple(_approval(p, effective_from - timedelta(days=7)) for p in parties),
    )


# --- requests -------------------------------------------------------------


def _end_of_sharing(agreement: Agreement) -> date:
    """The first day nothing is shared: expiry, or the day after review grace runs out."""
    if agreement.review_by is None:
        return agreement.expires_on
    overdue = agreement.review_by + timedelta(days=agreement.grace_days + 1)
    return min(agreement.expires_on, overdue)


@st.composite
def dates_around(draw: st.DrawFn, agreement: Agreement) -> date:
    """Days before, inside and after the agreement's life, with its boundaries."""
    start, stop = agreement.effective_from, _end_of_sharing(agreement)
    boundaries = [start - timedelta(days=1), start, stop - timedelta(days=1), stop]
    if agreement.review_by is not None:
        boundaries += [agreement.review_by, agreement.review_by + timedelta(days=1)]
    boundaries.append(agreement.expires_on)
    # Weighted by hand: st.one_of leans towards its first branch, and most
    # properties need days inside the life to see any permit at all.
    where = draw(st.integers(0, 9))
    if where <= 5:
        return draw(st.dates(start, stop - timedelta(days=1)))
    if where == 6:
        return draw(st.dates(start - timedelta(days=400), start - timedelta(days=1)))
    if where == 7:
        return draw(st.dates(stop, stop + timedelta(days=400)))
    return draw(st.sampled_from(boundaries))


@st.composite
def requests_for(draw: st.DrawFn, agreement: Agreement) -> ReleaseRequest:
    """A request against ``agreement``: usually aimed at one of its releases, often not."""
    pairs = (*field_pairs(agreement), _UNDECLARED)
    on = draw(dates_around(agreement))
    # Two in three requests are aimed at a release, so that permits are common.
    if agreement.releases and draw(_ints(0, 2)) > 0:
        release = draw(_one_of(agreement.releases))
        granted = tuple((f.dataset, f.field) for f in release.fields)
        shape = draw(_ints(0, 3))
        fields: tuple[tuple[str, str], ...] | None = None
        if shape == 1:
            fields = _subset(draw, granted)
        elif shape == 3:
            fields = ()
        elif shape == 2:
            # Named at random: may ask for an unreleased or undeclared field, or nothing.
            fields = tuple(draw(st.lists(_one_of(pairs), max_size=4)))
        role: PartyRole = "recipient" if draw(_ints(0, 3)) > 0 else draw(_one_of(ALL_ROLES))
        output: OutputKind = draw(_one_of(release.outputs if draw(_ints(0, 3)) else ALL_OUTPUTS))
        return ReleaseRequest(
            agency=release.recipient,
            purpose=release.purpose,
            output=output,
            on=on,
            fields=fields,
            role=role,
        )
    return ReleaseRequest(
        agency=draw(_one_of((*(p.id for p in agreement.parties), OUTSIDER))),
        purpose=draw(_one_of((*(p.id for p in agreement.purposes), UNKNOWN_PURPOSE))),
        output=draw(_one_of(ALL_OUTPUTS)),
        on=on,
        fields=draw(st.none() | st.lists(_one_of(pairs), max_size=6).map(tuple)),
        role=draw(_one_of(ALL_ROLES)),
    )


@st.composite
def agreement_with_request(draw: st.DrawFn) -> tuple[Agreement, ReleaseRequest]:
    """An agreement and one request against it."""
    agreement = draw(agreements())
    return agreement, draw(requests_for(agreement))


# --- stored records -------------------------------------------------------

# (postcode as stored, district, sector): stored forms vary as providers send them.
POSTCODES: tuple[tuple[str, str, str], ...] = (
    ("SW1A 1AA", "SW1A", "SW1A 1"),
    ("sw1a1aa", "SW1A", "SW1A 1"),
    ("NS1 4AB", "NS1", "NS1 4"),
    ("M1 1AE", "M1", "M1 1"),
    ("B33 8TH", "B33", "B33 8"),
    ("DN55 1PT", "DN55", "DN55 1"),
    ("W1A 0AX", "W1A", "W1A 0"),
)
_DATES = st.dates(date(1990, 1, 1), date(2030, 12, 31)).map(date.isoformat)
_BY_TYPE: dict[str, st.SearchStrategy[Any]] = {
    "string": st.text(min_size=0, max_size=12),
    "integer": st.integers(0, 40),
    "number": st.floats(0, 100, allow_nan=False),
    "boolean": st.booleans(),
    "date": _DATES,
    "postcode": st.sampled_from([p[0] for p in POSTCODES]),
}
_IDENTIFIER_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "given_name": st.sampled_from(("AMIRA", "JACK", "ZOE")),
    "family_name": st.sampled_from(("OKAFOR", "SMITH", "NOWAK")),
    "date_of_birth": _DATES,
    "sex": st.sampled_from(("F", "M", "X", "U")),
    "postcode": _BY_TYPE["postcode"],
    "nhs_number": st.just("9434765919"),
    "upn": st.just("A123456789012"),
}


@st.composite
def stored_records(draw: st.DrawFn, dataset: Dataset) -> dict[str, Any]:
    """A stored record holding every identifier and every field of ``dataset``."""
    record: dict[str, Any] = {"record_id": "rec-1"}
    for name in dataset.identifiers:
        record[name] = draw(_IDENTIFIER_VALUES[name])
    for spec in dataset.fields:
        values = spec.values
        strategy = st.sampled_from(values) if values else _BY_TYPE.get(spec.type, _DATES)
        record[spec.name] = draw(strategy)
    return record


# --- narrowings -----------------------------------------------------------

Narrowing = Callable[[Agreement], Agreement]


def _replace_release(agreement: Agreement, index: int, release: Release | None) -> Agreement:
    releases = list(agreement.releases)
    if release is None:
        del releases[index]
    else:
        releases[index] = release
    return agreement.model_copy(update={"releases": tuple(releases)})


def _spec_of(agreement: Agreement, released: ReleasedField) -> FieldSpec:
    dataset = agreement.dataset(released.dataset)
    assert dataset is not None
    spec = dataset.releasable(released.field)
    assert spec is not None
    return spec


@st.composite
def _one_narrowing(draw: st.DrawFn, agreement: Agreement) -> tuple[str, Agreement]:  # noqa: PLR0911, PLR0912
    """One change that can only take away: its name (for failure reports) and the result."""
    kind = draw(
        st.sampled_from(
            (
                "remove_release",
                "remove_field",
                "coarsen_form",
                "remove_output",
                "remove_role",
                "raise_cell_size",
                "hide_reference",
                "expire_earlier",
            )
        )
    )
    if kind == "expire_earlier":
        life = (agreement.expires_on - agreement.effective_from).days
        expires = agreement.effective_from + timedelta(days=draw(st.integers(1, life)))
        review = agreement.review_by
        update: dict[str, Any] = {"expires_on": expires}
        if review is not None and review > expires:
            update["review_by"] = expires
        return kind, agreement.model_copy(update=update)
    if kind == "remove_role":
        party_index = draw(st.integers(0, len(agreement.parties) - 1))
        party = agreement.parties[party_index]
        role = draw(st.sampled_from(party.roles))
        providers = {d.provider for d in agreement.datasets}
        # Keep the agreement valid: a party keeps at least one role and a
        # dataset's provider stays a provider; a party that stops receiving
        # loses its releases with the role.
        if len(party.roles) == 1 or (role == "provider" and party.id in providers):
            return "no_change", agreement
        parties = list(agreement.parties)
        parties[party_index] = party.model_copy(
            update={"roles": tuple(r for r in party.roles if r != role)}
        )
        releases = agreement.releases
        if role == "recipient":
            releases = tuple(r for r in releases if r.recipient != party.id)
        return kind, agreement.model_copy(update={"parties": tuple(parties), "releases": releases})
    if not agreement.releases:
        return "no_change", agreement
    index = draw(st.integers(0, len(agreement.releases) - 1))
    release = agreement.releases[index]
    if kind == "remove_release":
        return kind, _replace_release(agreement, index, None)
    if kind == "raise_cell_size":
        size = draw(st.integers(release.minimum_cell_size, 1000))
        return kind, _replace_release(
            agreement, index, release.model_copy(update={"minimum_cell_size": size})
        )
    if kind == "hide_reference":
        hidden = release.model_copy(update={"reveal_record_reference": False})
        return kind, _replace_release(agreement, index, hidden)
    if kind == "remove_output":
        output = draw(st.sampled_from(release.outputs))
        outputs = tuple(o for o in release.outputs if o != output)
        changed = release.model_copy(update={"outputs": outputs}) if outputs else None
        return kind, _replace_release(agreement, index, changed)
    field_index = draw(st.integers(0, len(release.fields) - 1))
    target = release.fields[field_index]
    fields = list(release.fields)
    if kind == "remove_field":
        del fields[field_index]
    else:
        allowed = set(releasable_forms(_spec_of(agreement, target)))
        coarser = sorted(_COARSENINGS[target.form] & allowed)
        if not coarser:
            return "no_change", agreement
        fields[field_index] = target.model_copy(update={"form": draw(st.sampled_from(coarser))})
    # A release with nothing left in it is no release at all.
    changed = release.model_copy(update={"fields": tuple(fields)}) if fields else None
    return kind, _replace_release(agreement, index, changed)


@st.composite
def narrowed(draw: st.DrawFn, agreement: Agreement) -> tuple[tuple[str, ...], Agreement]:
    """``agreement`` after one to four random narrowings, with their names."""
    steps = []
    for _ in range(draw(st.integers(1, 4))):
        name, agreement = draw(_one_narrowing(agreement))
        steps.append(name)
    return tuple(steps), agreement


def narrowings() -> st.SearchStrategy[tuple[Agreement, tuple[str, ...], Agreement]]:
    """An agreement, the narrowings applied to it, and the narrowed agreement."""
    return agreements().flatmap(
        lambda base: narrowed(base).map(lambda steps: (base, steps[0], steps[1]))
    )


def forms_by_field(fields: tuple[ReleasedField, ...]) -> Mapping[tuple[str, str], ReleaseForm]:
    """Each released (dataset, field) and its form."""
    return {(f.dataset, f.field): f.form for f in fields}
