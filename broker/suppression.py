"""Statistical disclosure control for published counts: cell suppression, then rounding.

A ``CountTable`` is a one-way (rows only) or two-way (rows x columns) table of
counts with its row, column and grand totals. ``protect`` turns it into a
``PublishedTable`` in three steps.

1. Primary suppression: every cell, interior or total, with
   ``0 < count < minimum_cell_size`` is suppressed (zeros too when the caller
   says zeros are not safe to publish).
2. Complementary (secondary) suppression. A table satisfies linear equations:
   each row adds up to its total, each column to its total, the row totals and
   the column totals to the grand total. Every cell is in exactly two of them,
   so the table is a graph (equations as vertices, cells as edges) whose signed
   incidence matrix is the system. A suppressed cell is recoverable from the
   published cells exactly when it lies on no cycle of suppressed cells (a
   bridge); "two suppressions in every line" is necessary, not sufficient (two
   blocks joined through one cell pass it). A cycle is a way to change hidden
   cells and keep every published number: walking it raises some cells by one
   and lowers others. Lowering a zero is impossible, so an attacker who uses
   non-negativity can still pin a cell whose only cycles lower a zero. Hence,
   for each primary cell in a fixed order: if a cycle of suppressed cells can
   move it without lowering a zero, keep it; otherwise suppress the cheapest
   such cycle (Dijkstra; a cell costs its count, suppressed cells nothing, zero
   cells only when no other way exists). One always exists (one more person in
   the cell and its totals), and suppressing more never breaks an earlier
   cycle, so one pass leaves every suppressed cell able to move by one.
3. Rounding: every number still published, totals included, is rounded to
   the nearest multiple of ``rounding_base`` (halves up). A count at or below
   ``redact_at_or_below``, or one that would round to that or less, is
   redacted; zero stays 0, so a published value is 0 only for a true zero.

Known limits: this is the standard greedy heuristic, not an optimal
(linear-programming) suppression, so it may suppress more than necessary and
the result depends on the order of cells. It guarantees every suppressed cell
can take two values, not a minimum width for the interval an attacker can
place it in (no protection levels, as in tau-ARGUS). Rounding is conventional,
not controlled: published cells need not add up to published totals. It
protects one table only: tables from the same data in other breakdowns or
periods (weeks and the month they make up) can be differenced against it.
Worst case is quadratic in the number of small cells: about 4 s for 10,000.

The output never says *why* a cell is hidden (``as_csv_rows`` and
``as_records`` use one marker for every reason): telling primary from
secondary or redacted cells would say which counts are small.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from broker.errors import ValidationError

MAX_CELLS = 10_000
TOTAL_LABEL = "Total"
SUPPRESSED_MARKER = "[c]"  # the ONS marker for a confidential value

# (row, column); None stands for "total over that dimension". A one-way table's cells are
# (row, None) and its grand total is (None, None).
Position = tuple[str | None, str | None]
Cost = tuple[int, int]  # (zero cells used, sum of counts used)


class Reason(StrEnum):
    """Why a cell is not published; for the broker's own records, never for the output."""

    PRIMARY = "primary"
    SECONDARY = "secondary"
    REDACTED = "redacted"


def _refuse(code: str, message: str) -> ValidationError:
    return ValidationError(message, code=code)


def _declared_keys(declared: Sequence[str], seen: Iterable[str], what: str) -> tuple[str, ...]:
    seen_set = set(seen)
    if not declared:
        return tuple(sorted(seen_set))
    if any(not isinstance(k, str) for k in declared):
        raise _refuse("table_key_invalid", f"every {what} key must be a string")
    if len(set(declared)) != len(declared):
        raise _refuse("table_key_invalid", f"the declared {what} keys repeat a key")
    if not seen_set <= set(declared):
        raise _refuse("table_key_invalid", f"a count names a {what} key that was not declared")
    return tuple(declared)


