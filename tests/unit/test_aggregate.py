"""Aggregates, the pure part: query shapes, dimensions against releases, labels and tallies."""

from __future__ import annotations

import inspect
from datetime import date
from typing import Any

import pytest

from agreements.loader import load_agreement
from agreements.models import ReleasedField, ReleaseForm
from broker import aggregate
from broker.aggregate import (
    UNKNOWN,
    AggregateQuery,
    Condition,
    Dimension,
    Observation,
    Plan,
    check_permitted,
    empty_table,
    fits,
    label,
    observe,
    plan,
    tabulate,
)
from broker.errors import Refused, ValidationError
from broker.suppression import protect
from tests.conftest import EXAMPLES

ON = date(2026, 11, 26)
ED = "ed-violence-attendances"
POLICE = "police-serious-violence"
SCHOOL = "school-exclusions"


@pytest.fixture(scope="module")
def dashboard() -> Any:
    return load_agreement(EXAMPLES / "partnership-dashboard.yaml")


def _plan(
    *dimensions: Dimension, where: tuple[Condition, ...] = (), count: str = "subjects"
) -> Plan:
    return plan(AggregateQuery(ED, count, dimensions, where))


def _released(dashboard: Any) -> tuple[ReleasedField, ...]:
    release = dashboard.release_for("serious-violence-dashboard", "vru")
    return tuple(release.fields)


# -- shape ----------------------------------------------------------------------------


def test_plan_fills_in_the_usual_fields() -> None:
    planned = _plan(Dimension("postcode_district"), Dimension("age_band"))
    assert [(d.by, d.field) for d in planned.dimensions] == [
        ("postcode_district", "postcode"),
        ("age_band", "date_of_birth"),
    ]
    assert planned.fields() == ((ED, "postcode"), (ED, "date_of_birth"))


def test_plan_names_condition_fields_in_full() -> None:
    planned = _plan(
        Dimension("sex"),
        where=(Condition("sharps_injury", True), Condition(f"{SCHOOL}.permanently_excluded", True)),
    )
    assert planned.fields() == (
        (ED, "sex"),
        (ED, "sharps_injury"),
        (SCHOOL, "permanently_excluded"),
    )
    assert planned.datasets() == (ED, SCHOOL)


@pytest.mark.parametrize(
    ("query", "code", "where"),
    [
        (AggregateQuery(ED, "subjects", ()), "dimensions_invalid", "dimensions"),
        (
            AggregateQuery(
                ED, "subjects", (Dimension("sex"), Dimension("age_band"), Dimension("month", "x"))
            ),
            "dimensions_invalid",
            "dimensions",
        ),
        (
            AggregateQuery(ED, "subjects", (Dimension("sex"), Dimension("sex"))),
            "dimensions_invalid",
            "dimensions",
        ),
        (AggregateQuery(ED, "people", (Dimension("sex"),)), "measure_unknown", "measure.count"),
        (
            AggregateQuery(ED, "subjects", (Dimension("ward"),)),
            "dimension_unknown",
            "dimensions[0].by",
        ),
        (
            AggregateQuery(ED, "subjects", (Dimension("month"),)),
            "dimension_field_required",
            "dimensions[0]",
        ),
        (
            AggregateQuery(ED, "subjects", (Dimension("sex", "ethnicity"),)),
            "dimension_field_invalid",
            "dimensions[0]",
        ),
        (
            AggregateQuery(ED, "subjects", (Dimension("sex"),), (Condition(".x", True),)),
            "condition_invalid",
            "measure.where[0].field",
        ),
        (
            AggregateQuery(ED, "subjects", (Dimension("sex"),), (Condition("x", True),) * 11),
            "conditions_invalid",
            "measure.where",
        ),
    ],
)
def test_plan_refuses_a_bad_shape(query: AggregateQuery, code: str, where: str) -> None:
    with pytest.raises(ValidationError) as caught:
        plan(query)
    assert caught.value.code == code
    assert caught.value.location.field == where


