"""CSV files in and out of ``broker link``: canonical columns read and checked, outputs written.

An input file has a header row naming its columns; the canonical ones
(``CANONICAL_COLUMNS``, any subset, ``record_id`` required) are used and any
other column is ignored. Files must be UTF-8 (a byte-order mark is allowed,
as spreadsheets write one). Every problem is a ``ValidationError`` naming the
file and, where there is one, the line; never a value from the file, since a
cell may hold a name or a date of birth.

Outputs go through ``broker.csv_safe`` (no cell a spreadsheet executes) and
are written to a temporary file beside the target, then renamed, so a failed
run never leaves half a file where a previous good one stood.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from broker.csv_safe import SafeWriter
from broker.errors import AccordError, Location, ValidationError
from broker.link.types import ScoredPair

#: The columns ``broker link`` reads; all others are ignored.
CANONICAL_COLUMNS: tuple[str, ...] = (
    "record_id",
    "given_name",
    "family_name",
    "date_of_birth",
    "sex",
    "postcode",
    "address_line",
    "locality",
    "nhs_number",
    "upn",
)
IDENTIFIER_COLUMNS = CANONICAL_COLUMNS[1:]
CLUSTER_HEADER = ("record_id", "cluster_id")
BOM = "\ufeff"
PAIRS_HEADER = ("left_record_id", "right_record_id", "score", "band", "rule")


class OutputError(AccordError):
    """An output file could not be written; the message says which and what to check."""

    code = "link_output_unwritable"


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One row of an input file: its prefixed ref (``police:123``), file line and identifiers."""

    ref: str
    source: str
    line: int
    identifiers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class InputFile:
    """The records of one input file, in file order; ``source`` is the file's stem."""

    path: Path
    source: str
    records: Sequence[InputRecord]


def _invalid(message: str, code: str, path: Path, line: int | None = None) -> ValidationError:
    return ValidationError(message, code=code, location=Location(file=str(path), line=line))


