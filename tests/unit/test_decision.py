"""The policy decision: every Deny code, and a Permit that grants exactly what was asked."""

from __future__ import annotations

from datetime import date

import pytest

from agreements.decision import (
    Deny,
    Permit,
    ReleaseRequest,
    SupplyRequest,
    decide,
    decide_supply,
)
from agreements.models import Agreement, Release
from tests.helpers import example_agreement

AGREEMENT = example_agreement()
ON = date(2026, 11, 26)
TRIAGE = "safeguarding-triage"
VIOLENCE = "violence-reduction"


def _request(**changes: object) -> ReleaseRequest:
    values: dict[str, object] = {
        "agency": "social-care",
        "purpose": TRIAGE,
        "output": "lookup",
        "on": ON,
        "fields": None,
    }
    values.update(changes)
    return ReleaseRequest(**values)  # type: ignore[arg-type]


def _release(agency: str, purpose: str) -> Release:
    return next(r for r in AGREEMENT.releases if r.recipient == agency and r.purpose == purpose)


def _deny_code(agreement: Agreement, request: ReleaseRequest) -> str:
    decision = decide(agreement, request)
    assert isinstance(decision, Deny), decision
    assert decision.reason
    return decision.code


def test_example_agreement_dates() -> None:
    # The dates below are chosen against these; fail loudly if the example changes.
    assert AGREEMENT.effective_from == date(2026, 1, 1)
    assert AGREEMENT.review_by == date(2027, 9, 30)
    assert AGREEMENT.expires_on == date(2028, 3, 31)
    assert AGREEMENT.status == "active"


@pytest.mark.parametrize("status", ["draft", "approved", "suspended", "expired", "terminated"])
def test_only_an_active_agreement_shares(status: str) -> None:
    agreement = AGREEMENT.model_copy(update={"status": status})
    assert _deny_code(agreement, _request()) == "agreement_not_active"
    supply = SupplyRequest(agency="school", dataset="school-attendance", on=ON)
    decision = decide_supply(agreement, supply)
    assert isinstance(decision, Deny)
    assert decision.code == "agreement_not_active"
    assert status in decision.reason


@pytest.mark.parametrize(
    ("on", "code"),
    [
        (date(2025, 12, 31), "agreement_not_yet_effective"),
        (date(2000, 1, 1), "agreement_not_yet_effective"),
        (date(2027, 10, 31), "agreement_review_overdue"),
        (date(2028, 3, 30), "agreement_review_overdue"),
        (date(2028, 3, 31), "agreement_expired"),
        (date(2030, 1, 1), "agreement_expired"),
    ],
)
def test_dates_outside_the_agreement_life_deny(on: date, code: str) -> None:
    assert _deny_code(AGREEMENT, _request(on=on)) == code
    supply = decide_supply(AGREEMENT, SupplyRequest("school", "school-attendance", on))
    assert isinstance(supply, Deny)
    assert supply.code == code


@pytest.mark.parametrize("on", [date(2026, 1, 1), date(2027, 9, 30), ON])
def test_dates_inside_the_agreement_life_permit(on: date) -> None:
    assert isinstance(decide(AGREEMENT, _request(on=on)), Permit)
    assert isinstance(
        decide_supply(AGREEMENT, SupplyRequest("school", "school-attendance", on)), Permit
    )


def test_expired_beats_review_overdue_on_the_same_day() -> None:
    agreement = AGREEMENT.model_copy(
        update={"review_by": date(2028, 3, 31), "expires_on": date(2028, 3, 31)}
    )
    assert _deny_code(agreement, _request(on=date(2028, 3, 31))) == "agreement_expired"
    assert isinstance(decide(agreement, _request(on=date(2028, 3, 30))), Permit)


@pytest.mark.parametrize("agency", ["outsider", "", "SOCIAL-CARE", "social_care"])
def test_agency_not_party(agency: str) -> None:
    assert _deny_code(AGREEMENT, _request(agency=agency)) == "agency_not_party"


def test_agency_not_recipient() -> None:
    # The emergency department provides data but receives nothing.
    assert _deny_code(AGREEMENT, _request(agency="ed")) == "agency_not_recipient"


@pytest.mark.parametrize("purpose", ["marketing", "", "Safeguarding-Triage"])
def test_purpose_unknown(purpose: str) -> None:
    assert _deny_code(AGREEMENT, _request(purpose=purpose)) == "purpose_unknown"


def test_no_release_for_recipient_for_this_purpose() -> None:
    # The school is a recipient for triage but not for violence reduction.
    assert _deny_code(AGREEMENT, _request(agency="school", purpose=VIOLENCE)) == (
        "no_release_for_recipient"
    )
    assert _deny_code(AGREEMENT, _request(agency="police", purpose=TRIAGE)) == (
        "no_release_for_recipient"
    )


def test_no_release_when_the_releases_are_removed() -> None:
    agreement = AGREEMENT.model_copy(update={"releases": ()})
    assert _deny_code(agreement, _request()) == "no_release_for_recipient"


@pytest.mark.parametrize("output", ["notification", "cohort", "aggregate"])
def test_output_not_allowed(output: str) -> None:
    assert _deny_code(AGREEMENT, _request(output=output)) == "output_not_allowed"


