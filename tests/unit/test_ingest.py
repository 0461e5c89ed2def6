"""Batch validation: typed values, every problem at once, and no value in any message."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from agreements.models import Dataset
from broker.errors import BatchRejected, Problem
from broker.ingest import MAX_PROBLEMS, ValidRecord, validate_batch
from tests.helpers import example_agreement

AGREEMENT = example_agreement()


def _dataset(dataset_id: str) -> Dataset:
    dataset = AGREEMENT.dataset(dataset_id)
    assert dataset is not None
    return dataset


SCHOOL = _dataset("school-attendance")
POLICE = _dataset("police-incidents")
CSC = _dataset("csc-involvement")
MAX_FIELD = 1024

# Distinctive personal values: none of them may ever appear in a problem message.
GIVEN = "Quillonella"
FAMILY = "Vantrebbick"
DOB = "2011-03-14"
POSTCODE = "NS1 4AB"
NHS = "9434765919"
PLANTED = (GIVEN, FAMILY, DOB, "2011-02-30", "9434765918", "Xyzzyplugh", "Glorbnax")


def _school(ref: str = "r1", **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "record_id": ref,
        "given_name": GIVEN,
        "family_name": FAMILY,
        "date_of_birth": DOB,
        "sex": "F",
        "postcode": "ns14ab",
        "attendance_pct": "85.5",
        "persistent_absence": "true",
        "suspensions_this_year": "12",
        "excluded": False,
    }
    record.update(changes)
    return record


def _police(ref: str = "p1", **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "record_id": ref,
        "given_name": GIVEN,
        "family_name": FAMILY,
        "date_of_birth": DOB,
        "nhs_number": "943 476 5919",
        "incident_date": "2026-11-20",
        "incident_type": "robbery",
    }
    record.update(changes)
    return record


def _rejected(
    dataset: Dataset, records: list[Any], *, known: Iterable[str] = ()
) -> tuple[Problem, ...]:
    stored = set(known)
    with pytest.raises(BatchRejected) as caught:
        validate_batch(
            dataset, records, max_field_length=MAX_FIELD, known_ref=lambda ref: ref in stored
        )
    error = caught.value
    assert error.code == "batch_invalid"
    assert error.problems
    _assert_no_planted_value(error.message, *(p.message for p in error.problems))
    _assert_no_planted_value(error.one_line(), *(str(p.as_dict()) for p in error.problems))
    assert error.location == error.problems[0].location
    return error.problems


def _assert_no_planted_value(*texts: str) -> None:
    for text in texts:
        for value in PLANTED:
            assert value not in text
            assert value.lower() not in text.lower()


def _only(problems: tuple[Problem, ...], code: str) -> Problem:
    matching = [p for p in problems if p.code == code]
    assert len(matching) == 1, [p.as_dict() for p in problems]
    return matching[0]


def _valid(dataset: Dataset, records: list[Any]) -> list[ValidRecord]:
    return validate_batch(dataset, records, max_field_length=MAX_FIELD)


def test_valid_batch_gives_normalised_identifiers_and_typed_fields() -> None:
    [record] = _valid(SCHOOL, [_school()])
    assert record.index == 0
    assert record.source_ref == "r1"
    assert dict(record.identifiers) == {
        "given_name": "quillonella",
        "family_name": "vantrebbick",
        "date_of_birth": DOB,
        "sex": "F",
        "postcode": POSTCODE,
    }
    assert dict(record.fields) == {
        "attendance_pct": 85.5,
        "persistent_absence": True,
        "suspensions_this_year": 12,
        "excluded": False,
    }
    assert isinstance(record.fields["suspensions_this_year"], int)
    assert isinstance(record.fields["attendance_pct"], float)
    assert record.quality == ()


@pytest.mark.parametrize(
    ("field", "raw", "typed"),
    [
        ("attendance_pct", 85, 85.0),
        ("attendance_pct", "  90 ", 90.0),
        ("attendance_pct", ".5", 0.5),
        ("attendance_pct", "1e2", 100.0),
        ("persistent_absence", "Yes", True),
        ("persistent_absence", "0", False),
        ("persistent_absence", " n ", False),
        ("persistent_absence", True, True),
        ("suspensions_this_year", 3, 3),
        ("suspensions_this_year", "-2", -2),
        ("suspensions_this_year", "+7", 7),
    ],
)
def test_values_are_coerced_exactly(field: str, raw: Any, typed: Any) -> None:
    [record] = _valid(SCHOOL, [_school(**{field: raw})])
    assert record.fields[field] == typed
    assert type(record.fields[field]) is type(typed)


def test_code_and_date_fields_are_accepted() -> None:
    [record] = _valid(POLICE, [_police(role_in_incident="victim", missing_episodes_12m=0)])
    assert record.fields["incident_type"] == "robbery"
    assert record.fields["incident_date"] == "2026-11-20"
    assert record.fields["role_in_incident"] == "victim"
    assert record.fields["missing_episodes_12m"] == 0
    assert record.identifiers["nhs_number"] == NHS


def test_dataset_date_format_applies_to_date_of_birth_only() -> None:
    dmy = POLICE.model_copy(update={"date_format": "dmy"})
    [record] = _valid(dmy, [_police(date_of_birth="14/03/2011")])
    assert record.identifiers["date_of_birth"] == DOB
    # Date fields are always ISO, whatever the dataset's format (integrator guide).
    problems = _rejected(dmy, [_police(incident_date="20/11/2026")])
    assert _only(problems, "wrong_type").location.field == "incident_date"
    # An ISO date of birth under a dmy dataset is not guessed at: a hard error.
    problems = _rejected(dmy, [_police(date_of_birth=DOB)])
    assert _only(problems, "identifier_invalid").location.field == "date_of_birth"


def test_optional_fields_and_identifiers_may_be_missing_or_empty() -> None:
    [record] = _valid(
        SCHOOL,
        [_school(suspensions_this_year="", excluded=None, sex="", postcode=None)],
    )
    assert "suspensions_this_year" not in record.fields
    assert "excluded" not in record.fields
    assert "sex" not in record.identifiers
    assert "postcode" not in record.identifiers


def test_several_records_keep_their_positions() -> None:
    records = _valid(SCHOOL, [_school("a"), _school("b"), _school("c")])
    assert [(r.index, r.source_ref) for r in records] == [(0, "a"), (1, "b"), (2, "c")]


def test_undeclared_field_is_named_with_a_suggestion() -> None:
    problems = _rejected(SCHOOL, [_school(attendance_pc="85")])
    problem = _only(problems, "field_not_declared")
    assert problem.location.record == 0
    assert problem.location.field == "attendance_pc"
    assert "did you mean 'attendance_pct'?" in problem.message


def test_undeclared_field_from_another_dataset_is_refused() -> None:
    problems = _rejected(SCHOOL, [_school(nhs_number=NHS)])
    assert _only(problems, "field_not_declared").location.field == "nhs_number"


def test_missing_required_field() -> None:
    record = _school()
    del record["attendance_pct"]
    problems = _rejected(SCHOOL, [_school("ok"), record])
    problem = _only(problems, "field_required")
    assert problem.location.record == 1
    assert problem.location.field == "attendance_pct"


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("attendance_pct", "eighty"),
        ("attendance_pct", "NaN"),
        ("attendance_pct", "1e999"),
        ("attendance_pct", True),
        ("attendance_pct", [85]),
        ("persistent_absence", "maybe"),
        ("persistent_absence", 1),
        ("suspensions_this_year", "1.5"),
        ("suspensions_this_year", 1.0),
        ("suspensions_this_year", False),
        ("suspensions_this_year", 10**18),
        ("suspensions_this_year", "1" * 19),
    ],
)
def test_wrong_type(field: str, raw: Any) -> None:
    problems = _rejected(SCHOOL, [_school(**{field: raw})])
    problem = _only(problems, "wrong_type")
    assert problem.location.record == 0
    assert problem.location.field == field


def test_wrong_type_for_date_and_code_fields() -> None:
    problems = _rejected(POLICE, [_police(incident_date="20/11/2026", incident_type=3)])
    assert {p.location.field for p in problems if p.code == "wrong_type"} == {
        "incident_date",
        "incident_type",
    }


def test_over_long_value() -> None:
    problems = _rejected(
        CSC, [{"record_id": "c1", "csc_status": "closed", "allocated_team": "x" * 201}]
    )
    problem = _only(problems, "value_too_long")
    assert problem.location.field == "allocated_team"
    _valid(CSC, [{"record_id": "c1", "csc_status": "closed", "allocated_team": "x" * 200}])


def test_value_longer_than_the_broker_limit() -> None:
    record = {"record_id": "c1", "csc_status": "closed", "allocated_team": "x" * 150}
    with pytest.raises(BatchRejected) as caught:
        validate_batch(CSC, [record], max_field_length=100)
    assert caught.value.problems[0].code == "value_too_long"


def test_unknown_code() -> None:
    problems = _rejected(POLICE, [_police(incident_type="Glorbnax")])
    problem = _only(problems, "code_unknown")
    assert problem.location.field == "incident_type"


def test_codes_are_matched_exactly() -> None:
    problems = _rejected(POLICE, [_police(incident_type="Robbery")])
    _only(problems, "code_unknown")


def test_duplicate_record_id_in_batch() -> None:
    problems = _rejected(SCHOOL, [_school("dup"), _school("other"), _school("dup")])
    problem = _only(problems, "record_duplicate")
    assert problem.location.record == 2
    assert problem.location.field == "record_id"


def test_record_id_already_stored() -> None:
    problems = _rejected(SCHOOL, [_school("new"), _school("old")], known={"old"})
    problem = _only(problems, "record_exists")
    assert problem.location.record == 1
    assert problem.location.field == "record_id"


@pytest.mark.parametrize("ref", [None, "", "   ", 12, "x" * 129])
def test_invalid_record_id(ref: Any) -> None:
    problems = _rejected(SCHOOL, [_school(record_id=ref)])
    problem = _only(problems, "record_id_invalid")
    assert problem.location.field == "record_id"


def test_impossible_date_of_birth_is_a_hard_error() -> None:
    problems = _rejected(SCHOOL, [_school(date_of_birth="2011-02-30")])
    problem = _only(problems, "identifier_invalid")
    assert problem.location.record == 0
    assert problem.location.field == "date_of_birth"


def test_name_without_letters_is_a_hard_error() -> None:
    problems = _rejected(SCHOOL, [_school(family_name="1234")])
    assert _only(problems, "identifier_invalid").location.field == "family_name"


def test_failed_nhs_check_digit_is_a_quality_problem_and_drops_the_identifier() -> None:
    [record] = _valid(POLICE, [_police(nhs_number="9434765918")])
    assert "nhs_number" not in record.identifiers
    assert record.identifiers["given_name"] == "quillonella"
    [quality] = record.quality
    assert quality.code == "identifier_unusable"
    assert quality.location.record == 0
    assert quality.location.field == "nhs_number"
    _assert_no_planted_value(quality.message)


@pytest.mark.parametrize(("field", "raw"), [("postcode", "Xyzzyplugh"), ("sex", "Glorbnax")])
def test_other_soft_identifiers_are_dropped(field: str, raw: str) -> None:
    [record] = _valid(SCHOOL, [_school(**{field: raw})])
    assert field not in record.identifiers
    assert [q.location.field for q in record.quality] == [field]
    _assert_no_planted_value(*(q.message for q in record.quality))


def test_identifier_that_is_not_a_string() -> None:
    problems = _rejected(POLICE, [_police(nhs_number=9434765919)])
    problem = _only(problems, "wrong_type")
    assert problem.location.field == "nhs_number"


@pytest.mark.parametrize("record", [["r1"], "r1", 1, None])
def test_record_that_is_not_an_object(record: Any) -> None:
    problems = _rejected(SCHOOL, [_school("ok"), record])
    problem = _only(problems, "record_not_object")
    assert problem.location.record == 1


def test_empty_batch() -> None:
    with pytest.raises(BatchRejected) as caught:
        validate_batch(SCHOOL, [], max_field_length=MAX_FIELD)
    assert caught.value.code == "batch_empty"


def test_every_problem_is_reported_with_record_and_field() -> None:
    records: list[Any] = [
        _school("a", attendance_pc="1"),
        _school("b", date_of_birth="2011-02-30", persistent_absence="maybe"),
        _school("a", suspensions_this_year="many"),
        {"record_id": "d", "given_name": GIVEN},
        _school("e", sex="Glorbnax"),  # soft: not a problem of the batch
    ]
    problems = _rejected(SCHOOL, records)
    found = {(p.code, p.location.record, p.location.field) for p in problems}
    assert found == {
        ("field_not_declared", 0, "attendance_pc"),
        ("identifier_invalid", 1, "date_of_birth"),
        ("wrong_type", 1, "persistent_absence"),
        ("record_duplicate", 2, "record_id"),
        ("wrong_type", 2, "suspensions_this_year"),
        ("field_required", 3, "attendance_pct"),
        ("field_required", 3, "persistent_absence"),
    }
    for problem in problems:
        assert problem.location.record is not None
        assert problem.location.field is not None


def test_planted_values_never_appear_even_in_wrong_places() -> None:
    records: list[Any] = [
        _school("a", attendance_pct=GIVEN, persistent_absence=FAMILY),
        _school("b", excluded=DOB, suspensions_this_year="Xyzzyplugh"),
        _school("c", given_name="Glorbnax" * 40),
    ]
    problems = _rejected(SCHOOL, records)
    assert len(problems) == 5


def test_problems_are_capped() -> None:
    records = [_school(f"r{i}", attendance_pct="x") for i in range(MAX_PROBLEMS + 20)]
    with pytest.raises(BatchRejected) as caught:
        validate_batch(SCHOOL, records, max_field_length=MAX_FIELD)
    assert len(caught.value.problems) == MAX_PROBLEMS
    assert f"{MAX_PROBLEMS}+" in caught.value.message


def test_numbers_in_other_scripts_are_refused() -> None:
    dataset = AGREEMENT.dataset("school-attendance")
    assert dataset is not None
    record = {
        "record_id": "S1",
        "given_name": "Ann",
        "family_name": "Lee",
        "date_of_birth": "2011-01-01",
        "attendance_pct": "\u0668\u0665",  # Arabic-Indic digits
        "persistent_absence": "true",
        "suspensions_this_year": "\uff13",  # fullwidth 3
    }
    with pytest.raises(BatchRejected) as rejected:
        validate_batch(dataset, [record], max_field_length=1024)
    fields = {p.location.field for p in rejected.value.problems}
    assert fields == {"attendance_pct", "suspensions_this_year"}


def test_a_key_that_is_not_a_field_name_is_not_echoed() -> None:
    dataset = AGREEMENT.dataset("school-attendance")
    assert dataset is not None
    record = {
        "record_id": "S1",
        "given_name": "Ann",
        "family_name": "Lee",
        "date_of_birth": "2011-01-01",
        "attendance_pct": "85",
        "persistent_absence": "false",
        "Amira Okafor 2011-03-14": "x",
        "attendance_pc": "85",
    }
    with pytest.raises(BatchRejected) as rejected:
        validate_batch(dataset, [record], max_field_length=1024)
    messages = [p.message for p in rejected.value.problems]
    assert not any("Amira" in m for m in messages)
    assert any("did you mean 'attendance_pct'" in m for m in messages)
    assert {p.location.field for p in rejected.value.problems} == {None, "attendance_pc"}
