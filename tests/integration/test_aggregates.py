"""Aggregates through the service on SQLite and PostgreSQL, with the dashboard agreement."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agreements.demo_approvals import approve_for_demo
from audit.events import LoggedEntry
from broker import aggregate as aggregate_module
from broker.aggregate import AggregateQuery, Condition, Dimension
from broker.bootstrap import Runtime, build_runtime
from broker.clock import FixedClock
from broker.config import Settings
from broker.errors import AccordError, Refused, ValidationError
from broker.service_aggregate import AggregateResult
from broker.suppression import CountTable, Reason
from tests.conftest import EXAMPLES
from tests.dashboard import (
    DASHBOARD,
    ED,
    POLICE,
    PURPOSE,
    SCHOOL,
    Person,
    dashboard_folder,
    ingest,
    population,
    true_counts,
)
from tests.property.test_suppression_properties import bounds_attack, determined


@pytest.fixture
def dashboard_settings(settings: Settings, tmp_path: Path) -> Settings:
    """Settings with the dashboard agreement installed (and the main example beside it)."""
    return settings.model_copy(update={"agreements_dir": dashboard_folder(tmp_path / "dash")})


@pytest.fixture
def people() -> list[Person]:
    return population()


@pytest.fixture
def dashboard(
    dashboard_settings: Settings, clock: FixedClock, people: list[Person]
) -> Iterator[Runtime]:
    """A broker holding the population's records under the dashboard agreement."""
    built = build_runtime(dashboard_settings, clock=clock)
    ingest(built.broker, people)
    yield built
    built.engine.dispose()


def _ask(runtime: Runtime, query: AggregateQuery, **changes: Any) -> AggregateResult:
    asked: dict[str, Any] = {
        "agency": "vru",
        "agreement_id": DASHBOARD,
        "purpose": PURPOSE,
        "query": query,
        **changes,
    }
    return runtime.broker.aggregate(**asked)


def _entries(runtime: Runtime) -> list[LoggedEntry]:
    return [
        e
        for e in runtime.broker.audit_page(actor=None, after=0, limit=1000)
        if e.event.action == "aggregate"
    ]


def _true_table(counts: dict[tuple[str, ...], int], published: Any) -> CountTable:
    if published.columns:
        return CountTable.from_counts(
            {(r, c): counts.get((r, c), 0) for r in published.rows for c in published.columns},
            rows=published.rows,
            columns=published.columns,
        )
    return CountTable.from_counts(
        {r: counts.get((r,), 0) for r in published.rows}, rows=published.rows
    )


def _check_protected(result: AggregateResult, truth: CountTable) -> None:
    """Published counts are the truth rounded; small ones are withheld and stay unrecoverable."""
    cells = result.table.cells
    assert set(cells) == set(truth.counts)
    for position, n in truth.counts.items():
        value = cells[position].value
        if 0 < n < result.minimum_cell_size:
            assert value is None, position
        if value is not None:
            assert value == (n + 2) // 5 * 5
            assert (value == 0) == (n == 0)
            assert n > 7 or n == 0
    unknown = {p for p, c in cells.items() if c.reason in (Reason.PRIMARY, Reason.SECONDARY)}
    assert determined(truth, unknown) == set()
    assert all(low < high for low, high in bounds_attack(truth, unknown).values())


def test_sharps_injuries_by_district_and_month(dashboard: Runtime, people: list[Person]) -> None:
    query = AggregateQuery(
        ED,
        "subjects",
        (Dimension("postcode_district"), Dimension("month", "attendance_date")),
        (Condition("sharps_injury", True),),
    )
    result = _ask(dashboard, query)
    truth = true_counts(
        people,
        lambda p, r: (p.district, r["attendance_date"][:7]),
        keep=lambda _p, r: r["sharps_injury"],
        first=lambda r: r["attendance_date"],
    )
    assert result.minimum_cell_size == 10  # the agreement's, not the default 5
    assert result.table.rows == tuple(sorted({d for d, _ in truth}))
    table = _true_table(truth, result.table)
    assert table.count(None, None) == sum(truth.values())
    _check_protected(result, table)
    withheld = [c for c in result.table.cells.values() if c.value is None]
    assert withheld, "the population is built to have small cells"
    entry = _entries(dashboard)[-1]
    assert entry.seq == result.audit_entry
    assert entry.event.outcome == "permitted"
    assert entry.event.detail["cells"] == {
        "published": len(result.table.cells) - len(withheld),
        "withheld": len(withheld),
    }
    assert entry.event.detail["dimensions"] == [
        {"by": "postcode_district", "field": f"{ED}.postcode"},
        {"by": "month", "field": f"{ED}.attendance_date"},
    ]
    assert entry.event.detail["where"] == [f"{ED}.sharps_injury"]
    assert entry.event.detail["minimum_cell_size"] == 10


