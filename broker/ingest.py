"""Validating a batch against its dataset: pure, all-or-nothing, every problem at once.

A record is a JSON object holding ``record_id``, the dataset's identifiers and
its fields. Values may come typed (JSON numbers, booleans) or as the strings a
CSV extract holds; both are accepted when they parse exactly. Problems name the
record position and the field, never the value.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agreements.models import Dataset, FieldSpec
from broker import normalise
from broker.errors import BatchRejected, IdentifierError, Location, Problem

MAX_PROBLEMS = 100
MAX_RECORD_REF = 128

_INTEGER = re.compile(r"^[+-]?\d{1,18}$")
_NUMBER = re.compile(r"^[+-]?(\d{1,18}(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?$")
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}


@dataclass(frozen=True)
class ValidRecord:
    """A record that passed validation: normalised identifiers and typed fields."""

    index: int
    source_ref: str
    identifiers: Mapping[str, str]
    fields: Mapping[str, Any]
    quality: tuple[Problem, ...] = ()


@dataclass
class _Collector:
    problems: list[Problem] = field(default_factory=list)

    def add(self, code: str, message: str, record: int, name: str | None = None) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(code, message, Location(record=record, field=name)))


def _identifier(name: str, raw: str, dataset: Dataset) -> str:
    if name in ("given_name", "family_name"):
        return normalise.normalise_name(raw)
    if name == "date_of_birth":
        return normalise.normalise_date(raw, dataset.date_format)
    if name == "postcode":
        return normalise.normalise_postcode(raw)
    if name == "nhs_number":
        return normalise.normalise_nhs_number(raw)
    if name == "upn":
        return normalise.normalise_upn(raw)
    return normalise.normalise_sex(raw)


# Identifiers whose failure only loses a match key; the record is still useful.
# Names and dates of birth are different: a wrong one is a data error to fix at source.
_SOFT_IDENTIFIERS = {"nhs_number", "upn", "postcode", "sex"}


def _coerce(spec: FieldSpec, value: Any, max_length: int) -> tuple[Any, str | None]:
    """Return (typed value, None) or (None, problem code)."""
    kind = spec.type
    if kind == "boolean":
        if isinstance(value, bool):
            return value, None
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE, None
        return None, "wrong_type"
    if kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**18:
            return value, None
        if isinstance(value, str) and _INTEGER.match(value.strip()):
            return int(value.strip()), None
        return None, "wrong_type"
    if kind == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and _NUMBER.match(value.strip()):
            number = float(value.strip())
        else:
            return None, "wrong_type"
        return (number, None) if math.isfinite(number) else (None, "wrong_type")
    if not isinstance(value, str):
        return None, "wrong_type"
    if len(value) > min(max_length, spec.max_length or max_length):
        return None, "value_too_long"
    if kind == "date":
        try:
            return normalise.normalise_date(value, "iso"), None
        except IdentifierError:
            return None, "wrong_type"
    if kind == "code":
        return (value, None) if spec.values and value in spec.values else (None, "code_unknown")
    return value, None


_MESSAGES = {
    "wrong_type": "value is not a valid {type}",
    "value_too_long": "value is longer than allowed",
    "code_unknown": "value is not one of the codes declared for this field",
}


def validate_batch(
    dataset: Dataset,
    records: Sequence[Any],
    *,
    max_field_length: int,
    known_ref: Callable[[str], bool] = lambda _ref: False,
) -> list[ValidRecord]:
    """Validate every record; return them all, or raise BatchRejected listing the problems.

    ``known_ref`` says whether a record id is already stored for this dataset;
    such a record is a conflict (corrections arrive with a later issue).
    """
    problems = _Collector()
    valid: list[ValidRecord] = []
    if not records:
        raise BatchRejected("the batch holds no records", code="batch_empty")
    declared = {spec.name: spec for spec in dataset.fields}
    allowed = {"record_id", *dataset.identifiers, *declared}
    seen_refs: set[str] = set()
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            problems.add("record_not_object", "record must be a JSON object", index)
            continue
        ref = record.get("record_id")
        if not isinstance(ref, str) or not ref.strip() or len(ref) > MAX_RECORD_REF:
            problems.add(
                "record_id_invalid",
                f"record_id must be a non-empty string of at most {MAX_RECORD_REF} characters",
                index,
                "record_id",
            )
            ref = None
        elif ref in seen_refs:
            problems.add(
                "record_duplicate", "record_id appears twice in this batch", index, "record_id"
            )
        elif known_ref(ref):
            problems.add(
                "record_exists",
                "a record with this record_id is already stored for this dataset",
                index,
                "record_id",
            )
        if isinstance(ref, str):
            seen_refs.add(ref)
        for name in record:
            if name not in allowed:
                close = difflib.get_close_matches(str(name), sorted(allowed), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                problems.add(
                    "field_not_declared",
                    f"field '{str(name)[:64]}' is not declared in dataset '{dataset.id}'{hint}",
                    index,
                    str(name)[:64],
                )
        identifiers: dict[str, str] = {}
        quality: list[Problem] = []
        for name in dataset.identifiers:
            raw = record.get(name)
            if raw is None or raw == "":
                continue
            if not isinstance(raw, str):
                problems.add("wrong_type", "identifier must be a string", index, name)
                continue
            try:
                identifiers[name] = _identifier(name, raw, dataset)
            except IdentifierError as exc:
                if name in _SOFT_IDENTIFIERS:
                    quality.append(
                        Problem("identifier_unusable", exc.message, Location(index, name))
                    )
                else:
                    problems.add("identifier_invalid", exc.message, index, name)
        fields: dict[str, Any] = {}
        for name, spec in declared.items():
            value = record.get(name)
            if value is None or value == "":
                if spec.required:
                    problems.add("field_required", f"field '{name}' is required", index, name)
                continue
            typed, error = _coerce(spec, value, max_field_length)
            if error is not None:
                problems.add(error, _MESSAGES[error].format(type=spec.type), index, name)
            else:
                fields[name] = typed
        if isinstance(ref, str):
            valid.append(ValidRecord(index, ref, identifiers, fields, tuple(quality)))
    if problems.problems:
        count = len(problems.problems)
        raise BatchRejected(
            f"batch rejected: {count}{'+' if count >= MAX_PROBLEMS else ''} problem(s) in "
            f"its records; nothing was stored. Fix them and send the whole batch again",
            location=problems.problems[0].location,
            problems=tuple(problems.problems),
        )
    return valid
