"""Disclosure control for published counts: hand-built tables with answers worked out by hand."""

from __future__ import annotations

from typing import Any

import pytest

from broker.errors import ValidationError
from broker.suppression import (
    MAX_CELLS,
    SUPPRESSED_MARKER,
    CountTable,
    PublishedTable,
    Reason,
    protect,
)

P, S, R = Reason.PRIMARY, Reason.SECONDARY, Reason.REDACTED


def _reasons(published: PublishedTable) -> dict[tuple[str | None, str | None], Reason]:
    return {p: c.reason for p, c in published.cells.items() if c.reason is not None}


def _grid(rows: dict[str, list[int]], columns: str) -> CountTable:
    counts = {(r, c): n for r, line in rows.items() for c, n in zip(columns, line, strict=True)}
    return CountTable.from_counts(counts, rows=list(rows), columns=list(columns))


def test_table_holds_its_totals() -> None:
    table = CountTable.from_observations(
        [("E1", "F"), ("E1", "M"), ("E2", "F")], columns=["F", "M"]
    )
    assert table.rows == ("E1", "E2")
    assert (table.count("E1", "F"), table.count("E2", "M")) == (1, 0)
    assert (table.count("E1"), table.count("E2"), table.count(None, "F")) == (2, 1, 2)
    assert table.count(None, None) == 3


def test_one_small_cell_in_a_3x3_table_gets_the_cheapest_rectangle() -> None:
    # (b, y) = 3 is small. Closing a rectangle through it costs 25 + 20 + 30 via (b, x),
    # (a, x), (a, y); every other rectangle costs more.
    table = _grid({"a": [20, 30, 40], "b": [25, 3, 35], "c": [50, 45, 60]}, "xyz")
    published = protect(table)
    assert _reasons(published) == {("b", "y"): P, ("b", "x"): S, ("a", "x"): S, ("a", "y"): S}
    assert published.value("b") == 65
    assert published.value(None, "y") == 80
    assert published.value(None, None) == 310


def test_a_row_whose_total_is_small_hides_the_total_and_a_matching_row() -> None:
    # Row b adds up to 3, so its total is suppressed too; row a is the cheapest partner.
    table = _grid({"a": [20, 30], "b": [2, 1], "c": [40, 50]}, "xy")
    published = protect(table)
    assert _reasons(published) == {
        ("b", "x"): P,
        ("b", "y"): P,
        ("b", None): P,
        ("a", "x"): S,
        ("a", "y"): S,
        ("a", None): S,
    }
    assert published.value(None, "x") == 60  # 62 rounded; the column totals stay published


def test_a_small_grand_total_is_suppressed_with_everything_else() -> None:
    published = protect(CountTable.from_counts({("a", "x"): 1, ("a", "y"): 2}))
    assert set(_reasons(published).values()) == {P}
    assert len(_reasons(published)) == len(published.cells)


def test_a_table_without_small_cells_is_only_rounded() -> None:
    table = _grid({"a": [12, 23], "b": [38, 47]}, "xy")
    published = protect(table)
    assert _reasons(published) == {}
    assert [published.value("a", "x"), published.value("a", "y")] == [10, 25]
    assert [published.value("b", "x"), published.value("b", "y")] == [40, 45]
    assert [published.value("a"), published.value("b")] == [35, 85]
    assert [published.value(None, "x"), published.value(None, "y")] == [50, 70]
    assert published.value(None, None) == 120


def test_counts_at_or_below_the_redaction_threshold_are_redacted_not_suppressed() -> None:
    table = _grid({"a": [6, 40], "b": [30, 50]}, "xy")
    published = protect(table)
    assert _reasons(published) == {("a", "x"): R}
    assert published.value("a") == 45


def test_zeros_are_published_and_not_chosen_as_complements() -> None:
    # The cheapest cycle is (a, x), (a, y), (b, y), (b, x) at 8 + 0 + 10, but with the zero
    # (b, y) hidden an attacker knows (a, x) = 3 + (b, y) >= 3, its true value. The next
    # cheapest goes through the column totals (8 + 8 + 13) and leaves (a, x) free both ways.
    table = _grid({"a": [3, 8, 30], "b": [10, 0, 25]}, "xyz")
    published = protect(table)
    assert published.value("b", "y") == 0
    assert _reasons(published) == {
        ("a", "x"): P,
        ("a", "y"): S,
        (None, "x"): S,
        (None, "y"): S,
    }


