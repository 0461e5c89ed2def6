"""Whatever the broker writes to CSV, no cell read back is one a spreadsheet executes."""

from __future__ import annotations

import csv
import io
import re

from hypothesis import given
from hypothesis import strategies as st

from broker.csv_safe import safe_cell, to_csv_text

# OWASP's triggers, the line breaks and their full-width forms, stated here rather than
# imported so that the test does not share a mistake with the code.
TRIGGERS = "=+-@\t\r\n\uff1d\uff0b\uff0d\uff20"
# What a spreadsheet can only read as a number: digits, an optional sign, point and exponent.
PLAIN_NUMBER = re.compile(r"^-?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?$|^-?inf$|^nan$")
DANGEROUS = st.sampled_from(
    [*TRIGGERS, " =", "  +", " \t@", "\u3000=", "-2+3", "=cmd|' /C calc'!A0"]
)
TEXT = st.text(max_size=30) | st.builds(lambda a, b: a + b, DANGEROUS, st.text(max_size=20))
NUMBER = st.integers(-(10**12), 10**12) | st.floats(allow_nan=True, allow_infinity=True)
CELL = st.none() | st.booleans() | NUMBER | TEXT


def _executable(cell: str) -> bool:
    """Whether a spreadsheet would read the cell as a formula: a trigger first, spaces aside."""
    stripped = cell.lstrip()
    return bool(cell) and (cell[0] in TRIGGERS or (stripped != "" and stripped[0] in TRIGGERS))


@given(st.lists(st.lists(CELL, min_size=1, max_size=6), min_size=1, max_size=8))
def test_no_cell_read_back_is_executable_unless_a_plain_number(
    rows: list[list[object]],
) -> None:
    text = to_csv_text(rows)
    back = list(csv.reader(io.StringIO(text, newline="")))
    assert len(back) == len(rows)
    for written, read in zip(rows, back, strict=True):
        assert len(read) == len(written)
        for original, cell in zip(written, read, strict=True):
            if _executable(cell):
                assert PLAIN_NUMBER.match(cell), repr(cell)
                assert isinstance(original, int | float)
                assert not isinstance(original, bool)


@given(TEXT)
def test_text_only_ever_gains_a_leading_quote(text: str) -> None:
    cell = safe_cell(text)
    assert not _executable(cell)
    assert cell in (text, "'" + text)
    assert (cell == text) == (not _executable(text))


@given(NUMBER)
def test_numbers_are_written_as_themselves(number: float) -> None:
    assert safe_cell(number) == str(number)
    assert PLAIN_NUMBER.match(safe_cell(number))


@given(st.lists(TEXT | st.none(), max_size=6))
def test_making_text_safe_twice_changes_nothing(cells: list[str | None]) -> None:
    once = [safe_cell(c) for c in cells]
    assert [safe_cell(c) for c in once] == once