@dataclass(frozen=True)
class CountTable:
    """Counts by row (and column) with every total; build it with a ``from_`` method.

    ``columns`` is empty for a one-way table. ``counts`` holds every position,
    totals included, so zero cells are present rather than missing.
    """

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    counts: Mapping[Position, int]

    @classmethod
    def from_observations(
        cls,
        observations: Iterable[str] | Iterable[tuple[str, str]],
        *,
        rows: Sequence[str] = (),
        columns: Sequence[str] = (),
    ) -> CountTable:
        """Tally observations: row keys for a one-way table, (row, column) pairs for two-way.

        Declare ``rows`` and ``columns`` to fix their order and to include
        categories nobody fell in (as zeros); otherwise keys seen are sorted.
        """
        tally: Counter[object] = Counter()
        for item in observations:
            if not isinstance(item, str | tuple):
                raise _refuse("table_key_invalid", "an observation must be a key or a pair of keys")
            tally[item] += 1
        return cls._build(tally.items(), rows, columns)

    @classmethod
    def from_counts(
        cls,
        counts: Mapping[str, int] | Mapping[tuple[str, str], int],
        *,
        rows: Sequence[str] = (),
        columns: Sequence[str] = (),
    ) -> CountTable:
        """Build from counts keyed by row (one-way) or by (row, column) (two-way)."""
        return cls._build(counts.items(), rows, columns)

    @classmethod
    def _build(
        cls, items: Iterable[tuple[object, object]], rows: Sequence[str], columns: Sequence[str]
    ) -> CountTable:
        cells: dict[tuple[str, str | None], int] = {}
        for key, value in items:
            pair = key if isinstance(key, tuple) else (key, None)
            if len(pair) != 2 or not isinstance(pair[0], str):
                raise _refuse("table_key_invalid", "every key must be a string or a pair of them")
            row, col = pair
            if not (col is None or isinstance(col, str)):
                raise _refuse("table_key_invalid", "every key must be a string or a pair of them")
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise _refuse("count_invalid", "every count must be a whole number, 0 or more")
            cells[(row, col)] = value
        two_way = {col is not None for _, col in cells} | ({True} if columns else set())
        if len(two_way) > 1:
            raise _refuse("table_shape_invalid", "use row keys alone or (row, column) pairs")
        row_keys = _declared_keys(rows, (r for r, _ in cells), "row")
        col_keys = _declared_keys(columns, (c for _, c in cells if c is not None), "column")
        if not row_keys:
            raise _refuse("table_empty", "the table has no rows; declare them or add counts")
        if len(row_keys) * max(1, len(col_keys)) > MAX_CELLS:
            raise _refuse("table_too_large", f"a table may have at most {MAX_CELLS} cells")
        counts: dict[Position, int] = {}
        for r in row_keys:
            line = [cells.get((r, c), 0) for c in col_keys]
            counts.update({(r, c): n for c, n in zip(col_keys, line, strict=True)})
            counts[(r, None)] = sum(line) if col_keys else cells.get((r, None), 0)
        for c in col_keys:
            counts[(None, c)] = sum(counts[(r, c)] for r in row_keys)
        counts[(None, None)] = sum(counts[(r, None)] for r in row_keys)
        return cls(row_keys, col_keys, counts)

    def count(self, row: str | None, column: str | None = None) -> int:
        """The count at a position; None for either key means the total over it."""
        return self.counts[(row, column)]

    def positions(self) -> tuple[Position, ...]:
        """Every position: interior cells row by row, then row, column and grand totals."""
        return _positions(self.rows, self.columns)


def _positions(rows: Sequence[str], columns: Sequence[str]) -> tuple[Position, ...]:
    interior = [(r, c) for r in rows for c in columns]
    totals = [(r, None) for r in rows] + [(None, c) for c in columns]
    return (*interior, *totals, (None, None))


@dataclass(frozen=True)
class PublishedCell:
    """A published count, or ``value`` None with the reason it was withheld."""

    value: int | None
    reason: Reason | None = None


