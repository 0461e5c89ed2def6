"""Properties of the policy decision over random requests against the example agreement."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from agreements.decision import Deny, Permit, ReleaseRequest, decide
from agreements.models import Agreement, OutputKind, Release
from tests.helpers import example_agreement

AGREEMENT = example_agreement()

AGENCIES = [p.id for p in AGREEMENT.parties] + ["outsider"]
PURPOSES = [p.id for p in AGREEMENT.purposes] + ["marketing"]
OUTPUTS: list[OutputKind] = ["lookup", "notification", "cohort", "aggregate"]
ALL_FIELDS = [(d.id, f.name) for d in AGREEMENT.datasets for f in d.fields]
# Day offsets from effective_from, across the agreement's life and 400 days either side.
DAYS = st.integers(
    min_value=-400, max_value=(AGREEMENT.expires_on - AGREEMENT.effective_from).days + 400
)
IN_FORCE_DAYS = st.integers(0, (AGREEMENT.review_by - AGREEMENT.effective_from).days)


@st.composite
def requests(draw: st.DrawFn) -> ReleaseRequest:
    fields = draw(
        st.none()
        | st.lists(st.sampled_from(ALL_FIELDS), max_size=8).map(tuple)
        | st.lists(
            st.sampled_from([(f.dataset, f.field) for r in AGREEMENT.releases for f in r.fields]),
            max_size=6,
        ).map(tuple)
    )
    if draw(st.booleans()):
        # Aimed at a real release, so that permits are common enough to test.
        release = draw(st.sampled_from(AGREEMENT.releases))
        agency, purpose = release.recipient, release.purpose
        output = draw(st.sampled_from(release.outputs) | st.sampled_from(OUTPUTS))
        on = AGREEMENT.effective_from + timedelta(days=draw(IN_FORCE_DAYS | DAYS))
    else:
        agency = draw(st.sampled_from(AGENCIES))
        purpose = draw(st.sampled_from(PURPOSES))
        output = draw(st.sampled_from(OUTPUTS))
        on = AGREEMENT.effective_from + timedelta(days=draw(DAYS))
    return ReleaseRequest(agency=agency, purpose=purpose, output=output, on=on, fields=fields)


def _release(agreement: Agreement, request: ReleaseRequest) -> Release | None:
    return next(
        (
            r
            for r in agreement.releases
            if r.recipient == request.agency and r.purpose == request.purpose
        ),
        None,
    )


def _in_force(agreement: Agreement, on: date) -> bool:
    # Past review_by an agreement still shares, with a warning, for its grace period.
    review = agreement.review_by
    last_day = None if review is None else review + timedelta(days=agreement.grace_days)
    return (
        agreement.status == "active"
        and agreement.effective_from <= on
        and (last_day is None or on <= last_day)
        and on < agreement.expires_on
    )


@settings(max_examples=120, deadline=None)
@given(request=requests())
def test_permit_fields_are_a_subset_of_the_release(request: ReleaseRequest) -> None:
    decision = decide(AGREEMENT, request)
    if isinstance(decision, Deny):
        assert decision.code
        assert decision.reason
        return
    release = _release(AGREEMENT, request)
    assert release is not None
    assert _in_force(AGREEMENT, request.on)
    party = AGREEMENT.party(request.agency)
    assert party is not None
    assert "recipient" in party.roles
    assert request.output in release.outputs
    assert set(decision.fields) <= set(release.fields)
    assert len(set(decision.fields)) == len(decision.fields)
    if request.fields is None:
        assert decision.fields == release.fields
    else:
        assert {(f.dataset, f.field) for f in decision.fields} == set(request.fields)
    assert decision.reveal_record_reference == release.reveal_record_reference
    assert decision.agreement_id == AGREEMENT.id


@settings(max_examples=120, deadline=None)
@given(request=requests())
def test_decision_matches_the_rules(request: ReleaseRequest) -> None:
    """An independent statement of when a release is permitted."""
    release = _release(AGREEMENT, request)
    party = AGREEMENT.party(request.agency)
    granted = set() if release is None else {(f.dataset, f.field) for f in release.fields}
    should_permit = (
        _in_force(AGREEMENT, request.on)
        and party is not None
        and "recipient" in party.roles
        and release is not None
        and request.output in release.outputs
        and (request.fields is None or (bool(request.fields) and set(request.fields) <= granted))
    )
    assert isinstance(decide(AGREEMENT, request), Permit) == should_permit


@settings(max_examples=120, deadline=None)
@given(
    request=requests(),
    status=st.sampled_from(["draft", "approved", "suspended", "expired", "terminated"]),
)
def test_a_non_active_agreement_never_permits(request: ReleaseRequest, status: str) -> None:
    decision = decide(AGREEMENT.model_copy(update={"status": status}), request)
    assert isinstance(decision, Deny)
    assert decision.code == "agreement_not_active"


def _narrowed(agreement: Agreement, release_index: int, field_index: int) -> Agreement:
    releases = list(agreement.releases)
    target = releases[release_index]
    kept = tuple(f for i, f in enumerate(target.fields) if i != field_index % len(target.fields))
    releases[release_index] = target.model_copy(update={"fields": kept})
    return agreement.model_copy(update={"releases": tuple(releases)})


@settings(max_examples=120, deadline=None)
@given(
    request=requests(),
    removals=st.lists(
        st.tuples(st.integers(0, len(AGREEMENT.releases) - 1), st.integers(0, 20)),
        min_size=1,
        max_size=4,
    ),
)
def test_narrowing_never_widens(request: ReleaseRequest, removals: list[tuple[int, int]]) -> None:
    narrowed = AGREEMENT
    for release_index, field_index in removals:
        if narrowed.releases[release_index].fields:
            narrowed = _narrowed(narrowed, release_index, field_index)
    before = decide(AGREEMENT, request)
    after = decide(narrowed, request)
    if isinstance(before, Deny):
        assert isinstance(after, Deny)
        return
    if isinstance(after, Permit):
        assert set(after.fields) <= set(before.fields)


@settings(max_examples=120, deadline=None)
@given(request=requests(), release_index=st.integers(0, len(AGREEMENT.releases) - 1))
def test_removing_a_release_never_widens(request: ReleaseRequest, release_index: int) -> None:
    releases = tuple(r for i, r in enumerate(AGREEMENT.releases) if i != release_index)
    narrowed = AGREEMENT.model_copy(update={"releases": releases})
    before = decide(AGREEMENT, request)
    after = decide(narrowed, request)
    if isinstance(before, Deny):
        assert isinstance(after, Deny)
    elif isinstance(after, Permit):
        assert set(after.fields) <= set(before.fields)
