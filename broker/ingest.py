"""Validating a batch against its dataset: pure, all-or-nothing, every problem at once.

A record is a JSON object holding ``record_id``, the dataset's identifiers and
its fields. Values may come typed (JSON numbers, booleans) or as the strings a
CSV extract holds; both are accepted when they parse exactly. Problems name the
record position and the field, never the value.

A batch tokenised at source holds, instead of identifiers, each record's
``tokens``: one 64-hex token per match key, computed by the agency with the
agreement's linkage key. Such a batch may hold no identifier at all, and a
batch is either wholly tokenised or wholly clear.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

from agreements.models import Dataset, FieldSpec, IdentifierName
from broker import normalise
from broker.errors import BatchRejected, IdentifierError, Location, Problem

MAX_PROBLEMS = 100
MAX_RECORD_REF = 128

_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$", re.ASCII)
_INTEGER = re.compile(r"^[+-]?\d{1,18}$", re.ASCII)
_NUMBER = re.compile(r"^[+-]?(\d{1,18}(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?$", re.ASCII)
_TOKEN = re.compile(r"^[0-9a-f]{64}$", re.ASCII)
TOKENS_KEY = "tokens"
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
    # Set only for a record tokenised at source: its tokens, checked for shape, by match key.
    tokens: Mapping[str, str] | None = None


@dataclass(frozen=True)
class AtSource:
    """What a tokenised batch declares about the key its tokens were made with."""

    key_check: str
    key_version: int


@dataclass(frozen=True)
class Identifiers:
    """One record's identifiers, normalised, and what was wrong with the others.

    ``invalid`` problems reject the record; ``unusable`` ones only cost it a match key.
    Both name the field and never the value.
    """

    values: dict[str, str]
    invalid: tuple[Problem, ...]
    unusable: tuple[Problem, ...]


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


_WRONG = (None, "wrong_type")
IDENTIFIER_NAMES: frozenset[str] = frozenset(get_args(IdentifierName))


def _as_boolean(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, bool):
        return value, None
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE, None
    return _WRONG


def _as_integer(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**18:
        return value, None
    if isinstance(value, str) and _INTEGER.match(value.strip()):
        return int(value.strip()), None
    return _WRONG


def _as_number(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and _NUMBER.match(value.strip()):
        number = float(value.strip())
    else:
        return _WRONG
    # NaN and infinity are not measurements; JSON from some clients can carry them.
    return (number, None) if math.isfinite(number) else _WRONG


def _as_text(spec: FieldSpec, value: Any, max_length: int) -> tuple[Any, str | None]:
    if not isinstance(value, str):
        return _WRONG
    if len(value) > min(max_length, spec.max_length or max_length):
        return None, "value_too_long"
    if spec.type == "date":
        try:
            return normalise.normalise_date(value, "iso"), None
        except IdentifierError:
            return _WRONG
    if spec.type == "code" and not (spec.values and value in spec.values):
        return None, "code_unknown"
    return value, None


def _coerce(spec: FieldSpec, value: Any, max_length: int) -> tuple[Any, str | None]:
    """Return (typed value, None) or (None, problem code)."""
    if spec.type == "boolean":
        return _as_boolean(value)
    if spec.type == "integer":
        return _as_integer(value)
    if spec.type == "number":
        return _as_number(value)
    return _as_text(spec, value, max_length)


_MESSAGES = {
    "wrong_type": "value is not a valid {type}",
    "value_too_long": "value is longer than allowed",
    "code_unknown": "value is not one of the codes declared for this field",
}


def _check_ref(
    record: dict[str, Any],
    index: int,
    seen: set[str],
    known_ref: Callable[[str], bool],
    problems: _Collector,
) -> str | None:
    ref = record.get("record_id")
    if not isinstance(ref, str) or not ref.strip() or len(ref) > MAX_RECORD_REF:
        problems.add(
            "record_id_invalid",
            f"record_id must be a non-empty string of at most {MAX_RECORD_REF} characters",
            index,
            "record_id",
        )
        return None
    if ref in seen:
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
    seen.add(ref)
    return ref


def _check_names(
    record: dict[str, Any], index: int, dataset: Dataset, allowed: set[str], problems: _Collector
) -> None:
    for name in record:
        if name not in allowed:
            # A key is echoed only when it looks like a field name: a client that
            # sent values as keys must not see them come back in the error.
            shown = str(name) if _FIELD_NAME.match(str(name)) else None
            close = difflib.get_close_matches(shown, sorted(allowed), n=1) if shown else []
            hint = f"; did you mean '{close[0]}'?" if close else ""
            what = f"field '{shown}'" if shown else "a field whose name is not a field name"
            problems.add(
                "field_not_declared",
                f"{what} is not declared in dataset '{dataset.id}'{hint}",
                index,
                shown,
            )


def normalise_identifiers(
    record: Mapping[str, Any], dataset: Dataset, index: int = 0
) -> Identifiers:
    """Normalise the dataset's identifiers in one record exactly as the broker does.

    The dataset's ``date_format`` applies to the date of birth. Adapters that
    tokenise at source call this, so their tokens equal the broker's.
    """
    values: dict[str, str] = {}
    invalid: list[Problem] = []
    unusable: list[Problem] = []
    for name in dataset.identifiers:
        raw = record.get(name)
        if raw is None or raw == "":
            continue
        if not isinstance(raw, str):
            invalid.append(
                Problem("wrong_type", "identifier must be a string", Location(index, name))
            )
            continue
        try:
            values[name] = _identifier(name, raw, dataset)
        except IdentifierError as exc:
            if name in _SOFT_IDENTIFIERS:
                unusable.append(Problem("identifier_unusable", exc.message, Location(index, name)))
            else:
                invalid.append(Problem("identifier_invalid", exc.message, Location(index, name)))
    return Identifiers(values, tuple(invalid), tuple(unusable))


def _identifiers(
    record: dict[str, Any], index: int, dataset: Dataset, problems: _Collector
) -> tuple[dict[str, str], list[Problem]]:
    found = normalise_identifiers(record, dataset, index)
    for problem in found.invalid:
        problems.add(problem.code, problem.message, index, problem.location.field)
    return found.values, list(found.unusable)


def _fields(
    record: dict[str, Any], index: int, dataset: Dataset, max_length: int, problems: _Collector
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for spec in dataset.fields:
        value = record.get(spec.name)
        if value is None or value == "":
            if spec.required:
                problems.add("field_required", f"field '{spec.name}' is required", index, spec.name)
            continue
        typed, error = _coerce(spec, value, max_length)
        if error is not None:
            problems.add(error, _MESSAGES[error].format(type=spec.type), index, spec.name)
        else:
            fields[spec.name] = typed
    return fields


_RecordCheck = Callable[
    [dict[str, Any], int, _Collector], tuple[dict[str, str], dict[str, str] | None, list[Problem]]
]


def _validate(
    dataset: Dataset,
    records: Sequence[Any],
    check: _RecordCheck,
    *,
    max_field_length: int,
    known_ref: Callable[[str], bool],
) -> list[ValidRecord]:
    if not records:
        raise BatchRejected("the batch holds no records", code="batch_empty")
    problems = _Collector()
    valid: list[ValidRecord] = []
    seen_refs: set[str] = set()
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            problems.add("record_not_object", "record must be a JSON object", index)
            continue
        ref = _check_ref(record, index, seen_refs, known_ref, problems)
        identifiers, tokens, quality = check(record, index, problems)
        fields = _fields(record, index, dataset, max_field_length, problems)
        if ref is not None:
            valid.append(ValidRecord(index, ref, identifiers, fields, tuple(quality), tokens))
    if problems.problems:
        count = len(problems.problems)
        raise BatchRejected(
            f"batch rejected: {count}{'+' if count >= MAX_PROBLEMS else ''} problem(s) in "
            f"its records; nothing was stored. Fix them and send the whole batch again",
            location=problems.problems[0].location,
            problems=tuple(problems.problems),
        )
    return valid


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
    allowed = {"record_id", *dataset.identifiers, *(spec.name for spec in dataset.fields)}

    def check(
        record: dict[str, Any], index: int, problems: _Collector
    ) -> tuple[dict[str, str], None, list[Problem]]:
        if TOKENS_KEY in record and TOKENS_KEY not in allowed:
            problems.add(
                "record_tokenised",
                "record carries tokens but the batch is not marked 'tokenised'; a batch is "
                "either wholly tokenised at source or wholly clear",
                index,
                TOKENS_KEY,
            )
        _check_names(record, index, dataset, allowed | {TOKENS_KEY}, problems)
        identifiers, quality = _identifiers(record, index, dataset, problems)
        return identifiers, None, quality

    return _validate(
        dataset, records, check, max_field_length=max_field_length, known_ref=known_ref
    )


def validate_tokenised_batch(
    dataset: Dataset,
    records: Sequence[Any],
    *,
    match_keys: Collection[str],
    max_field_length: int,
    known_ref: Callable[[str], bool] = lambda _ref: False,
) -> list[ValidRecord]:
    """Validate a batch tokenised at source; every record's ``tokens`` are on ValidRecord.

    Every record must carry ``tokens`` (an object, empty when it had no match
    key) and no identifier at all; each token must be 64 lower-case hex and for
    a match key in ``match_keys`` (the agreement's). Problems as validate_batch.
    """
    allowed = {"record_id", TOKENS_KEY, *(spec.name for spec in dataset.fields)}
    identifier_names = {*dataset.identifiers, *IDENTIFIER_NAMES}

    def check(
        record: dict[str, Any], index: int, problems: _Collector
    ) -> tuple[dict[str, str], dict[str, str], list[Problem]]:
        for name in sorted(identifier_names & set(record)):
            problems.add(
                "identifier_not_allowed",
                f"a tokenised record must not carry identifier '{name}'; send only its tokens",
                index,
                name,
            )
        _check_names(record, index, dataset, allowed | identifier_names, problems)
        return {}, _tokens(record, index, match_keys, problems), []

    return _validate(
        dataset, records, check, max_field_length=max_field_length, known_ref=known_ref
    )


def _tokens(
    record: dict[str, Any], index: int, match_keys: Collection[str], problems: _Collector
) -> dict[str, str]:
    raw = record.get(TOKENS_KEY)
    if TOKENS_KEY not in record:
        problems.add(
            "record_not_tokenised",
            "record has no 'tokens' but the batch is marked 'tokenised'; a batch is either "
            "wholly tokenised at source or wholly clear",
            index,
            TOKENS_KEY,
        )
        return {}
    if not isinstance(raw, dict):
        problems.add(
            "wrong_type", "tokens must be an object of match key to token", index, "tokens"
        )
        return {}
    tokens: dict[str, str] = {}
    for key, value in raw.items():
        shown = str(key) if _FIELD_NAME.match(str(key)) else None
        where = f"tokens.{shown}" if shown else TOKENS_KEY
        if key not in match_keys:
            what = f"match key '{shown}'" if shown else "a key whose name is not a match key name"
            problems.add(
                "token_key_unknown",
                f"{what} is not one this agreement links on ({', '.join(sorted(match_keys))})",
                index,
                where,
            )
        elif not isinstance(value, str) or not _TOKEN.match(value):
            problems.add(
                "token_invalid", "token must be 64 lower-case hexadecimal characters", index, where
            )
        else:
            tokens[key] = value
    return tokens
