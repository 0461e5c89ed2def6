"""Shaping released records: only permitted fields, each in its permitted form."""

from __future__ import annotations

from typing import Any

import pytest

from agreements.models import ReleasedField
from broker.release import apply_form, released_fields

STORED: dict[str, Any] = {
    "attendance_pct": 85.5,
    "persistent_absence": True,
    "suspensions_this_year": 4,
    "sen_support": True,
    "incident_date": "2026-11-20",
}


@pytest.mark.parametrize(
    ("value", "form", "expected"),
    [
        (85.5, "as_supplied", 85.5),
        ("2026-11-20", "as_supplied", "2026-11-20"),
        (None, "as_supplied", None),
        ("2026-11-20", "month", "2026-11"),
        ("1999-01-31", "month", "1999-01"),
        (0, "flag", False),
        (4, "flag", True),
        (0.0, "flag", False),
        (2.5, "flag", True),
        (True, "flag", True),
        (False, "flag", False),
    ],
)
def test_apply_form(value: Any, form: Any, expected: Any) -> None:
    result = apply_form(value, form)
    assert result == expected
    assert type(result) is type(expected)


def test_flag_never_reveals_the_count() -> None:
    for count in (1, 2, 7, 365):
        assert apply_form(count, "flag") is True


def test_released_fields_copies_only_permitted_fields() -> None:
    permitted = (
        ReleasedField(dataset="school-attendance", field="attendance_pct"),
        ReleasedField(dataset="school-attendance", field="suspensions_this_year", form="flag"),
    )
    out = released_fields("school-attendance", STORED, permitted)
    assert out == {"attendance_pct": 85.5, "suspensions_this_year": True}
    assert "sen_support" not in out
    assert "persistent_absence" not in out


def test_grant_for_another_dataset_copies_nothing() -> None:
    permitted = (ReleasedField(dataset="police-incidents", field="attendance_pct"),)
    assert released_fields("school-attendance", STORED, permitted) == {}


def test_no_grant_copies_nothing() -> None:
    assert released_fields("school-attendance", STORED, ()) == {}


def test_permitted_field_absent_from_record_is_not_invented() -> None:
    permitted = (ReleasedField(dataset="school-attendance", field="excluded"),)
    assert released_fields("school-attendance", STORED, permitted) == {}


def test_month_form_applied_to_a_date() -> None:
    permitted = (ReleasedField(dataset="police-incidents", field="incident_date", form="month"),)
    assert released_fields("police-incidents", STORED, permitted) == {"incident_date": "2026-11"}


def test_stored_record_is_not_changed() -> None:
    before = dict(STORED)
    permitted = (
        ReleasedField(dataset="d", field="incident_date", form="month"),
        ReleasedField(dataset="d", field="suspensions_this_year", form="flag"),
    )
    released_fields("d", STORED, permitted)
    assert before == STORED


def test_every_released_key_was_granted() -> None:
    permitted = tuple(
        ReleasedField(dataset="d", field=name) for name in ("attendance_pct", "unknown_field")
    )
    out = released_fields("d", STORED, permitted)
    assert set(out) <= {grant.field for grant in permitted}
    assert set(out) <= set(STORED)
