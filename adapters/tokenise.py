"""Tokenising an extract at source, for an agency whose identifiers may not leave its building.

The agency holds the signed agreement and the agreement's linkage key file
(exported by the broker operator). Each record's identifiers are normalised
exactly as the broker normalises them (the same code, with the dataset's
``date_format``) and turned into the same match-key tokens the broker would
compute, so its records link with every partner's. The output CSV holds
``record_id``, one ``token_<match key>`` column per match key the agreement
links on (empty when the record lacks that key's identifiers) and the
dataset's declared fields: never an identifier.

A record whose name or date of birth is invalid is reported by row and field
(never by value) and left out, as the broker would refuse it. An NHS number,
UPN or postcode that fails its check only costs the record that match key, as
at the broker; it is reported as a warning and the record is written.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.csv import read_extract
from agreements.models import Agreement, Dataset
from broker.errors import KeyFileError, NotFound, Problem, ValidationError
from broker.ingest import IDENTIFIER_NAMES, TOKENS_KEY, normalise_identifiers
from broker.keys import LinkageKey
from broker.linkage import MATCH_KEYS, record_tokens
from broker.pseudonymise import Tokeniser

TOKEN_PREFIX = "token_"  # noqa: S105 - a column prefix, not a secret
PROGRESS_EVERY = 500

Progress = Callable[[int], None]


@dataclass(frozen=True)
class RowProblem:
    """Something wrong with one identifier of one row; never holds the value."""

    row: int  # the record's position in the extract, 1 for the first row after the header
    field: str
    code: str
    message: str

    def describe(self) -> str:
        """One line for a person: row, field and what is wrong."""
        return f"row {self.row}, field '{self.field}': {self.message}"


@dataclass(frozen=True)
class Tokenised:
    """An extract tokenised at source: the rows to send and what was wrong with the others."""

    columns: tuple[str, ...]
    rows: list[dict[str, str]]
    rejected: tuple[RowProblem, ...]  # their rows were not written
    unusable: tuple[RowProblem, ...]  # their rows were written without that match key
    rows_read: int

    @property
    def rows_rejected(self) -> int:
        """How many rows were left out."""
        return len({p.row for p in self.rejected})


def token_columns(match_keys: Iterable[str]) -> tuple[str, ...]:
    """One output column per match key the agreement links on, strongest first."""
    allowed = set(match_keys)
    return tuple(TOKEN_PREFIX + key.name for key in MATCH_KEYS if key.name in allowed)


def field_columns(dataset: Dataset) -> tuple[str, ...]:
    """The dataset's declared fields, in declaration order; an identifier name never appears."""
    return tuple(spec.name for spec in dataset.fields if spec.name not in IDENTIFIER_NAMES)


def tokenise_rows(
    rows: Sequence[Mapping[str, str]],
    dataset: Dataset,
    linkage: LinkageKey,
    match_keys: Sequence[str],
    progress: Progress | None = None,
) -> Tokenised:
    """Normalise and tokenise every row; ``progress`` is told how many rows were done."""
    tokens_out = token_columns(match_keys)
    fields_out = field_columns(dataset)
    tokeniser = Tokeniser(linkage.key)  # the key's HMAC state, prepared once per extract
    written: list[dict[str, str]] = []
    rejected: list[RowProblem] = []
    unusable: list[RowProblem] = []
    done = 0
    for number, row in enumerate(rows, start=1):
        found = normalise_identifiers(row, dataset, number)
        rejected.extend(_row_problems(number, found.invalid))
        unusable.extend(_row_problems(number, found.unusable))
        if not found.invalid:
            tokens = record_tokens(tokeniser, found.values, match_keys)
            out = {"record_id": row.get("record_id", "")}
            out.update(
                {column: tokens.get(column.removeprefix(TOKEN_PREFIX), "") for column in tokens_out}
            )
            out.update({name: row.get(name, "") for name in fields_out})
            written.append(out)
        done += 1
        if progress is not None and done == PROGRESS_EVERY:
            progress(done)
            done = 0
    if progress is not None and done:
        progress(done)
    return Tokenised(
        columns=("record_id", *tokens_out, *fields_out),
        rows=written,
        rejected=tuple(rejected),
        unusable=tuple(unusable),
        rows_read=len(rows),
    )


def _row_problems(row: int, problems: Iterable[Problem]) -> list[RowProblem]:
    return [RowProblem(row, p.location.field or "", p.code, p.message) for p in problems]


def dataset_of(agreement: Agreement, dataset_id: str) -> Dataset:
    """The agreement's dataset called ``dataset_id``; NotFound lists the ones it has."""
    dataset = agreement.dataset(dataset_id)
    if dataset is None:
        known = ", ".join(d.id for d in agreement.datasets)
        raise NotFound(
            f"dataset '{dataset_id}' is not in agreement '{agreement.id}' (it has: {known})"
        )
    return dataset


def tokenise_extract(
    agreement: Agreement,
    dataset_id: str,
    linkage: LinkageKey,
    source: Path,
    target: Path,
    *,
    progress_total: Callable[[int], Progress | None] | None = None,
) -> Tokenised:
    """Read ``source``, tokenise it for ``dataset_id`` and write ``target`` (mode 0600).

    ``progress_total`` is given the row count once the extract is read and may
    return a progress callback. Raises KeyFileError for a key of another
    agreement, NotFound for an unknown dataset and ValidationError for an
    unreadable extract; nothing is written then.
    """
    if linkage.agreement_id != agreement.id:
        raise KeyFileError(
            f"the linkage key file is for another agreement, not '{agreement.id}'; "
            "ask the broker operator for this agreement's key"
        )
    dataset = dataset_of(agreement, dataset_id)
    rows = read_extract(source).rows
    progress = progress_total(len(rows)) if progress_total is not None else None
    result = tokenise_rows(rows, dataset, linkage, agreement.linkage.match_keys, progress)
    write_tokenised(target, result)
    return result


def write_tokenised(path: Path, tokenised: Tokenised) -> None:
    """Write the output CSV atomically, readable by its owner only (tokens are personal data)."""
    folder = path.resolve().parent
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    except OSError as exc:
        raise ValidationError(
            f"output file could not be created in {folder}: {exc.strerror}", code="output_invalid"
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=tokenised.columns)
            writer.writeheader()
            writer.writerows(tokenised.rows)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_tokenised(path: Path) -> list[dict[str, Any]]:
    """The records of a tokenised CSV, shaped for a tokenised batch body.

    Each row becomes ``{"record_id": ..., "tokens": {match key: token}, <fields>}``;
    an empty cell is left out, as in any extract.
    """
    extract = read_extract(path)
    if not any(name.startswith(TOKEN_PREFIX) for name in extract.columns):
        raise ValidationError(
            f"{path} has no {TOKEN_PREFIX}* column; is it the output of 'broker adapter tokenise'?",
            code="extract_invalid",
        )
    records: list[dict[str, Any]] = []
    for row in extract.rows:
        tokens = {
            name.removeprefix(TOKEN_PREFIX): value
            for name, value in row.items()
            if name.startswith(TOKEN_PREFIX)
        }
        rest = {name: value for name, value in row.items() if not name.startswith(TOKEN_PREFIX)}
        records.append({**rest, TOKENS_KEY: tokens})
    return records


def batch_body(records: Sequence[Mapping[str, Any]], linkage: LinkageKey) -> dict[str, Any]:
    """The JSON body that posts tokenised ``records``, naming the key they were made with."""
    return {
        "tokenised": {"key_check": linkage.check_value, "key_version": linkage.version},
        "records": [dict(r) for r in records],
    }