# -- against the release ----------------------------------------------------------------


def test_the_dashboard_allows_its_own_dimensions(dashboard: Any) -> None:
    planned = _plan(
        Dimension("postcode_district"),
        Dimension("month", "attendance_date"),
        where=(Condition("sharps_injury", True),),
    )
    check_permitted(planned, _released(dashboard), dashboard)
    check_permitted(_plan(Dimension("age_band"), Dimension("sex")), _released(dashboard), dashboard)


def test_a_week_of_a_date_released_by_month_is_refused(dashboard: Any) -> None:
    with pytest.raises(Refused) as caught:
        check_permitted(
            _plan(Dimension("week", "attendance_date")), _released(dashboard), dashboard
        )
    assert caught.value.code == "dimension_not_permitted"
    assert caught.value.location.field == "dimensions[0]"


@pytest.mark.parametrize(
    ("by", "form", "allowed"),
    [
        ("postcode_district", "postcode_district", True),
        ("postcode_district", "postcode_sector", True),
        ("postcode_district", "redacted", False),
        ("age_band", "age_band", True),
        ("age_band", "age", True),
        ("age_band", "month", False),
        ("month", "month", True),
        ("month", "as_supplied", True),
        ("week", "month", False),
        ("week", "as_supplied", True),
        ("sex", "as_supplied", True),
        ("sex", "redacted", False),
    ],
)
def test_a_dimension_needs_its_form_or_a_finer_one(
    dashboard: Any, by: str, form: ReleaseForm, allowed: bool
) -> None:
    field = {"postcode_district": "postcode", "age_band": "date_of_birth", "sex": "sex"}.get(
        by, "attendance_date"
    )
    planned = _plan(Dimension(by, field))
    permitted = (ReleasedField(dataset=ED, field=field, form=form),)
    assert fits(planned, ED, permitted) is allowed
    if allowed:
        check_permitted(planned, permitted, dashboard)
    else:
        with pytest.raises(Refused, match="does not allow"):
            check_permitted(planned, permitted, dashboard)


def test_a_dimension_on_a_field_of_the_wrong_type_is_invalid(dashboard: Any) -> None:
    planned = _plan(Dimension("month", "sharps_injury"))
    with pytest.raises(ValidationError) as caught:
        check_permitted(planned, _released(dashboard), dashboard)
    assert caught.value.code == "dimension_field_invalid"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sharps_injury", 1),  # a flag compares with true or false, never a number
        ("sharps_injury", "yes"),
        ("date_of_birth", "11-15"),  # not an age band
        ("attendance_date", True),
    ],
)
def test_a_condition_that_cannot_match_its_released_form_is_invalid(
    dashboard: Any, field: str, value: Any
) -> None:
    planned = _plan(Dimension("sex"), where=(Condition(field, value),))
    with pytest.raises(ValidationError) as caught:
        check_permitted(planned, _released(dashboard), dashboard)
    assert caught.value.code == "condition_invalid"
    assert caught.value.location.field == "measure.where[0].equals"
    assert str(value) not in caught.value.message


def test_a_condition_on_a_redacted_field_is_invalid(dashboard: Any) -> None:
    planned = _plan(Dimension("age_band"), where=(Condition("sex", "F"),))
    permitted = (
        ReleasedField(dataset=ED, field="date_of_birth", form="age_band"),
        ReleasedField(dataset=ED, field="sex", form="redacted"),
    )
    with pytest.raises(ValidationError, match="only as redacted"):
        check_permitted(planned, permitted, dashboard)


