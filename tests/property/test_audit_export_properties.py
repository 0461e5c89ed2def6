"""Whatever strings an entry holds, no cell of the CSV export is one a spreadsheet executes."""

from __future__ import annotations

import csv
import io
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from audit.events import AuditEvent, LoggedEntry
from audit.export import CSV_COLUMNS, safe_cell, to_csv

# OWASP's CSV injection triggers, the line breaks, and their full-width forms; stated
# here, not imported, so the test does not share a mistake with the code.
TRIGGERS = "=+-@\t\r\n\uff1d\uff0b\uff0d\uff20"
DANGEROUS = st.sampled_from([*TRIGGERS, " =", "  +", " \t@", "\u3000="])
TEXT = st.text(max_size=40) | st.builds(lambda a, b: a + b, DANGEROUS, st.text(max_size=20))
OPTIONAL = st.none() | TEXT


def _executable(cell: str) -> bool:
    """Whether a spreadsheet would read the cell as a formula (it starts with a trigger)."""
    stripped = cell.lstrip()
    return bool(cell) and (cell[0] in TRIGGERS or (stripped != "" and stripped[0] in TRIGGERS))


@st.composite
def entries(draw: Any) -> LoggedEntry:
    detail = {
        "subject": draw(OPTIONAL),
        "rule": draw(OPTIONAL),
        "matched": draw(st.booleans()),
        "released": [
            {"field": draw(TEXT), "form": draw(TEXT)} for _ in range(draw(st.integers(0, 3)))
        ],
        "providers": draw(st.lists(TEXT, max_size=3)),
        "warnings": draw(st.lists(TEXT, max_size=3)),
    }
    event = AuditEvent(
        actor=draw(TEXT),
        action="lookup",
        outcome=draw(st.sampled_from(["permitted", "refused"])),
        reason_code=draw(OPTIONAL),
        agreement_id=draw(OPTIONAL),
        agreement_version=draw(st.none() | st.integers(-5, 5)),
        purpose=draw(OPTIONAL),
        dataset_id=draw(OPTIONAL),
        request_id=draw(OPTIONAL),
        detail=detail,
    )
    return LoggedEntry(
        seq=draw(st.integers(1, 10**6)), at=draw(TEXT), event=event, leaf_hash=draw(TEXT)
    )


@settings(max_examples=300)
@given(st.lists(entries(), min_size=1, max_size=5))
def test_no_csv_cell_is_executable(logged: list[LoggedEntry]) -> None:
    rows = list(csv.reader(io.StringIO(to_csv(logged), newline="")))
    assert rows[0] == list(CSV_COLUMNS)
    assert len(rows) == len(logged) + 1
    for row in rows:
        assert len(row) == len(CSV_COLUMNS)
        for cell in row:
            assert not _executable(cell), repr(cell)


@given(TEXT)
def test_a_safe_cell_only_ever_gains_a_leading_quote(text: str) -> None:
    cell = safe_cell(text)
    assert not _executable(cell)
    assert cell in (text, "'" + text)