def test_zeros_are_suppressed_when_the_caller_says_they_are_not_safe() -> None:
    table = _grid({"a": [0, 40], "b": [30, 50]}, "xy")
    published = protect(table, publish_zeros=False)
    assert _reasons(published)[("a", "x")] == P
    assert len(_reasons(published)) == 4  # a rectangle; a single zero in a line is recoverable


def test_a_one_way_table_pairs_a_small_cell_with_the_smallest_other() -> None:
    table = CountTable.from_counts({"E1": 4, "E2": 30, "E3": 12, "E4": 0})
    published = protect(table)
    assert _reasons(published) == {("E1", None): P, ("E3", None): S}
    assert published.value(None, None) == 45
    assert published.as_csv_rows() == [
        ["", "count"],
        ["E1", SUPPRESSED_MARKER],
        ["E2", "30"],
        ["E3", SUPPRESSED_MARKER],
        ["E4", "0"],
        ["Total", "45"],
    ]


def test_output_uses_one_marker_whatever_the_reason() -> None:
    table = _grid({"a": [20, 3], "b": [25, 6], "c": [30, 40]}, "xy")
    published = protect(table, minimum_cell_size=4)
    assert set(_reasons(published).values()) >= {P, S}
    rows = published.as_csv_rows()
    assert rows[0] == ["", "x", "y", "Total"]
    assert rows[-1][0] == "Total"
    hidden = {cell for line in rows[1:] for cell in line[1:] if not cell.isdigit()}
    assert hidden == {SUPPRESSED_MARKER}
    records = published.as_records()
    assert len(records) == len(published.cells)
    assert {"row": "a", "column": "y", "value": None} in records
    assert all(set(record) == {"row", "column", "value"} for record in records)


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"minimum_cell_size": 0}, "cell_size_invalid"),
        ({"rounding_base": 0}, "rounding_base_invalid"),
        ({"rounding_base": -5}, "rounding_base_invalid"),
        ({"redact_at_or_below": -1}, "redaction_threshold_invalid"),
    ],
)
def test_protect_refuses_bad_settings(options: dict[str, Any], code: str) -> None:
    with pytest.raises(ValidationError) as caught:
        protect(CountTable.from_counts({"a": 10}), **options)
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("counts", "code"),
    [
        ({1: 3}, "table_key_invalid"),
        ({("a", 2): 3}, "table_key_invalid"),
        ({("a", "b", "c"): 3}, "table_key_invalid"),
        ({"a": -1}, "count_invalid"),
        ({"a": 2.0}, "count_invalid"),
        ({"a": True}, "count_invalid"),
        ({"a": 1, ("a", "b"): 2}, "table_shape_invalid"),
        ({}, "table_empty"),
    ],
)
def test_tables_refuse_bad_input(counts: dict[Any, Any], code: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CountTable.from_counts(counts)
    assert caught.value.code == code


def test_declared_keys_must_cover_the_counts_and_not_repeat() -> None:
    with pytest.raises(ValidationError) as caught:
        CountTable.from_counts({"a": 1}, rows=["b"])
    assert caught.value.code == "table_key_invalid"
    with pytest.raises(ValidationError) as caught:
        CountTable.from_counts({"a": 1}, rows=["a", "a"])
    assert caught.value.code == "table_key_invalid"
    with pytest.raises(ValidationError) as caught:
        CountTable.from_observations([["a", "b"]])  # type: ignore[arg-type]
    assert caught.value.code == "table_key_invalid"


def test_declared_keys_add_empty_categories_as_zeros() -> None:
    table = CountTable.from_observations(["b", "a"], rows=["c", "b", "a"])
    assert table.rows == ("c", "b", "a")
    assert table.count("c") == 0


def test_a_table_over_the_cell_limit_is_refused() -> None:
    rows = [f"r{i}" for i in range(MAX_CELLS // 10 + 1)]
    with pytest.raises(ValidationError) as caught:
        CountTable.from_counts({}, rows=rows, columns=[str(c) for c in range(10)])
    assert caught.value.code == "table_too_large"
    at_limit = CountTable.from_counts({}, rows=rows[:-1], columns=[str(c) for c in range(10)])
    assert len(at_limit.rows) * len(at_limit.columns) == MAX_CELLS
