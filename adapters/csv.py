"""Reading an agency extract: a UTF-8 CSV file with the canonical column names.

Values stay strings; an empty (or all-space) cell becomes an absent key, so
that "not held" differs from "held". Problems name the file, line and column,
never a cell's value, because cells hold personal data. A column is named in a
message only when it looks like a column name (lower-case snake case), since a
file without a header row would otherwise echo its first record.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from broker.errors import Location, Problem, ValidationError

CANONICAL_COLUMNS: tuple[str, ...] = (
    "record_id",
    "given_name",
    "family_name",
    "date_of_birth",
    "sex",
    "postcode",
    "address_line",
    "nhs_number",
    "upn",
)
# Identity columns an extract may carry beyond the canonical nine.
OPTIONAL_COLUMNS: tuple[str, ...] = ("locality",)
MAX_PROBLEMS = 50

T = TypeVar("T")
_COLUMN_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class _Reader(Protocol):
    """What read_extract uses of a csv reader (its class is private to the csv module)."""

    @property
    def line_num(self) -> int: ...

    def __next__(self) -> list[str]: ...


@dataclass(frozen=True)
class Extract:
    """One agency extract: its name (the file stem), its columns and its rows."""

    dataset_name: str
    columns: tuple[str, ...]
    rows: list[dict[str, str]]

    @property
    def agency_columns(self) -> tuple[str, ...]:
        """The agency's own columns: those that are neither canonical nor optional identity."""
        identity = {*CANONICAL_COLUMNS, *OPTIONAL_COLUMNS}
        return tuple(name for name in self.columns if name not in identity)


class _Problems:
    """Collects up to MAX_PROBLEMS problems for one file and counts the rest."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.found: list[Problem] = []
        self.total = 0

    def add(self, message: str, line: int | None = None, column: str | None = None) -> None:
        self.total += 1
        if len(self.found) < MAX_PROBLEMS:
            where = Location(file=str(self.path), line=line, field=column)
            self.found.append(Problem("extract_invalid", message, where))

    def error(self) -> ValidationError:
        first = self.found[0]
        listed = "" if self.total <= MAX_PROBLEMS else f" (the first {MAX_PROBLEMS} are listed)"
        return ValidationError(
            f"extract has {self.total} problem(s){listed}; first: {first.message}",
            code="extract_invalid",
            location=first.location,
            problems=tuple(self.found),
        )


def _safe_column(name: str) -> str | None:
    return name if _COLUMN_NAME.match(name) else None


def read_extract(path: Path, *, max_rows: int | None = None) -> Extract:
    """Read and check one extract; the dataset name is the file stem.

    Raises ValidationError, listing up to 50 located problems, when the file is
    not UTF-8 (a UTF-8 byte order mark is accepted), lacks a ``record_id``
    column, repeats or leaves out a column name, has a row with the wrong
    number of cells, or has an empty or repeated record id. A file with more
    than ``max_rows`` records is refused rather than cut short, so no record is
    silently dropped. Blank lines are skipped.
    """
    if max_rows is not None and max_rows < 0:
        raise ValidationError("max_rows must be zero or more", code="max_rows_invalid")
    problems = _Problems(path)
    try:
        data = path.read_bytes()
    except OSError:
        problems.add("file could not be read")
        raise problems.error() from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.add(
            "file is not UTF-8 text; save it as UTF-8", data.count(b"\n", 0, exc.start) + 1
        )
        raise problems.error() from None
    # newline="" lets the csv module see the file's own line endings, so a quoted
    # cell may span lines and no other character is taken as a line break.
    reader: _Reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error:
        problems.add("header row is not valid CSV (check quoting)", 1)
        raise problems.error() from None
    if header is None:
        problems.add("file is empty; it needs a header row", 1)
        raise problems.error()
    columns = tuple(name.strip() for name in header)
    _check_header(columns, problems)
    if problems.total:
        raise problems.error()
    rows = _read_rows(reader, columns, problems, max_rows)
    if problems.total:
        raise problems.error()
    return Extract(dataset_name=path.stem, columns=columns, rows=rows)


def _check_header(columns: tuple[str, ...], problems: _Problems) -> None:
    if "record_id" not in columns:
        problems.add("there is no record_id column (is the header row missing?)", 1, "record_id")
    seen: set[str] = set()
    for position, name in enumerate(columns, start=1):
        if not name:
            problems.add(f"column {position} has no name in the header row", 1)
        elif name in seen:
            problems.add(
                f"column {position} repeats an earlier column's name", 1, _safe_column(name)
            )
        seen.add(name)


def _read_rows(
    reader: _Reader, columns: tuple[str, ...], problems: _Problems, max_rows: int | None
) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    first_line: dict[str, int] = {}
    line_num = 1  # the csv reader's count of physical lines read so far
    while True:
        start = line_num + 1  # a quoted cell may span lines: report where the record starts
        try:
            row = next(reader, None)
        except csv.Error:
            problems.add("row is not valid CSV (check quoting and cell length)", start)
            break
        line_num = reader.line_num
        if row is None:
            break
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(columns):
            problems.add(f"row has {len(row)} cells but the header has {len(columns)}", start)
            continue
        record = {name: cell for name, cell in zip(columns, row, strict=True) if cell.strip()}
        ref = record.get("record_id", "").strip()
        if not ref:
            problems.add("record_id is empty", start, "record_id")
        elif ref in first_line:
            message = f"record_id repeats the one on line {first_line[ref]}"
            problems.add(message, start, "record_id")
        else:
            first_line[ref] = start
        rows.append(record)
        if max_rows is not None and len(rows) > max_rows:
            problems.add(f"file has more than {max_rows} rows; split it into smaller files", start)
            break
    return rows


def iter_batches(rows: Iterable[T], size: int) -> Iterator[list[T]]:
    """Split rows into consecutive batches of ``size`` (the last may be shorter).

    Raises ValidationError at once, not on first use, when ``size`` is below 1.
    """
    if size < 1:
        raise ValidationError("batch size must be at least 1", code="batch_size_invalid")
    return _batches(iter(rows), size)


def _batches(rows: Iterator[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