def _lines(handle: BinaryIO, path: Path) -> Iterator[str]:
    """Decode line by line, so a byte that is not UTF-8 is reported at its own line."""
    for number, raw in enumerate(handle, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid(
                "the file is not UTF-8; save it as CSV UTF-8 and try again",
                "link_file_not_utf8",
                path,
                number,
            ) from None
        yield text.removeprefix(BOM) if number == 1 else text


def _rows(handle: BinaryIO, path: Path) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(_lines(handle, path), strict=True)
    try:
        for row in reader:
            # line_num counts physical lines, so a quoted cell with a line break stays right.
            yield reader.line_num, row
    except csv.Error:
        raise _invalid(
            "the file is not well-formed CSV (a stray quote?); fix the line given",
            "link_file_not_csv",
            path,
            reader.line_num,
        ) from None


def _header(first: list[str], path: Path) -> dict[str, int]:
    names = [name.strip() for name in first]
    seen: set[str] = set()
    for name in names:
        if name in CANONICAL_COLUMNS and name in seen:
            raise _invalid(
                f"column '{name}' appears twice in the header; keep one",
                "link_file_duplicate_column",
                path,
                1,
            )
        seen.add(name)
    if "record_id" not in seen:
        raise _invalid(
            "the header has no record_id column; add one with a unique id per row",
            "link_file_no_record_id",
            path,
            1,
        )
    return {name: i for i, name in enumerate(names) if name in CANONICAL_COLUMNS}


def read_input(path: Path, source: str | None = None) -> InputFile:
    """Read one input CSV whole; ValidationError naming the file (and line) for anything wrong.

    See ``iter_input``, which this collects.
    """
    stem = source if source is not None else path.stem
    return InputFile(path, stem, list(iter_input(path, stem)))


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise _invalid(
            "the file does not exist; check the path", "link_file_missing", path
        ) from None
    except IsADirectoryError:
        raise _invalid("this is a folder, not a CSV file", "link_file_unreadable", path) from None
    except OSError as exc:
        raise _invalid(
            f"the file cannot be read ({exc.strerror}); check its permissions",
            "link_file_unreadable",
            path,
        ) from None


def check_readable(paths: Sequence[Path]) -> None:
    """Fail now (ValidationError) if any input cannot be opened, before any row is used."""
    for path in paths:
        with _open(path):
            pass


def iter_input(path: Path, source: str | None = None) -> Iterator[InputRecord]:
    """The records of one input CSV as they are read; ValidationError for anything wrong.

    The file is opened when the first record is asked for and closed when the
    last is read (or the iterator is closed); rows are checked as they come,
    so an error can surface after earlier records were yielded (use
    ``check_readable`` first to fail on a missing file before any work). Refs
    are ``source:record_id`` with ``source`` the file's stem unless given.
    Blank lines are skipped. Rows are checked for width (ragged rows), empty
    and repeated record ids; the identifiers themselves are checked later, by
    the encoder, which only reports them.
    """
    stem = source if source is not None else path.stem
    with _open(path) as handle:
        yield from _records(handle, path, stem)


def _records(handle: BinaryIO, path: Path, stem: str) -> Iterator[InputRecord]:
    columns: dict[str, int] | None = None
    width = 0
    seen: dict[str, int] = {}
    for line, row in _rows(handle, path):
        if not row or (len(row) == 1 and not row[0].strip() and columns is not None):
            continue
        if columns is None:
            columns = _header(row, path)
            width = len(row)
            continue
        if len(row) != width:
            raise _invalid(
                f"this row has {len(row)} cells but the header has {width}; "
                "fix the row (a missing or extra comma?)",
                "link_file_ragged_row",
                path,
                line,
            )
        record_id = row[columns["record_id"]].strip()
        if not record_id:
            raise _invalid(
                "this row has no record_id; give every row a unique id",
                "link_file_empty_record_id",
                path,
                line,
            )
        if record_id in seen:
            raise _invalid(
                f"this row repeats the record_id of line {seen[record_id]}; "
                "record ids must be unique in a file",
                "link_file_duplicate_record_id",
                path,
                line,
            )
        seen[record_id] = line
        identifiers = {name: row[index] for name, index in columns.items() if name != "record_id"}
        yield InputRecord(f"{stem}:{record_id}", stem, line, identifiers)
    if columns is None:
        raise _invalid(
            "the file is empty; it needs a header row with a record_id column",
            "link_file_no_record_id",
            path,
            1,
        )


def check_sources(paths: Sequence[Path]) -> None:
    """Refuse two input files with one stem: their refs (``stem:id``) would collide."""
    seen: set[str] = set()
    for path in paths:
        if path.stem in seen:
            raise _invalid(
                "two input files share this name; record ids are prefixed by the file name, "
                "so rename one",
                "link_file_duplicate_name",
                path,
            )
        seen.add(path.stem)


def check_writable(path: Path) -> None:
    """Fail now, before hours of linking, if ``path`` cannot be written (OutputError)."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(
            "this output is a folder; give a file name", location=Location(file=str(path))
        )
    if not folder.is_dir():
        raise OutputError(
            "the folder of this output does not exist; create it first",
            location=Location(file=str(path)),
        )
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputError(
            "this output cannot be written; check the folder's permissions",
            location=Location(file=str(path)),
        )


@contextmanager
def _replacing(path: Path) -> Iterator[TextIO]:
    """A text handle whose content replaces ``path`` only once it is complete."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise OutputError(
            f"this output cannot be written ({exc.strerror})", location=Location(file=str(path))
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise OutputError(
            f"this output cannot be written ({exc.strerror})", location=Location(file=str(path))
        ) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_clusters(path: Path, rows: Iterable[tuple[str, str]]) -> int:
    """Write ``record_id,cluster_id`` rows (formula-safe); returns the rows written."""
    count = 0
    with _replacing(path) as handle:
        writer = SafeWriter(handle)
        writer.writerow(CLUSTER_HEADER)
        for ref, cluster in rows:
            writer.writerow((ref, cluster))
            count += 1
    return count


def write_pairs(path: Path, pairs: Iterable[ScoredPair]) -> int:
    """Write ``left_record_id,right_record_id,score,band,rule``; score is the match weight.

    The weight (log2 odds that the two are one person) is rounded to 4 places;
    ``rule`` is the strongest deterministic key the pair shares, or blank.
    """
    count = 0
    with _replacing(path) as handle:
        writer = SafeWriter(handle)
        writer.writerow(PAIRS_HEADER)
        for pair in pairs:
            weight = round(pair.weight, 4)
            writer.writerow(
                (pair.left_ref, pair.right_ref, weight, pair.band.value, pair.rule or "")
            )
            count += 1
    return count


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (OutputError)."""
    with _replacing(path) as handle:
        handle.write(text)