def test_records_by_age_band_and_sex(dashboard: Runtime, people: list[Person]) -> None:
    query = AggregateQuery(POLICE, "records", (Dimension("age_band"), Dimension("sex")))
    result = _ask(dashboard, query)
    truth = true_counts(people, lambda p, _r: (p.band, p.sex), dataset="police", subjects=False)
    assert result.table.columns == ("F", "M", "X", "U")
    assert result.table.rows == ("0-9", "10-13", "14-15", "16-17", "18-24", "25+")
    _check_protected(result, _true_table(truth, result.table))


def test_the_overlap_of_knife_crime_and_exclusion(dashboard: Runtime, people: list[Person]) -> None:
    query = AggregateQuery(
        POLICE,
        "subjects",
        (Dimension("age_band"),),
        (
            Condition("knife_or_sharp_instrument", True),
            Condition(f"{SCHOOL}.permanently_excluded", True),
        ),
    )
    result = _ask(dashboard, query)
    excluded = {p.family for p in people if any(r["permanently_excluded"] for r in p.school)}
    truth = true_counts(
        people,
        lambda p, _r: (p.band,),
        dataset="police",
        keep=lambda p, r: r["knife_or_sharp_instrument"] and p.family in excluded,
    )
    assert sum(truth.values()) > 0
    _check_protected(result, _true_table(truth, result.table))


def test_nothing_matching_is_a_table_of_zeros(dashboard: Runtime) -> None:
    query = AggregateQuery(
        ED, "subjects", (Dimension("sex"),), (Condition("attendance_date", "1999-01"),)
    )
    result = _ask(dashboard, query)
    assert result.table.rows == ("F", "M", "X", "U")
    assert {c.value for c in result.table.cells.values()} == {0}


@pytest.mark.parametrize(
    ("changes", "query", "code"),
    [
        ({"purpose": "individual-targeting"}, None, "purpose_unknown"),
        ({"agency": "police"}, None, "agency_not_recipient"),
        (
            {
                "agreement_id": "sv-early-identification",
                "agency": "social-care",
                "purpose": "safeguarding-triage",
            },
            AggregateQuery("school-attendance", "subjects", (Dimension("postcode_district"),)),
            "output_not_allowed",
        ),
        # The school's sex is not released to the unit at all.
        ({}, AggregateQuery(SCHOOL, "subjects", (Dimension("sex"),)), "field_not_permitted"),
        (
            {},
            AggregateQuery(
                ED, "subjects", (Dimension("age_band"),), (Condition("nhs_number", "x"),)
            ),
            "field_not_permitted",
        ),
        # Attendance dates are released by month: weeks would be finer.
        (
            {},
            AggregateQuery(ED, "subjects", (Dimension("week", "attendance_date"),)),
            "dimension_not_permitted",
        ),
    ],
)
def test_refusals_are_audited(
    dashboard: Runtime, changes: dict[str, Any], query: AggregateQuery | None, code: str
) -> None:
    asked = query or AggregateQuery(ED, "subjects", (Dimension("sex"),))
    with pytest.raises(Refused) as caught:
        _ask(dashboard, asked, **changes)
    assert caught.value.code == code
    entry = _entries(dashboard)[-1]
    assert (entry.event.outcome, entry.event.reason_code) == ("refused", code)
    assert entry.event.actor == changes.get("agency", "vru")