def test_a_record_counts_only_where_its_release_covers_what_is_read() -> None:
    planned = _plan(
        Dimension("postcode_district"),
        where=(Condition("sharps_injury", True), Condition(f"{SCHOOL}.permanently_excluded", True)),
    )
    district = ReleasedField(dataset=ED, field="postcode", form="postcode_district")
    sharps = ReleasedField(dataset=ED, field="sharps_injury", form="flag")
    excluded = ReleasedField(dataset=SCHOOL, field="permanently_excluded", form="flag")
    assert fits(planned, ED, (district, sharps))
    assert not fits(planned, ED, (district,))
    assert not fits(planned, ED, (sharps,))
    assert fits(planned, SCHOOL, (excluded,))
    assert not fits(planned, SCHOOL, (district, sharps))


# -- labels -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("by", "value", "expected"),
    [
        ("postcode_district", "NS1 4AB", "NS1"),
        ("postcode_district", "ns14ab", "NS1"),
        ("postcode_district", "not a postcode", UNKNOWN),
        ("postcode_district", None, UNKNOWN),
        ("age_band", "2011-03-14", "14-15"),
        ("age_band", "2010-11-26", "16-17"),  # sixteen on the day of the request
        ("age_band", "2010-11-27", "14-15"),
        ("age_band", "2030-01-01", UNKNOWN),  # born after the request: no age
        ("age_band", "1990-01-01", "25+"),
        ("month", "2026-11-20", "2026-11"),
        ("month", "20/11/2026", UNKNOWN),
        ("week", "2026-11-20", "2026-W47"),
        ("week", "2027-01-01", "2026-W53"),  # ISO weeks belong to the year of their Thursday
        ("week", "2024-12-30", "2025-W01"),
        ("week", None, UNKNOWN),
        ("sex", "F", "F"),
        ("sex", "X", "X"),
        ("sex", None, "U"),  # U is the code for not known
    ],
)
def test_labels(by: Any, value: Any, expected: str) -> None:
    assert label(by, value, on=ON) == expected


# -- tallies ----------------------------------------------------------------------------

SHARPS = (ReleasedField(dataset=ED, field="sharps_injury", form="flag"),)
DIMENSIONS = (
    ReleasedField(dataset=ED, field="postcode", form="postcode_district"),
    ReleasedField(dataset=ED, field="attendance_date", form="month"),
    ReleasedField(dataset=ED, field="sex"),
    ReleasedField(dataset=ED, field="date_of_birth", form="age_band"),
)
EXCLUDED = (ReleasedField(dataset=SCHOOL, field="permanently_excluded", form="flag"),)


def _ed(subject: str, ref: str, **values: Any) -> dict[str, Any]:
    stored = {
        "postcode": "NS1 4AB",
        "attendance_date": "2026-10-03",
        "sex": "M",
        "date_of_birth": "2010-05-01",
        "sharps_injury": True,
    }
    stored.update(values)
    return {"subject": subject, "ref": ref, "stored": stored}


def _observe(planned: Plan, records: list[dict[str, Any]], dataset: str = ED) -> list[Observation]:
    permitted = (*DIMENSIONS, *SHARPS, *EXCLUDED)
    return [
        observe(
            planned,
            dataset,
            r["subject"],
            r["stored"],
            permitted,
            received_at=r.get("received", "2026-11-01T00:00:00"),
            record_id=r["ref"],
            on=ON,
        )
        for r in records
    ]


def test_records_and_young_people_are_counted_apart() -> None:
    records = [
        _ed("s1", "r1", attendance_date="2026-10-03"),
        _ed("s1", "r2", attendance_date="2026-09-20"),
        _ed("s2", "r3", postcode="NS2 1AA"),
    ]
    by_records = _plan(Dimension("month", "attendance_date"), count="records")
    table = tabulate(by_records, _observe(by_records, records))
    assert table is not None
    assert table.rows == ("2026-09", "2026-10")
    assert (table.count("2026-09"), table.count("2026-10"), table.count(None)) == (1, 2, 3)
    by_people = _plan(Dimension("month", "attendance_date"))
    table = tabulate(by_people, _observe(by_people, records))
    assert table is not None
    # s1 counts once, in the month of their first attendance; the total is two people.
    assert (table.count("2026-09"), table.count("2026-10"), table.count(None)) == (1, 1, 2)


