"""Properties of disclosure control, checked against an attacker who knows more than anyone will.

The attacker is given the *exact* value of every cell and total that is not suppressed
(redacted ones too). Two attacks: bounds propagation over the row, column and total
equations with non-negativity (which solves any equation left with one unknown and keeps
narrowing until nothing changes), and exact linear algebra over fractions (which finds any
cell the published values determine, however many equations it takes).
"""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.suppression import CountTable, Position, PublishedCell, PublishedTable, Reason, protect

HIDDEN = (Reason.PRIMARY, Reason.SECONDARY)
Equation = tuple[Position, list[Position]]  # total, then the cells that add up to it


def equations(table: CountTable) -> list[Equation]:
    """Every linear relation the table's layout publishes."""
    rows: list[str | None] = list(table.rows)
    cols: list[str | None] = list(table.columns)
    if not cols:
        return [((None, None), [(r, None) for r in rows])]
    found: list[Equation] = [((r, None), [(r, c) for c in cols]) for r in rows]
    found += [((None, c), [(r, c) for r in rows]) for c in cols]
    found += [((None, None), [(r, None) for r in rows]), ((None, None), [(None, c) for c in cols])]
    return found


def hidden(published: PublishedTable) -> set[Position]:
    return {p for p, cell in published.cells.items() if cell.reason in HIDDEN}


def bounds_attack(table: CountTable, unknown: set[Position]) -> dict[Position, tuple[int, int]]:
    """The range the attacker can place each unknown cell in, by propagation to a fixpoint."""
    cap = 2 * table.count(None, None) + 10  # the grand total may itself be suppressed
    low = {p: (0 if p in unknown else n) for p, n in table.counts.items()}
    high = {p: (cap if p in unknown else n) for p, n in table.counts.items()}
    changed = True
    while changed:
        changed = False
        for total, members in equations(table):
            # total - sum(members) = 0, so each term is pinned by the range of the rest.
            terms = [(total, 1), *((m, -1) for m in members)]
            for target, sign in terms:
                if target not in unknown:
                    continue
                rest_low = sum(s * (low[p] if s > 0 else high[p]) for p, s in terms if p != target)
                rest_high = sum(s * (high[p] if s > 0 else low[p]) for p, s in terms if p != target)
                # sign * target = -rest
                new_low, new_high = (-rest_high, -rest_low) if sign > 0 else (rest_low, rest_high)
                if new_low > low[target] or new_high < high[target]:
                    low[target] = max(low[target], new_low)
                    high[target] = min(high[target], new_high)
                    changed = True
    return {p: (low[p], high[p]) for p in unknown}


def determined(table: CountTable, unknown: set[Position]) -> set[Position]:
    """Unknown cells fixed by the equations alone: a unit vector in their row space."""
    order = sorted(unknown, key=repr)
    column = {p: i for i, p in enumerate(order)}
    matrix: list[list[Fraction]] = []
    for total, members in equations(table):
        line = [Fraction(0)] * len(order)
        for p, sign in [(total, 1), *((m, -1) for m in members)]:
            if p in column:
                line[column[p]] += sign
        matrix.append(line)
    pivots: list[int] = []
    rank = 0
    for j in range(len(order)):
        pick = next((i for i in range(rank, len(matrix)) if matrix[i][j] != 0), None)
        if pick is None:
            continue
        matrix[rank], matrix[pick] = matrix[pick], matrix[rank]
        matrix[rank] = [x / matrix[rank][j] for x in matrix[rank]]
        for i, line in enumerate(matrix):
            if i != rank and line[j] != 0:
                matrix[i] = [a - line[j] * b for a, b in zip(line, matrix[rank], strict=True)]
        pivots.append(j)
        rank += 1
    return {
        order[j]
        for i, j in enumerate(pivots)
        if all(x == 0 for k, x in enumerate(matrix[i]) if k != j)
    }


def by_hand(table: CountTable, suppressed: set[Position]) -> set[Position]:
    """Suppress exactly these cells, to check the attacks catch what they should."""
    cells = {p: PublishedCell(None, Reason.PRIMARY) for p in suppressed}
    published = PublishedTable(table.rows, table.columns, cells)
    return hidden(published)


