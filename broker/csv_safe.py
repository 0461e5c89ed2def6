"""The one CSV writer for everything the broker exports: no cell a spreadsheet executes.

A cell whose text starts with ``=``, ``+``, ``-``, ``@``, a tab, a carriage
return or a line feed (or their full-width forms, which some spreadsheets also
accept), possibly after spaces, is read by Excel, LibreOffice or Sheets as a
formula (OWASP "CSV injection"). Such a cell is written with a single quote in
front, which spreadsheets show as text and never evaluate.

Genuine numbers stay readable: a value that *is* an ``int`` or ``float`` in the
code (a count, a version) is written as the number, negative or not, because
its text cannot be anything but digits, a sign and a point. Text that merely
looks like a negative number (``"-5"`` from a record) is quoted like any other
text: it came from outside, and telling ``-5`` from ``-5+cmd|...`` by pattern
is exactly the kind of cleverness attackers beat.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from typing import TextIO

# OWASP's triggers, the line breaks, and the full-width forms of the four symbols.
FORMULA_TRIGGERS = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")
QUOTE = "'"
LINE_END = "\r\n"  # RFC 4180


def safe_cell(value: object) -> str:
    """The text of one cell: numbers as they are, text quoted with ``'`` if it could execute.

    None is an empty cell; booleans are text ("True"/"False"), never numbers.
    """
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)  # "nan", "inf", "-inf": text a spreadsheet does not execute
        return str(value)
    text = str(value)
    if text and (text[0] in FORMULA_TRIGGERS or text.lstrip()[:1] in FORMULA_TRIGGERS):
        return QUOTE + text
    return text


class SafeWriter:
    """A ``csv.writer`` (minimal quoting, CRLF ends) passing every cell through safe_cell."""

    def __init__(self, handle: TextIO) -> None:
        self._writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL, lineterminator=LINE_END)

    def writerow(self, row: Sequence[object]) -> None:
        """Write one row, each cell made safe."""
        self._writer.writerow([safe_cell(cell) for cell in row])

    def writerows(self, rows: Iterable[Sequence[object]]) -> None:
        """Write rows, each cell made safe."""
        for row in rows:
            self.writerow(row)


def to_csv_text(rows: Iterable[Sequence[object]]) -> str:
    """Rows (header first, if any) as CSV text, every cell made safe."""
    buffer = io.StringIO()
    SafeWriter(buffer).writerows(rows)
    return buffer.getvalue()