def test_without_a_date_a_young_person_counts_where_first_received() -> None:
    records = [
        {**_ed("s1", "r1", postcode="NS2 1AA"), "received": "2026-11-02T00:00:00"},
        {**_ed("s1", "r2", postcode="NS1 4AB"), "received": "2026-11-01T00:00:00"},
    ]
    planned = _plan(Dimension("postcode_district"))
    table = tabulate(planned, _observe(planned, records))
    assert table is not None
    # Only the cells young people are counted in appear: NS2 held only s1's later record.
    assert table.counts == {("NS1", None): 1, (None, None): 1}


def test_two_way_tables_declare_fixed_categories() -> None:
    records = [_ed("s1", "r1"), _ed("s2", "r2", sex="F", date_of_birth=None)]
    planned = _plan(Dimension("age_band"), Dimension("sex"))
    table = tabulate(planned, _observe(planned, records))
    assert table is not None
    assert table.rows == ("0-9", "10-13", "14-15", "16-17", "18-24", "25+", UNKNOWN)
    assert table.columns == ("F", "M", "X", "U")
    assert table.count("16-17", "M") == 1
    assert table.count(UNKNOWN, "F") == 1
    assert table.count(None, None) == 2


def test_conditions_filter_on_the_released_form() -> None:
    records = [
        _ed("s1", "r1"),
        _ed("s2", "r2", sharps_injury=False),
        _ed("s3", "r3", sharps_injury=None),
    ]
    planned = _plan(Dimension("sex"), where=(Condition("sharps_injury", True),))
    table = tabulate(planned, _observe(planned, records))
    assert table is not None
    assert table.count(None, None) == 1
    not_sharps = _plan(Dimension("sex"), where=(Condition("sharps_injury", False),))
    table = tabulate(not_sharps, _observe(not_sharps, records))
    assert table is not None
    # A missing flag is neither true nor false: only s2 said no.
    assert table.count(None, None) == 1


def test_a_condition_on_another_dataset_counts_the_overlap() -> None:
    planned = _plan(Dimension("sex"), where=(Condition(f"{SCHOOL}.permanently_excluded", True),))
    ed = _observe(planned, [_ed("s1", "r1"), _ed("s2", "r2"), _ed("s3", "r3")])
    school = _observe(
        planned,
        [
            {"subject": "s1", "ref": "x1", "stored": {"permanently_excluded": True}},
            {"subject": "s2", "ref": "x2", "stored": {"permanently_excluded": False}},
            {"subject": "s4", "ref": "x4", "stored": {"permanently_excluded": True}},
        ],
        SCHOOL,
    )
    table = tabulate(planned, ed + school)
    assert table is not None
    assert table.counts[(None, None)] == 1
    assert table.count("M") == 1


def test_nothing_counted_is_an_all_zero_table() -> None:
    planned = _plan(Dimension("postcode_district"), Dimension("sex"))
    assert tabulate(planned, []) is None
    empty = empty_table(planned)
    assert empty.rows == ()
    assert empty.columns == ("F", "M", "X", "U")
    assert {c.value for c in empty.cells.values()} == {0}
    assert empty.as_csv_rows()[-1] == ["Total", "0", "0", "0", "0", "0"]


def test_too_many_cells_is_refused_before_suppression(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aggregate, "MAX_AGGREGATE_CELLS", 20)
    planned = _plan(Dimension("age_band"), Dimension("sex"))
    with pytest.raises(ValidationError) as caught:
        tabulate(planned, _observe(planned, [_ed("s1", "r1")]))
    assert caught.value.code == "aggregate_too_large"


def test_the_rounding_defaults_are_protects() -> None:
    defaults = inspect.signature(protect).parameters
    assert defaults["rounding_base"].default == aggregate.ROUNDING_BASE == 5
    assert defaults["redact_at_or_below"].default == aggregate.REDACT_AT_OR_BELOW == 7
