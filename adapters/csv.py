"""Reading an agency extract: a UTF-8 CSV file with the canonical column names.

Values stay strings; an empty cell becomes an absent key, so that "not held"
differs from "held and empty". Problems name the file, line and column, never
a cell's value, because cells hold personal data.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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
OPTIONAL_COLUMNS: tuple[str, ...] = ("locality",)
MAX_PROBLEMS = 50

T = TypeVar("T")
_Reader = Any  # csv's reader type is private; it yields list[str] and has line_num


@dataclass(frozen=True)
class Extract:
    """One agency extract: its name (the file stem), its columns and its rows."""

    dataset_name: str
    columns: tuple[str, ...]
    rows: list[dict[str, str]]


def _problem(
    message: str, path: Path, line: int | None = None, column: str | None = None
) -> Problem:
    return Problem("extract_invalid", message, Location(file=str(path), line=line, field=column))


def _reject(problems: list[Problem]) -> ValidationError:
    first = problems[0]
    return ValidationError(
        f"extract has {len(problems)} problem(s); first: {first.message}",
        code="extract_invalid",
        location=first.location,
        problems=tuple(problems[:MAX_PROBLEMS]),
    )


def read_extract(path: Path, *, max_rows: int | None = None) -> Extract:
    """Read and check an extract; raises ValidationError listing up to 50 problems."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _reject([_problem("file is not UTF-8 text; save it as UTF-8", path)]) from None
    except OSError:
        raise _reject([_problem("file could not be read", path)]) from None
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = next(reader)
    except StopIteration:
        raise _reject([_problem("file is empty; it needs a header row", path)]) from None
    except csv.Error:
        raise _reject([_problem("header row is not valid CSV", path, 1)]) from None
    columns = tuple(name.strip() for name in header)
    problems: list[Problem] = []
    if "record_id" not in columns:
        problems.append(_problem("there is no record_id column", path, 1, "record_id"))
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            problems.append(_problem(f"column '{name[:64]}' appears twice", path, 1, name[:64]))
        seen.add(name)
    if problems:
        raise _reject(problems)
    rows, problems = _read_rows(reader, columns, path, max_rows)
    if problems:
        raise _reject(problems)
    return Extract(dataset_name=path.stem, columns=columns, rows=rows)


def _read_rows(
    reader: _Reader, columns: tuple[str, ...], path: Path, max_rows: int | None
) -> tuple[list[dict[str, str]], list[Problem]]:
    rows: list[dict[str, str]] = []
    problems: list[Problem] = []
    refs: set[str] = set()
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                message = f"row has {len(row)} cells but the header has {len(columns)}"
                problems.append(_problem(message, path, line))
                continue
            record = {name: cell for name, cell in zip(columns, row, strict=True) if cell != ""}
            ref = record.get("record_id", "").strip()
            if not ref:
                problems.append(_problem("record_id is empty", path, line, "record_id"))
            elif ref in refs:
                message = "record_id appears twice in the file"
                problems.append(_problem(message, path, line, "record_id"))
            refs.add(ref)
            rows.append(record)
            if max_rows is not None and len(rows) > max_rows:
                problems.append(_problem(f"file has more than {max_rows} rows", path, line))
                break
    except csv.Error:
        problems.append(_problem("file is not valid CSV (check quoting)", path, reader.line_num))
    return rows, problems


def iter_batches(rows: Sequence[T], size: int) -> Iterator[list[T]]:
    """Split rows into batches of at most ``size``."""
    if size < 1:
        raise ValidationError("batch size must be at least 1", code="batch_size_invalid")
    for start in range(0, len(rows), size):
        yield list(rows[start : start + size])