def test_the_attacks_recover_a_lone_suppressed_cell() -> None:
    table = CountTable.from_counts({("a", "x"): 3, ("a", "y"): 40, ("b", "x"): 30, ("b", "y"): 9})
    unknown = by_hand(table, {("a", "x")})
    assert bounds_attack(table, unknown) == {("a", "x"): (3, 3)}
    assert determined(table, unknown) == {("a", "x")}


def test_the_attacks_see_through_a_suppressed_zero_partner() -> None:
    # a_x + a_y = 3 and a_y + b_y = 0, so non-negativity pins a_x although no line has one gap.
    counts = {("a", "x"): 3, ("a", "y"): 0, ("b", "x"): 30, ("b", "y"): 0}
    table = CountTable.from_counts(counts)
    unknown = by_hand(table, {("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")})
    assert bounds_attack(table, unknown)[("a", "x")] == (3, 3)
    assert determined(table, unknown) == set()


# Rows a and b hide a 2x2 block in columns w, x; rows c and d another in y, z; (b, y) joins
# them. Every line holds two or more suppressed cells, yet (b, y) is rows a + b less
# columns w + x.
BRIDGED = {
    "a": [1, 2, 40, 50],
    "b": [3, 1, 2, 60],
    "c": [30, 45, 1, 3],
    "d": [35, 55, 4, 2],
}


def _bridged() -> CountTable:
    counts = {(r, c): n for r, line in BRIDGED.items() for c, n in zip("wxyz", line, strict=True)}
    return CountTable.from_counts(counts)


def test_two_suppressions_in_every_line_is_not_enough() -> None:
    table = _bridged()
    small = {p for p in table.positions() if 0 < table.counts[p] < 5}
    assert determined(table, by_hand(table, small)) == {("b", "y")}


def test_protect_closes_a_cycle_through_a_bridging_cell() -> None:
    table = _bridged()
    published = protect(table)
    assert any(cell.reason is Reason.SECONDARY for cell in published.cells.values())
    assert determined(table, hidden(published)) == set()


def _table(draw: st.DrawFn) -> CountTable:
    rows = [f"r{i}" for i in range(draw(st.integers(1, 5)))]
    cols = [f"c{i}" for i in range(draw(st.sampled_from([0, 1, 2, 3, 4, 5])))]
    count = st.integers(0, 9) | st.integers(0, 60)
    if not cols:
        return CountTable.from_counts({r: draw(count) for r in rows}, rows=rows)
    counts = {(r, c): draw(count) for r in rows for c in cols}
    return CountTable.from_counts(counts, rows=rows, columns=cols)


@st.composite
def cases(draw: st.DrawFn) -> tuple[CountTable, int, int, int, bool]:
    return (
        _table(draw),
        draw(st.integers(1, 10)),
        draw(st.integers(1, 10)),
        draw(st.integers(0, 12)),
        draw(st.booleans()),
    )


@settings(max_examples=1000, deadline=None)
@given(cases())
def test_protection_holds(case: tuple[CountTable, int, int, int, bool]) -> None:
    table, minimum, base, redact, zeros = case
    published = protect(
        table,
        minimum_cell_size=minimum,
        rounding_base=base,
        redact_at_or_below=redact,
        publish_zeros=zeros,
    )
    values = {p: c.value for p, c in published.cells.items() if c.value is not None}
    # (a) nothing small is published, and 0 only for a true zero
    assert all(v == 0 or v > redact for v in values.values())
    assert all(table.counts[p] == 0 for p, v in values.items() if v == 0)
    # (b) everything published is a multiple of the base, and is the count rounded
    assert all(v % base == 0 and abs(v - table.counts[p]) * 2 <= base for p, v in values.items())
    # (d) every small cell is suppressed as primary, and nothing else is primary
    small = {p for p, n in table.counts.items() if 0 < n < minimum or (n == 0 and not zeros)}
    primary = {p for p, c in published.cells.items() if c.reason is Reason.PRIMARY}
    assert primary == small
    assert hidden(published) >= primary
    # (c) no suppressed cell is determined, nor pinned even with non-negativity
    unknown = hidden(published)
    assert determined(table, unknown) == set()
    ranges = bounds_attack(table, unknown)
    assert all(low < high for low, high in ranges.values())