@pytest.mark.parametrize(
    "fields",
    [
        (("school-attendance", "sen_support"),),
        (("school-attendance", "attendance_pct"), ("school-attendance", "sen_support")),
        (("csc-involvement", "csc_status"),),  # granted to the school, not to social care
        (("ed-attendances", "arrival_mode"),),
        (("nonexistent", "attendance_pct"),),
        (("police-incidents", "attendance_pct"),),  # right field name, wrong dataset
    ],
)
def test_field_not_permitted(fields: tuple[tuple[str, str], ...]) -> None:
    decision = decide(AGREEMENT, _request(fields=fields))
    assert isinstance(decision, Deny)
    assert decision.code == "field_not_permitted"
    refused = [pair for pair in fields if pair not in _granted("social-care", TRIAGE)]
    for dataset, field in refused:
        assert f"{dataset}.{field}" in decision.reason


def _granted(agency: str, purpose: str) -> set[tuple[str, str]]:
    return {(f.dataset, f.field) for f in _release(agency, purpose).fields}


def test_permit_lists_exactly_the_requested_fields_in_order() -> None:
    requested = (
        ("police-incidents", "incident_date"),
        ("school-attendance", "attendance_pct"),
    )
    decision = decide(AGREEMENT, _request(fields=requested))
    assert isinstance(decision, Permit)
    assert tuple((f.dataset, f.field) for f in decision.fields) == requested
    assert decision.fields[0].form == "month"
    assert decision.fields[1].form == "as_supplied"
    assert decision.agreement_id == AGREEMENT.id
    assert decision.agreement_version == AGREEMENT.version
    assert decision.reveal_record_reference is True


def test_repeated_fields_are_granted_once() -> None:
    pair = ("school-attendance", "attendance_pct")
    decision = decide(AGREEMENT, _request(fields=(pair, pair)))
    assert isinstance(decision, Permit)
    assert [(f.dataset, f.field) for f in decision.fields] == [pair]


def test_empty_field_list_is_refused() -> None:
    decision = decide(AGREEMENT, _request(fields=()))
    assert isinstance(decision, Deny)
    assert decision.code == "fields_empty"


@pytest.mark.parametrize(
    ("agency", "purpose"), [("social-care", TRIAGE), ("school", TRIAGE), ("police", VIOLENCE)]
)
def test_fields_none_gives_everything_granted(agency: str, purpose: str) -> None:
    decision = decide(AGREEMENT, _request(agency=agency, purpose=purpose))
    assert isinstance(decision, Permit)
    assert decision.fields == _release(agency, purpose).fields
    assert decision.reveal_record_reference == _release(agency, purpose).reveal_record_reference


def test_school_gets_the_missing_count_only_as_a_flag() -> None:
    decision = decide(AGREEMENT, _request(agency="school"))
    assert isinstance(decision, Permit)
    forms = {f.field: f.form for f in decision.fields}
    assert forms == {"csc_status": "as_supplied", "missing_episodes_12m": "flag"}
    assert decision.reveal_record_reference is False


def test_police_never_receive_special_category_data_beyond_the_release() -> None:
    decision = decide(AGREEMENT, _request(agency="police", purpose=VIOLENCE))
    assert isinstance(decision, Permit)
    assert {(f.dataset, f.field, f.form) for f in decision.fields} == {
        ("ed-attendances", "injury_type", "as_supplied"),
        ("ed-attendances", "attendance_date", "month"),
        ("school-attendance", "excluded", "as_supplied"),
    }


@pytest.mark.parametrize(
    ("agency", "dataset"),
    [
        ("school", "school-attendance"),
        ("police", "police-incidents"),
        ("social-care", "csc-involvement"),
        ("ed", "ed-attendances"),
    ],
)
def test_supply_by_the_declared_provider_is_permitted(agency: str, dataset: str) -> None:
    decision = decide_supply(AGREEMENT, SupplyRequest(agency, dataset, ON))
    assert isinstance(decision, Permit)
    assert decision.fields == ()
    assert decision.agreement_id == AGREEMENT.id


@pytest.mark.parametrize("dataset", ["school-attendence", "", "prison-records"])
def test_supply_of_unknown_dataset(dataset: str) -> None:
    decision = decide_supply(AGREEMENT, SupplyRequest("school", dataset, ON))
    assert isinstance(decision, Deny)
    assert decision.code == "dataset_unknown"


@pytest.mark.parametrize(
    ("agency", "dataset"),
    [
        ("police", "school-attendance"),
        ("school", "ed-attendances"),
        ("outsider", "police-incidents"),
        ("social-care", "police-incidents"),
    ],
)
def test_supply_by_someone_other_than_the_provider(agency: str, dataset: str) -> None:
    decision = decide_supply(AGREEMENT, SupplyRequest(agency, dataset, ON))
    assert isinstance(decision, Deny)
    assert decision.code == "agency_not_provider"


def test_deny_order_status_before_party() -> None:
    agreement = AGREEMENT.model_copy(update={"status": "suspended"})
    assert _deny_code(agreement, _request(agency="outsider")) == "agreement_not_active"
    assert _deny_code(AGREEMENT, _request(agency="outsider", on=date(2030, 1, 1))) == (
        "agreement_expired"
    )


@pytest.mark.parametrize("on", [date(2027, 10, 1), date(2027, 10, 30)])
def test_overdue_review_warns_during_grace_then_stops(on: date) -> None:
    decision = decide(AGREEMENT, _request(on=on))
    assert isinstance(decision, Permit)
    assert decision.warnings
    assert decision.warnings[0].startswith("review_overdue:")
    assert "2027-10-30" in decision.warnings[0]


def test_no_warning_before_review_date() -> None:
    decision = decide(AGREEMENT, _request(on=date(2027, 9, 30)))
    assert isinstance(decision, Permit)
    assert decision.warnings == ()