@dataclass(frozen=True)
class PublishedTable:
    """A protected table. Render with ``as_csv_rows`` or ``as_records``, never from ``reason``."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    cells: Mapping[Position, PublishedCell]

    def value(self, row: str | None, column: str | None = None) -> int | None:
        """The published number at a position, or None when it is withheld."""
        return self.cells[(row, column)].value

    def _text(self, row: str | None, column: str | None) -> str:
        value = self.value(row, column)
        return SUPPRESSED_MARKER if value is None else str(value)

    def as_csv_rows(self) -> list[list[str]]:
        """Header then one line per row and a total line; withheld values show as ``[c]``."""
        cols: list[str | None] = [*self.columns, None]
        header = ["", *self.columns, TOTAL_LABEL] if self.columns else ["", "count"]
        keys: list[str | None] = [*self.rows, None]
        lines = [[TOTAL_LABEL if r is None else r, *(self._text(r, c) for c in cols)] for r in keys]
        return [header, *lines]

    def as_records(self) -> list[dict[str, str | int | None]]:
        """One JSON-ready record per position; None row or column means a total."""
        order = _positions(self.rows, self.columns)
        return [{"row": r, "column": c, "value": self.value(r, c)} for r, c in order]


def _edges(table: CountTable, positions: Sequence[Position]) -> list[tuple[int, int]]:
    """Each position as the two equations it is in: (minus end, plus end) as vertex numbers.

    The signs are those of the incidence matrix: one more observation in a cell raises the
    cell and its totals, a cycle walked from each minus end to its plus end.
    """
    if not table.columns:
        return [(1, 0) if p == (None, None) else (0, 1) for p in positions]  # 1 is a dummy
    row_at = {r: i for i, r in enumerate(table.rows)}
    col_at = {c: len(row_at) + i for i, c in enumerate(table.columns)}
    by_rows, by_cols = len(row_at) + len(col_at), len(row_at) + len(col_at) + 1
    ends: list[tuple[int, int]] = []
    for r, c in positions:
        if r is not None:
            ends.append((col_at[c], row_at[r]) if c is not None else (row_at[r], by_rows))
        else:
            ends.append((by_cols, col_at[c]) if c is not None else (by_rows, by_cols))
    return ends


Adjacency = dict[int, list[tuple[int, int, bool]]]  # vertex: (edge, other end, walk lowers it)


def _link(adjacency: Adjacency, edges: Sequence[tuple[int, int]], edge: int) -> None:
    minus, plus = edges[edge]
    adjacency.setdefault(minus, []).append((edge, plus, False))
    adjacency.setdefault(plus, []).append((edge, minus, True))


def _reaches(ends: tuple[int, int], skip: int, adjacency: Adjacency, counts: Sequence[int]) -> bool:
    """Whether a walk between ``ends`` avoids ``skip`` and lowers no zero cell."""
    start, goal = ends
    # Search from the narrower end (walking edges backwards from the goal) to keep it short.
    back = len(adjacency.get(goal, [])) < len(adjacency.get(start, []))
    start, goal = (goal, start) if back else (start, goal)
    seen, todo = {start}, [start]
    while todo:
        for edge, other, lowers in adjacency.get(todo.pop(), []):
            if edge == skip or (lowers != back and counts[edge] == 0) or other in seen:
                continue
            if other == goal:
                return True
            seen.add(other)
            todo.append(other)
    return False


def _path(
    ends: tuple[int, int], skip: int, adjacency: Adjacency, counts: Sequence[int], cost: list[Cost]
) -> list[int] | None:
    """The cheapest walk between ``ends`` that avoids ``skip`` and lowers no zero cell."""
    start, goal = ends
    best: dict[int, Cost] = {start: (0, 0)}
    via: dict[int, tuple[int, int]] = {}
    heap = [(0, 0, start)]
    while heap:
        zeros, total, vertex = heapq.heappop(heap)
        if vertex == goal:
            path = []
            while vertex != start:
                edge, vertex = via[vertex]
                path.append(edge)
            return path
        if (zeros, total) > best[vertex]:
            continue
        for edge, other, lowers in adjacency.get(vertex, []):
            if edge == skip or (lowers and counts[edge] == 0):
                continue
            step = (zeros + cost[edge][0], total + cost[edge][1])
            if other not in best or step < best[other]:
                best[other], via[other] = step, (edge, vertex)
                heapq.heappush(heap, (*step, other))
    return None


def _complements(
    counts: Sequence[int], edges: Sequence[tuple[int, int]], primary: set[int]
) -> set[int]:
    """Cells to suppress besides ``primary`` so that every primary cell can move."""
    everything: Adjacency = {}
    hidden: Adjacency = {}
    for edge in range(len(edges)):
        _link(everything, edges, edge)
    for edge in primary:
        _link(hidden, edges, edge)
    suppressed = set(primary)
    cost = [(0, 0) if e in suppressed else (int(n == 0), n) for e, n in enumerate(counts)]
    for edge in sorted(primary):
        minus, plus = edges[edge]
        # A cycle raising the cell returns from its plus end to its minus end; one lowering
        # it (possible only when it is positive) goes the other way.
        ways = [(plus, minus), *([(minus, plus)] if counts[edge] > 0 else [])]
        if any(_reaches(way, edge, hidden, counts) for way in ways):
            continue
        # There is always a raising cycle: one more observation in the cell and its totals.
        for added in _path((plus, minus), edge, everything, counts, cost) or []:
            if added not in suppressed:
                suppressed.add(added)
                cost[added] = (0, 0)
                _link(hidden, edges, added)
    return suppressed - primary


def _rounded(count: int, base: int) -> int:
    return (count + base // 2) // base * base


def protect(
    table: CountTable,
    *,
    minimum_cell_size: int = 5,
    rounding_base: int = 5,
    redact_at_or_below: int = 7,
    publish_zeros: bool = True,
) -> PublishedTable:
    """Suppress small cells and their complements, then round and redact what remains.

    Pass the release's ``minimum_cell_size``. ``rounding_base`` 1 turns rounding
    off and ``redact_at_or_below`` 0 turns redaction off. Set ``publish_zeros``
    False when a zero is itself disclosive. See the module docstring for limits.
    """
    if minimum_cell_size < 1:
        raise _refuse("cell_size_invalid", "minimum_cell_size must be 1 or more")
    if rounding_base < 1:
        raise _refuse("rounding_base_invalid", "rounding_base must be 1 or more")
    if redact_at_or_below < 0:
        raise _refuse("redaction_threshold_invalid", "redact_at_or_below must be 0 or more")
    positions = table.positions()
    counts = [table.counts[p] for p in positions]
    primary = {
        i
        for i, n in enumerate(counts)
        if 0 < n < minimum_cell_size or (n == 0 and not publish_zeros)
    }
    secondary = _complements(counts, _edges(table, positions), primary)
    cells: dict[Position, PublishedCell] = {}
    for i, (position, n) in enumerate(zip(positions, counts, strict=True)):
        rounded = _rounded(n, rounding_base)
        if i in primary:
            cells[position] = PublishedCell(None, Reason.PRIMARY)
        elif i in secondary:
            cells[position] = PublishedCell(None, Reason.SECONDARY)
        elif n > 0 and min(n, rounded) <= redact_at_or_below:
            cells[position] = PublishedCell(None, Reason.REDACTED)
        else:
            cells[position] = PublishedCell(rounded)
    return PublishedTable(table.rows, table.columns, cells)
