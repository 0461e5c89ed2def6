"""Properties of the policy decision over random, valid agreements (not just the example).

``test_decision_properties`` explores requests against the shipped example
agreement; these tests draw the agreement itself, so the properties hold for
shapes that file never has: parties with several roles, identifiers released
in coarse forms, purposes without Article 9 conditions, several versions.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from hypothesis import Phase, assume, given, settings
from hypothesis import strategies as st

from agreements.decision import (
    Decision,
    Deny,
    Permit,
    ReleaseRequest,
    coarser_form,
    decide,
    decide_under,
    narrowest,
)
from agreements.models import Agreement, ReleasedField, ReleaseForm
from broker.release import AGE_BANDS, REDACTED, released_fields
from tests.agreement_strategies import (
    ALL_FORMS,
    POSTCODES,
    agreement_with_request,
    agreements,
    dates_around,
    forms_by_field,
    is_coarsening,
    narrowings,
    requests_for,
    stored_records,
    validity_problems,
)

DATE_CODES = {"agreement_not_yet_effective", "agreement_expired", "agreement_review_overdue"}
CLOSED_STATUSES = ("suspended", "expired", "terminated", "draft", "approved", "superseded")
# Generating an agreement costs far more than deciding on it, so each drawn
# agreement answers several requests.
REQUESTS_PER_AGREEMENT = 4


def _fields_of(decision: Permit) -> dict[tuple[str, str], ReleaseForm]:
    return dict(forms_by_field(decision.fields))


def _assert_no_wider(narrow: Decision, wide: Decision) -> None:
    """``narrow`` reveals nothing ``wide`` does not: no extra field, no finer form."""
    if isinstance(narrow, Deny):
        return
    assert isinstance(wide, Permit), (narrow, wide)
    before, after = _fields_of(wide), _fields_of(narrow)
    assert set(after) <= set(before)
    for key, form in after.items():
        assert coarser_form(before[key], form) == form, (key, before[key], form)
        assert is_coarsening(before[key], form), (key, before[key], form)
    assert narrow.minimum_cell_size >= wide.minimum_cell_size
    assert wide.reveal_record_reference or not narrow.reveal_record_reference


# --- the strategies themselves --------------------------------------------


@settings(max_examples=60, deadline=None)
@given(case=narrowings())
def test_drawn_and_narrowed_agreements_are_valid(
    case: tuple[Agreement, tuple[str, ...], Agreement],
) -> None:
    base, steps, narrowed = case
    assert validity_problems(base, base.effective_from) == []
    assert validity_problems(narrowed, narrowed.effective_from) == [], steps
    assert {a.party for a in base.approvals} == {p.id for p in base.parties}


def test_the_strategies_reach_permits_and_every_refusal() -> None:
    """Guards against vacuous properties: each outcome below must actually be drawn."""

    def outcome(case: tuple[Agreement, ReleaseRequest]) -> str:
        decision = decide(*case)
        return "permit" if isinstance(decision, Permit) else decision.code

    wanted = (
        "permit",
        "agreement_not_yet_effective",
        "agreement_expired",
        "agreement_review_overdue",
        "agency_not_party",
        "agency_not_recipient",
        "purpose_unknown",
        "no_release_for_recipient",
        "output_not_allowed",
        "fields_empty",
        "field_not_permitted",
    )
    seen: set[str] = set()

    # Derandomised, so the guard cannot fail by bad luck; generation only, as
    # nothing here fails and so nothing is shrunk.
    @settings(
        max_examples=800, database=None, deadline=None, derandomize=True, phases=[Phase.generate]
    )
    @given(case=agreement_with_request())
    def collect(case: tuple[Agreement, ReleaseRequest]) -> None:
        seen.add(outcome(case))

    collect()
    assert set(wanted) <= seen, set(wanted) - seen


# --- 1. nothing outside the permitted set ---------------------------------


def _add_years(born: date, years: int) -> date:
    # Someone born on 29 February has a birthday on 1 March in other years.
    try:
        return born.replace(year=born.year + years)
    except ValueError:
        return date(born.year + years, 3, 1)


def _age(born: date, on: date) -> int:
    years = on.year - born.year
    while years > 0 and _add_years(born, years) > on:
        years -= 1
    return years


def _assert_in_form(original: Any, value: Any, form: ReleaseForm, on: date) -> None:
    """``value`` is ``original`` in ``form``, stated without calling broker.release."""
    if form == "as_supplied":
        assert value == original
    elif form == "redacted":
        assert value == REDACTED
    elif form == "flag":
        assert isinstance(value, bool)
        assert value == bool(original)
    elif form == "month":
        assert isinstance(value, str)
        assert len(value) == 7
        assert value == str(original)[:7]
    elif form in ("postcode_district", "postcode_sector"):
        district, sector = next((d, s) for raw, d, s in POSTCODES if raw == original)
        assert value == (district if form == "postcode_district" else sector)
    else:
        born = date.fromisoformat(str(original))
        if born > on:
            # Born after the day of the request: no age to give, so nothing is.
            assert value == REDACTED
            return
        age = _age(born, on)
        if form == "age":
            assert value == age
        else:
            low, high, _ = next(band for band in AGE_BANDS if band[2] == value)
            assert low <= age
            assert high is None or age <= high


@settings(max_examples=150, deadline=None)
@given(case=agreement_with_request(), data=st.data())
def test_a_permit_holds_nothing_outside_the_release(
    case: tuple[Agreement, ReleaseRequest], data: st.DataObject
) -> None:
    agreement, request = case
    decision = decide(agreement, request)
    if isinstance(decision, Deny):
        assert decision.code
        assert decision.reason
        return
    release = agreement.release_for(request.purpose, request.agency)
    assert release is not None
    # Same dataset, field *and* form as the release: ReleasedField compares all three.
    assert set(decision.fields) <= set(release.fields)
    assert decision.fields
    if request.fields is not None:
        assert set(forms_by_field(decision.fields)) <= set(request.fields)
    for dataset in agreement.datasets:
        stored = data.draw(stored_records(dataset), label=f"stored {dataset.id}")
        shaped = released_fields(dataset.id, stored, decision.fields, on=request.on)
        permitted = {f.field: f.form for f in decision.fields if f.dataset == dataset.id}
        # The stored record holds every field, so every permitted one comes out.
        assert set(shaped) == set(permitted)
        for name, value in shaped.items():
            _assert_in_form(stored[name], value, permitted[name], request.on)


# --- 2. never permits -----------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    agreement=agreements(),
    status=st.sampled_from(CLOSED_STATUSES),
    data=st.data(),
)
def test_a_version_not_active_never_permits(
    agreement: Agreement, status: str, data: st.DataObject
) -> None:
    closed = agreement.model_copy(update={"status": status, "status_reason": "under review"})
    for _ in range(REQUESTS_PER_AGREEMENT):
        request = data.draw(requests_for(agreement))
        live = decide(closed, request)
        assert isinstance(live, Deny)
        assert live.code == "agreement_not_active"
        assert isinstance(decide_under([closed], request), Deny)


@settings(max_examples=100, deadline=None)
@given(agreement=agreements(), data=st.data())
def test_a_version_lacking_any_approval_never_permits(
    agreement: Agreement, data: st.DataObject
) -> None:
    missing = data.draw(
        st.lists(st.sampled_from([p.id for p in agreement.parties]), min_size=1, unique=True)
    )
    kept = tuple(a for a in agreement.approvals if a.party not in missing)
    unapproved = agreement.model_copy(update={"approvals": kept})
    for _ in range(REQUESTS_PER_AGREEMENT):
        request = data.draw(requests_for(agreement))
        decision = decide(unapproved, request)
        assert isinstance(decision, Deny)
        assert decision.code == "agreement_not_approved"
        assert all(party in decision.reason for party in missing)
        assert isinstance(decide_under([unapproved], request), Deny)


def _last_sharing_day(agreement: Agreement) -> date:
    last = agreement.expires_on - timedelta(days=1)
    if agreement.review_by is not None:
        last = min(last, agreement.review_by + timedelta(days=agreement.grace_days))
    return last


@st.composite
def _outside_life(draw: st.DrawFn, agreement: Agreement) -> date:
    start, last = agreement.effective_from, _last_sharing_day(agreement)
    choices = [
        st.dates(start - timedelta(days=800), start - timedelta(days=1)),
        st.dates(agreement.expires_on, agreement.expires_on + timedelta(days=800)),
    ]
    if agreement.review_by is not None:
        overdue = agreement.review_by + timedelta(days=agreement.grace_days + 1)
        choices.append(st.dates(overdue, overdue + timedelta(days=800)))
    choices.append(st.sampled_from([start - timedelta(days=1), last + timedelta(days=1)]))
    return draw(st.one_of(choices))


@settings(max_examples=100, deadline=None)
@given(agreement=agreements(), data=st.data())
def test_dates_outside_the_life_never_permit_and_inside_never_refuse_for_dates(
    agreement: Agreement, data: st.DataObject
) -> None:
    for _ in range(REQUESTS_PER_AGREEMENT):
        request = data.draw(requests_for(agreement))
        outside = replace(request, on=data.draw(_outside_life(agreement), label="outside"))
        decision = decide(agreement, outside)
        assert isinstance(decision, Deny), outside
        assert decision.code in DATE_CODES
        assert isinstance(decide_under([agreement], outside), Deny)
        inside_day = data.draw(
            st.dates(agreement.effective_from, _last_sharing_day(agreement)), label="inside"
        )
        inside = decide(agreement, replace(request, on=inside_day))
        assert isinstance(inside, Permit) or inside.code not in DATE_CODES


# --- 3. narrowing never widens --------------------------------------------


@settings(max_examples=150, deadline=None)
@given(case=narrowings(), data=st.data())
def test_narrowing_an_agreement_never_widens_a_decision(
    case: tuple[Agreement, tuple[str, ...], Agreement], data: st.DataObject
) -> None:
    base, _, narrowed = case
    for _ in range(REQUESTS_PER_AGREEMENT):
        request = data.draw(requests_for(base) | requests_for(narrowed))
        _assert_no_wider(decide(narrowed, request), decide(base, request))
        _assert_no_wider(decide_under([narrowed], request), decide_under([base], request))


# --- 4. versions ----------------------------------------------------------


@st.composite
def _two_versions(draw: st.DrawFn) -> tuple[Agreement, Agreement, bool]:
    """v1 in force, v2 activated with a later effective date; v2 wider or narrower than v1."""
    base, _, narrowed = draw(narrowings())
    wider = draw(st.booleans())
    first, second = (narrowed, base) if wider else (base, narrowed)
    room = (min(first.expires_on, second.expires_on) - first.effective_from).days
    assume(room >= 2)
    starts = first.effective_from + timedelta(days=draw(st.integers(1, room - 1)))
    review = second.review_by
    update: dict[str, Any] = {"version": 2, "effective_from": starts}
    if review is not None and review < starts:
        update["review_by"] = starts
    return first, second.model_copy(update=update), wider


@settings(max_examples=120, deadline=None)
@given(versions=_two_versions(), data=st.data())
def test_before_its_date_a_narrower_version_applies_and_a_wider_one_waits(
    versions: tuple[Agreement, Agreement, bool], data: st.DataObject
) -> None:
    v1, v2, wider = versions
    # v2 as though already in force, to say what "applies at once" means.
    v2_now = v2.model_copy(update={"effective_from": v1.effective_from})
    for _ in range(REQUESTS_PER_AGREEMENT):
        request = data.draw(requests_for(v1) | requests_for(v2))
        on = data.draw(st.dates(v1.effective_from, v2.effective_from - timedelta(days=1)))
        request = replace(request, on=on)
        decision = decide_under([v1, v2], request)
        alone = decide(v1, request)
        if wider:
            # A wider version changes nothing until its date.
            assert type(decision) is type(alone)
            expected = alone
        else:
            as_if_in_force = decide(v2_now, request)
            both = isinstance(alone, Permit) and isinstance(as_if_in_force, Permit)
            assert isinstance(decision, Permit) == both
            expected = as_if_in_force
        if isinstance(decision, Permit):
            assert isinstance(expected, Permit)
            assert set(decision.fields) == set(expected.fields)
            assert decision.minimum_cell_size == expected.minimum_cell_size
            assert decision.reveal_record_reference == expected.reveal_record_reference
            assert decision.agreement_version == 1
        _assert_no_wider(decision, alone)


@settings(max_examples=120, deadline=None)
@given(
    versions=_two_versions(),
    v1_status=st.sampled_from(("active", "superseded")),
    data=st.data(),
)
def test_records_received_under_v1_never_gain_what_v1_did_not_allow(
    versions: tuple[Agreement, Agreement, bool], v1_status: str, data: st.DataObject
) -> None:
    v1, v2, _ = versions
    # The broker marks v1 superseded once v2 takes effect; either way v1 still narrows.
    v1_now = v1.model_copy(update={"status": v1_status})
    for _ in range(REQUESTS_PER_AGREEMENT):
        request = data.draw(requests_for(v2) | requests_for(v1))
        on = data.draw(st.dates(v2.effective_from, v2.effective_from + timedelta(days=400)))
        request = replace(request, on=on)
        decision = decide_under([v1_now, v2], request, received_under=1)
        # What v1 allowed, on a day it was certainly in force (the release does not vary by day).
        allowed_by_v1 = decide(v1, replace(request, on=v1.effective_from))
        _assert_no_wider(decision, allowed_by_v1)
        _assert_no_wider(decision, decide(v2, request))


@settings(max_examples=80, deadline=None)
@given(
    versions=_two_versions(),
    received_under=st.sampled_from((None, 1, 2)),
    data=st.data(),
)
def test_with_every_version_suspended_nothing_is_permitted(
    versions: tuple[Agreement, Agreement, bool], received_under: int | None, data: st.DataObject
) -> None:
    suspended = [
        v.model_copy(update={"status": "suspended", "status_reason": "breach under review"})
        for v in versions[:2]
    ]
    for _ in range(REQUESTS_PER_AGREEMENT):
        request = data.draw(requests_for(versions[0]))
        later = data.draw(dates_around(versions[1]))
        for on in (request.on, later):
            decision = decide_under(
                suspended, replace(request, on=on), received_under=received_under
            )
            assert isinstance(decision, Deny)


# --- 5. coarser_form and narrowest ----------------------------------------

FORMS = st.sampled_from(ALL_FORMS)


@settings(max_examples=200, deadline=None)
@given(a=FORMS, b=FORMS, c=FORMS)
def test_coarser_form_is_a_join(a: ReleaseForm, b: ReleaseForm, c: ReleaseForm) -> None:
    joined = coarser_form(a, b)
    assert joined == coarser_form(b, a)
    assert coarser_form(a, a) == a
    # The result reveals no more than either form, and joining again changes nothing.
    assert is_coarsening(a, joined)
    assert is_coarsening(b, joined)
    assert coarser_form(joined, a) == joined
    assert coarser_form(coarser_form(a, b), c) == coarser_form(a, coarser_form(b, c))
    if is_coarsening(a, b):
        assert joined == b


_PAIRS = [(d, f) for d in ("ds-a", "ds-b") for f in ("alpha", "beta", "gamma")]


@st.composite
def _decisions(draw: st.DrawFn, version: int) -> Decision:
    if draw(st.integers(0, 4)) == 0:
        return Deny("agreement_not_active", "drawn refusal")
    pairs = draw(st.lists(st.sampled_from(_PAIRS), min_size=1, max_size=len(_PAIRS), unique=True))
    return Permit(
        agreement_id="random-agreement",
        agreement_version=version,
        fields=tuple(ReleasedField(dataset=d, field=f, form=draw(FORMS)) for d, f in pairs),
        reveal_record_reference=draw(st.booleans()),
        minimum_cell_size=draw(st.integers(1, 100)),
        rule=f"release (version {version})",
        warnings=tuple(draw(st.lists(st.sampled_from(("overdue", "notice")), max_size=2))),
    )


@settings(max_examples=200, deadline=None)
@given(first=_decisions(1), second=_decisions(2))
def test_narrowest_allows_only_what_both_allow(first: Decision, second: Decision) -> None:
    result = narrowest(first, second)
    if isinstance(first, Deny) or isinstance(second, Deny):
        assert isinstance(result, Deny)
        return
    common = set(forms_by_field(first.fields)) & set(forms_by_field(second.fields))
    if not common:
        assert isinstance(result, Deny)
        return
    assert isinstance(result, Permit)
    _assert_no_wider(result, first)
    _assert_no_wider(result, second)
    # Everything both allow survives, in a form no finer than either.
    assert set(forms_by_field(result.fields)) == common
    assert set(first.warnings) | set(second.warnings) == set(result.warnings)