@pytest.mark.parametrize(
    ("query", "code"),
    [
        (AggregateQuery(ED, "subjects", ()), "dimensions_invalid"),
        (
            AggregateQuery(ED, "subjects", (Dimension("month", "sharps_injury"),)),
            "dimension_field_invalid",
        ),
        (
            AggregateQuery(ED, "subjects", (Dimension("sex"),), (Condition("sharps_injury", 1),)),
            "condition_invalid",
        ),
    ],
)
def test_invalid_queries_are_audited(dashboard: Runtime, query: AggregateQuery, code: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _ask(dashboard, query)
    assert caught.value.code == code
    entry = _entries(dashboard)[-1]
    assert (entry.event.outcome, entry.event.reason_code) == ("refused", code)


def test_too_many_cells_is_refused_and_audited(
    dashboard: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aggregate_module, "MAX_AGGREGATE_CELLS", 12)
    before = len(_entries(dashboard))
    query = AggregateQuery(ED, "subjects", (Dimension("age_band"), Dimension("sex")))
    with pytest.raises(ValidationError) as caught:
        _ask(dashboard, query)
    assert caught.value.code == "aggregate_too_large"
    entries = _entries(dashboard)
    assert len(entries) == before + 1
    assert entries[-1].event.reason_code == "aggregate_too_large"


def test_the_audit_holds_no_value(dashboard: Runtime, people: list[Person]) -> None:
    _ask(
        dashboard,
        AggregateQuery(
            ED,
            "subjects",
            (Dimension("postcode_district"), Dimension("month", "attendance_date")),
            (Condition("attendance_date", "2026-09"),),
        ),
    )
    with pytest.raises(AccordError):
        _ask(
            dashboard,
            AggregateQuery(
                ED, "subjects", (Dimension("sex"),), (Condition("attendance_date", "NS1 4AB"),)
            ),
            purpose="nope",
        )
    text = json.dumps([e.event.detail for e in _entries(dashboard)])
    values = {"2026-09", "NS1 4AB", "NS1", "16-17"}
    values |= {p.born.isoformat() for p in people} | {p.family for p in people}
    values |= {r["attendance_date"] for p in people for r in p.ed}
    assert not [v for v in values if v in text]


def test_records_stay_governed_by_the_version_they_came_under(
    dashboard_settings: Settings, clock: FixedClock, people: list[Person], tmp_path: Path
) -> None:
    # Version 1 released no sex from the emergency department; version 2 does.
    folder = tmp_path / "versions"
    folder.mkdir()
    text = (EXAMPLES / f"{DASHBOARD}.yaml").read_text()
    line = f"      - {{dataset: {ED}, field: sex}}\n"
    assert line in text
    (folder / f"{DASHBOARD}.yaml").write_text(text.replace(line, ""))
    approve_for_demo(folder / f"{DASHBOARD}.yaml")
    first = build_runtime(
        dashboard_settings.model_copy(update={"agreements_dir": folder}), clock=clock
    )
    try:
        ingest(first.broker, people[:100])
    finally:
        first.engine.dispose()
    (folder / f"{DASHBOARD}.yaml").write_text(text.replace("version: 1\n", "version: 2\n", 1))
    approve_for_demo(folder / f"{DASHBOARD}.yaml")
    second = build_runtime(
        dashboard_settings.model_copy(update={"agreements_dir": folder}), clock=clock
    )
    try:
        ingest(second.broker, people[100:])
        by_sex = _ask(second, AggregateQuery(ED, "records", (Dimension("sex"),)))
        later = true_counts(people[100:], lambda p, _r: (p.sex,), subjects=False)
        _check_protected(by_sex, _true_table(later, by_sex.table))
        assert by_sex.agreement_version == 2
        entry = _entries(second)[-1]
        assert entry.event.detail["left_out_records"] == sum(len(p.ed) for p in people[:100])
        # A dimension both versions release counts every record.
        by_band = _ask(second, AggregateQuery(ED, "records", (Dimension("age_band"),)))
        every = true_counts(people, lambda p, _r: (p.band,), subjects=False)
        _check_protected(by_band, _true_table(every, by_band.table))
        assert "left_out_records" not in _entries(second)[-1].event.detail
    finally:
        second.engine.dispose()
