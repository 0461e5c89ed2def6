"""Properties of aggregates over random records: tallies add up, labels say no more than
their dimension, and an attacker with the published table recovers no suppressed cell."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agreements.models import ReleasedField
from broker.aggregate import (
    DIMENSION_KINDS,
    UNKNOWN,
    AggregateQuery,
    Condition,
    Dimension,
    Plan,
    label,
    observe,
    plan,
    tabulate,
)
from broker.release import AGE_BANDS
from broker.suppression import protect
from tests.property.test_suppression_properties import bounds_attack, determined, hidden

ON = date(2026, 11, 26)
DATASET = "ed-violence-attendances"
FIELDS = {
    "postcode_district": "postcode",
    "age_band": "date_of_birth",
    "sex": "sex",
    "week": "attendance_date",
    "month": "attendance_date",
}
PERMITTED = (
    ReleasedField(dataset=DATASET, field="postcode"),
    ReleasedField(dataset=DATASET, field="date_of_birth"),
    ReleasedField(dataset=DATASET, field="sex"),
    ReleasedField(dataset=DATASET, field="attendance_date"),
    ReleasedField(dataset=DATASET, field="sharps_injury", form="flag"),
)
# What a label may look like on each dimension: nothing finer than the dimension.
SHAPES = {
    "postcode_district": re.compile(r"^[A-Z]{1,2}[0-9][0-9A-Z]?$"),
    "age_band": re.compile("^(" + "|".join(re.escape(b) for _, _, b in AGE_BANDS) + ")$"),
    "sex": re.compile(r"^[FMXU]$"),
    "week": re.compile(r"^\d{4}-W\d{2}$"),
    "month": re.compile(r"^\d{4}-\d{2}$"),
}
POSTCODES = ["NS1 4AB", "NS1 5XY", "NS2 1AA", "NS10 2BB", "EC1A 1BB", "M1 1AE", "bad", None]


@st.composite
def stored_records(draw: st.DrawFn) -> dict[str, Any]:
    day = st.dates(date(1995, 1, 1), date(2027, 6, 1)).map(date.isoformat)
    return {
        "postcode": draw(st.sampled_from(POSTCODES)),
        "date_of_birth": draw(st.none() | day),
        "sex": draw(st.sampled_from(["F", "M", "X", "U", None])),
        "attendance_date": draw(st.none() | day | st.just("not a date")),
        "sharps_injury": draw(st.sampled_from([True, False, None])),
    }


@st.composite
def cases(draw: st.DrawFn) -> tuple[Plan, list[tuple[str, dict[str, Any]]]]:
    kinds = draw(st.lists(st.sampled_from(DIMENSION_KINDS), min_size=1, max_size=2, unique=True))
    where = draw(st.sampled_from([(), (Condition("sharps_injury", True),)]))
    count = draw(st.sampled_from(["subjects", "records"]))
    query = AggregateQuery(DATASET, count, tuple(Dimension(k, FIELDS[k]) for k in kinds), where)
    subjects = [f"s{i}" for i in range(draw(st.integers(1, 40)))]
    records = draw(
        st.lists(st.tuples(st.sampled_from(subjects), stored_records()), min_size=1, max_size=120)
    )
    return plan(query), records


def _observations(planned: Plan, records: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    start = date(2026, 1, 1)
    return [
        observe(
            planned,
            DATASET,
            subject,
            stored,
            PERMITTED,
            received_at=(start + timedelta(days=i)).isoformat(),
            record_id=f"r{i:04d}",
            on=ON,
        )
        for i, (subject, stored) in enumerate(records)
    ]


def _matching(planned: Plan, records: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    return [(s, r) for s, r in records if not planned.where or r["sharps_injury"] is True]


@settings(max_examples=300, deadline=None)
@given(cases())
def test_tallies_add_up(case: tuple[Plan, list[tuple[str, dict[str, Any]]]]) -> None:
    planned, records = case
    table = tabulate(planned, _observations(planned, records))
    matching = _matching(planned, records)
    if not matching:
        assert table is None
        return
    assert table is not None
    expected = len(matching) if planned.count == "records" else len({s for s, _ in matching})
    assert table.count(None, None) == expected
    if planned.count == "records":
        cells = Counter(
            tuple(label(d.by, r.get(d.field), on=ON) for d in planned.dimensions)
            for _, r in matching
        )
        for cell, n in cells.items():
            assert table.count(*cell) == n


@settings(max_examples=300, deadline=None)
@given(cases())
def test_labels_say_no_more_than_their_dimension(
    case: tuple[Plan, list[tuple[str, dict[str, Any]]]],
) -> None:
    planned, records = case
    table = tabulate(planned, _observations(planned, records))
    if table is None:
        return
    axes = [table.rows, table.columns][: len(planned.dimensions)]
    for dimension, labels in zip(planned.dimensions, axes, strict=True):
        for text in labels:
            assert text == UNKNOWN or SHAPES[dimension.by].match(text), (dimension.by, text)
    # No stored value appears whole among the labels (a full postcode or date, say).
    values = {str(v) for _, r in records for v in r.values() if isinstance(v, str)}
    shown = set(table.rows) | set(table.columns)
    assert not {v for v in values if len(v) > 7} & shown


@settings(max_examples=300, deadline=None)
@given(cases(), st.integers(1, 10))
def test_no_suppressed_cell_can_be_recovered(
    case: tuple[Plan, list[tuple[str, dict[str, Any]]]], minimum: int
) -> None:
    planned, records = case
    table = tabulate(planned, _observations(planned, records))
    if table is None:
        return
    published = protect(table, minimum_cell_size=minimum)
    unknown = hidden(published)
    # The attacker knows every other cell exactly, redacted ones too: more than anyone will.
    assert determined(table, unknown) == set()
    assert all(low < high for low, high in bounds_attack(table, unknown).values())
    small = {p for p, n in table.counts.items() if 0 < n < minimum}
    assert small <= unknown
