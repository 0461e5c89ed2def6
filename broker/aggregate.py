"""Aggregates: counts of young people or records by district, age band, sex, week or month.

The pure part of the aggregate output kind. ``broker.service_aggregate`` decides,
reads and unseals records; this module checks a query's shape (:func:`plan`), checks
its dimensions and conditions against what the decision released
(:func:`check_permitted`), turns each stored record into the labels of its cell
(:func:`observe`) and tallies the cells into a ``CountTable`` (:func:`tabulate`) for
``broker.suppression.protect``.

A dimension is allowed only where the field is released in the dimension's form or
a finer one (a district from a postcode released as district or sector; an age band
from a date of birth released as age or age band), so that a table never says more
about a field than the release does. Conditions compare a field *in its released
form*, so filtering adds nothing a lookup of the same fields would not show.

In a count of young people each is counted once, in the cell of their first
matching record (earliest by the week or month dimension's date, then first
received), so every total is the number of distinct young people and the table
adds up, as complementary suppression requires.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, get_args

from agreements.models import Agreement, ReleasedField, ReleaseForm
from broker.errors import Location, Refused, ValidationError
from broker.release import AGE_BANDS, REDACTED, apply_form
from broker.suppression import CountTable, Position, PublishedCell, PublishedTable

DimensionKind = Literal["postcode_district", "age_band", "sex", "week", "month"]
Measure = Literal["subjects", "records"]
ConditionValue = str | int | float | bool

DIMENSION_KINDS: tuple[DimensionKind, ...] = get_args(DimensionKind)
MEASURES: tuple[Measure, ...] = get_args(Measure)
MAX_DIMENSIONS = 2
MAX_CONDITIONS = 10
# Interior cells a table may have. Suppression is quadratic in small cells (about 4 s for
# 10,000); 2,500 keeps a request near a second and is 50 districts by 50 weeks.
MAX_AGGREGATE_CELLS = 2_500
# The issue's defaults, which are also protect()'s: counts of 7 or fewer are redacted and
# every other published count is rounded to the nearest 5.
ROUNDING_BASE = 5
REDACT_AT_OR_BELOW = 7
UNKNOWN = "Unknown"
SEX_CODES = ("F", "M", "X", "U")  # as broker.normalise.normalise_sex writes them

# Data minimisation: each dimension and the released forms it can be computed from
# without learning more than the release allows (the same form or a finer one).
_FROM_FORMS: dict[DimensionKind, frozenset[ReleaseForm]] = {
    "postcode_district": frozenset({"as_supplied", "postcode_sector", "postcode_district"}),
    "age_band": frozenset({"as_supplied", "age", "age_band"}),
    "month": frozenset({"as_supplied", "month"}),
    "week": frozenset({"as_supplied"}),
    "sex": frozenset({"as_supplied"}),
}
_FIELD_TYPES: dict[DimensionKind, frozenset[str]] = {
    "postcode_district": frozenset({"postcode"}),
    "age_band": frozenset({"date"}),
    "month": frozenset({"date"}),
    "week": frozenset({"date"}),
    "sex": frozenset({"code"}),
}
_DEFAULT_FIELDS: dict[DimensionKind, str] = {
    "postcode_district": "postcode",
    "age_band": "date_of_birth",
    "sex": "sex",
}
_DATED: frozenset[DimensionKind] = frozenset({"week", "month"})
# The dimensions that are release forms too, computed as a release computes them.
_AS_FORM: dict[DimensionKind, ReleaseForm] = {
    "postcode_district": "postcode_district",
    "age_band": "age_band",
    "month": "month",
}


@dataclass(frozen=True)
class Dimension:
    """One way to break the count down, as asked: ``field`` None takes the usual field."""

    by: str
    field: str | None = None


@dataclass(frozen=True)
class Condition:
    """Count only where ``field`` equals ``equals`` in its released form.

    ``field`` is a field of the measured dataset, or ``dataset.field`` of another
    dataset: then a young person counts only if they also have such a record there.
    """

    field: str
    equals: ConditionValue


@dataclass(frozen=True)
class AggregateQuery:
    """What a recipient asks for: a count over one dataset, broken down one or two ways."""

    dataset: str
    count: str
    dimensions: tuple[Dimension, ...]
    where: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class PlannedDimension:
    by: DimensionKind
    field: str


@dataclass(frozen=True)
class PlannedCondition:
    dataset: str
    field: str
    equals: ConditionValue


@dataclass(frozen=True)
class Plan:
    """A query whose shape was checked, with every field named in full."""

    dataset: str
    count: Measure
    dimensions: tuple[PlannedDimension, ...]
    where: tuple[PlannedCondition, ...] = ()

    def fields(self) -> tuple[tuple[str, str], ...]:
        """Every (dataset, field) the query reads, dimensions first, each once."""
        pairs = [(self.dataset, d.field) for d in self.dimensions]
        pairs += [(c.dataset, c.field) for c in self.where]
        return tuple(dict.fromkeys(pairs))

    def datasets(self) -> tuple[str, ...]:
        """The measured dataset, then each other dataset a condition names."""
        return tuple(dict.fromkeys([self.dataset, *(c.dataset for c in self.where)]))

    def describe(self) -> dict[str, Any]:
        """Names only, never a condition's value: what the audit entry records of the query."""
        return {
            "measure": {"count": self.count, "dataset": self.dataset},
            "dimensions": [
                {"by": d.by, "field": f"{self.dataset}.{d.field}"} for d in self.dimensions
            ],
            "where": [f"{c.dataset}.{c.field}" for c in self.where],
        }


def _invalid(code: str, message: str, where: str) -> ValidationError:
    return ValidationError(message, code=code, location=Location(field=where))


def _plan_dimension(index: int, dimension: Dimension) -> PlannedDimension:
    where = f"dimensions[{index}]"
    if dimension.by not in DIMENSION_KINDS:
        raise _invalid(
            "dimension_unknown",
            f"a dimension is one of {', '.join(DIMENSION_KINDS)}",
            f"{where}.by",
        )
    by = dimension.by
    field = dimension.field or _DEFAULT_FIELDS.get(by)
    if field is None:
        raise _invalid(
            "dimension_field_required", f"a {by} dimension must name its date field", where
        )
    # Sex is read from the sex identifier alone; another code field is not a sex.
    if by == "sex" and field != "sex":
        raise _invalid("dimension_field_invalid", "a sex dimension reads the field 'sex'", where)
    return PlannedDimension(by, field)


def _plan_condition(index: int, condition: Condition, dataset: str) -> PlannedCondition:
    other, dot, name = condition.field.rpartition(".")
    if (dot and not other) or not name:
        raise _invalid(
            "condition_invalid",
            "a condition names 'field' or 'dataset.field'",
            f"measure.where[{index}].field",
        )
    return PlannedCondition(other or dataset, name, condition.equals)


def plan(query: AggregateQuery) -> Plan:
    """Check the query's shape and name every field in full; ValidationError if it is wrong."""
    if query.count not in MEASURES:
        raise _invalid("measure_unknown", "count 'subjects' or 'records'", "measure.count")
    if not 1 <= len(query.dimensions) <= MAX_DIMENSIONS:
        raise _invalid(
            "dimensions_invalid", f"give one or {MAX_DIMENSIONS} dimensions", "dimensions"
        )
    if len(query.where) > MAX_CONDITIONS:
        raise _invalid(
            "conditions_invalid", f"give at most {MAX_CONDITIONS} conditions", "measure.where"
        )
    dimensions = tuple(_plan_dimension(i, d) for i, d in enumerate(query.dimensions))
    if len({d.by for d in dimensions}) != len(dimensions):
        raise _invalid(
            "dimensions_invalid", "a table cannot be broken down the same way twice", "dimensions"
        )
    where = tuple(_plan_condition(i, c, query.dataset) for i, c in enumerate(query.where))
    return Plan(query.dataset, query.count, dimensions, where)


# -- checking against the decision ------------------------------------------------


def _forms(fields: Iterable[ReleasedField]) -> dict[tuple[str, str], ReleaseForm]:
    return {(f.dataset, f.field): f.form for f in fields}


def dimension_fits(dimension: PlannedDimension, form: ReleaseForm | None) -> bool:
    """Whether a field released in ``form`` (None: not released) allows this dimension."""
    return form is not None and form in _FROM_FORMS[dimension.by]


def fits(query: Plan, dataset_id: str, permitted: Iterable[ReleasedField]) -> bool:
    """Whether a record of ``dataset_id`` may count under these released fields.

    A record counts only where its own agreement version releases every field the
    query reads of its dataset, each dimension in a form that allows it.
    """
    forms = _forms(permitted)
    if dataset_id == query.dataset and not all(
        dimension_fits(d, forms.get((dataset_id, d.field))) for d in query.dimensions
    ):
        return False
    return all((c.dataset, c.field) in forms for c in query.where if c.dataset == dataset_id)


def _expected(form: ReleaseForm, field_type: str) -> tuple[tuple[type, ...], str]:
    """The JSON types a condition's value may have for a field in this form, and in words."""
    if form == "flag" or (form == "as_supplied" and field_type == "boolean"):
        return (bool,), "true or false"
    if form == "age" or (form == "as_supplied" and field_type == "integer"):
        return (int,), "a whole number"
    if form == "as_supplied" and field_type == "number":
        return (int, float), "a number"
    return (str,), "a string"


def _check_condition(index: int, condition: PlannedCondition, form: ReleaseForm, kind: str) -> None:
    where = f"measure.where[{index}].equals"
    if form == "redacted":
        raise _invalid(
            "condition_invalid",
            f"'{condition.dataset}.{condition.field}' is released only as redacted",
            where,
        )
    types, words = _expected(form, kind)
    value = condition.equals
    # A JSON true is not the number 1, nor 1 true: a mismatch would quietly count nothing.
    if isinstance(value, bool) != (bool in types) or not isinstance(value, types):
        raise _invalid(
            "condition_invalid",
            f"'{condition.dataset}.{condition.field}' is released as {form}: compare it "
            f"with {words}",
            where,
        )
    if form == "age_band" and value not in {label for _, _, label in AGE_BANDS}:
        raise _invalid("condition_invalid", "compare an age band with one of its labels", where)


def check_permitted(query: Plan, permitted: Sequence[ReleasedField], agreement: Agreement) -> None:
    """Check dimensions and conditions against the fields a decision released.

    Refused (``dimension_not_permitted``) for a dimension finer than its field's
    released form; ValidationError for a dimension on a field of the wrong type
    (``dimension_field_invalid``) or a condition value that cannot match its
    field's released form (``condition_invalid``). The decision has already
    refused fields that are not released at all.
    """
    forms = _forms(permitted)
    for index, dimension in enumerate(query.dimensions):
        dataset = agreement.dataset(query.dataset)
        spec = None if dataset is None else dataset.releasable(dimension.field)
        name = f"{query.dataset}.{dimension.field}"
        if spec is None or spec.type not in _FIELD_TYPES[dimension.by]:
            raise _invalid(
                "dimension_field_invalid",
                f"a {dimension.by} dimension cannot be read from '{name}'",
                f"dimensions[{index}]",
            )
        form = forms.get((query.dataset, dimension.field))
        if not dimension_fits(dimension, form):
            raise Refused(
                f"'{name}' is released to you as {form}, which does not allow a "
                f"{dimension.by} dimension",
                code="dimension_not_permitted",
                location=Location(field=f"dimensions[{index}]"),
            )
    for index, condition in enumerate(query.where):
        dataset = agreement.dataset(condition.dataset)
        spec = None if dataset is None else dataset.releasable(condition.field)
        form = forms.get((condition.dataset, condition.field))
        if spec is not None and form is not None:
            _check_condition(index, condition, form, spec.type)


# -- records to cells --------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """One stored record as the table sees it: whose, which cell, and whether it matched.

    ``cell`` holds one label per dimension for a record of the measured dataset and
    is empty for a record of a dataset a condition names. ``order`` places a young
    person's records so that each is counted once, in the cell of the first.
    """

    subject: str
    dataset: str
    matches: bool
    cell: tuple[str, ...] = ()
    order: tuple[str, ...] = ()


def _as_date(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def label(by: DimensionKind, value: Any, *, on: date) -> str:
    """The label of a stored value on a dimension; a missing or unusable value is Unknown.

    Age bands are computed on ``on`` (the day of the request), as released fields are.
    A missing sex counts as U, the code for not known.
    """
    if by == "sex":
        return str(value) if value in SEX_CODES else "U"
    if value is None:
        return UNKNOWN
    if by == "week":
        when = _as_date(value)
        if when is None:
            return UNKNOWN
        year, week, _ = when.isocalendar()
        return f"{year}-W{week:02d}"
    shown = apply_form(value, _AS_FORM[by], on=on)
    return UNKNOWN if shown in (None, REDACTED) else str(shown)


def _same(value: Any, wanted: ConditionValue) -> bool:
    if isinstance(value, bool) or isinstance(wanted, bool):
        return isinstance(value, bool) and isinstance(wanted, bool) and value == wanted
    return bool(value == wanted)


def observe(
    query: Plan,
    dataset_id: str,
    subject: str,
    stored: Mapping[str, Any],
    permitted: Iterable[ReleasedField],
    *,
    received_at: str,
    record_id: str,
    on: date,
) -> Observation:
    """One unsealed record as an observation; call only where :func:`fits` allowed it.

    Conditions compare the value in the form ``permitted`` releases it in; the
    cell's labels come from the stored value, which each dimension only coarsens.
    """
    forms = _forms(permitted)
    matches = all(
        _same(apply_form(stored.get(c.field), forms[(c.dataset, c.field)], on=on), c.equals)
        for c in query.where
        if c.dataset == dataset_id
    )
    if dataset_id != query.dataset:
        return Observation(subject, dataset_id, matches)
    cell = tuple(label(d.by, stored.get(d.field), on=on) for d in query.dimensions)
    dated = next((d for d in query.dimensions if d.by in _DATED), None)
    when = None if dated is None else _as_date(stored.get(dated.field))
    # Records with no date come after every dated one ("~" sorts after digits).
    order = ("~" if when is None else when.isoformat(), received_at, record_id)
    return Observation(subject, dataset_id, matches, cell, order)


def _categories(by: DimensionKind, seen: Iterable[str]) -> list[str]:
    present = set(seen)
    if by == "sex":
        return list(SEX_CODES)
    fixed = [band for _, _, band in AGE_BANDS] if by == "age_band" else []
    known = fixed + sorted(present - set(fixed) - {UNKNOWN})
    return [*known, UNKNOWN] if UNKNOWN in present else known


def _tally(query: Plan, observations: Iterable[Observation]) -> Counter[tuple[str, ...]]:
    records: list[Observation] = []
    # Young people with a matching record in each other dataset a condition names.
    also: dict[str, set[str]] = {d: set() for d in query.datasets()[1:]}
    for seen in observations:
        if seen.dataset == query.dataset:
            if seen.matches:
                records.append(seen)
        elif seen.matches and seen.dataset in also:
            also[seen.dataset].add(seen.subject)
    if also:
        wanted = set.intersection(*also.values())
        records = [r for r in records if r.subject in wanted]
    if query.count == "subjects":
        first: dict[str, Observation] = {}
        for record in records:
            held = first.get(record.subject)
            if held is None or record.order < held.order:
                first[record.subject] = record
        records = list(first.values())
    return Counter(r.cell for r in records)


def tabulate(query: Plan, observations: Iterable[Observation]) -> CountTable | None:
    """The counts by cell, every total included; None when nothing at all was counted.

    ValidationError ``aggregate_too_large`` when the table would have more than
    ``MAX_AGGREGATE_CELLS`` cells.
    """
    tally = _tally(query, observations)
    axes = [_categories(d.by, (cell[i] for cell in tally)) for i, d in enumerate(query.dimensions)]
    cells = 1
    for axis in axes:
        cells *= max(1, len(axis))
    if cells > MAX_AGGREGATE_CELLS:
        raise ValidationError(
            f"the table would have {cells} cells, more than {MAX_AGGREGATE_CELLS}; ask for "
            "coarser dimensions, fewer of them, or a narrower condition",
            code="aggregate_too_large",
            location=Location(field="dimensions"),
        )
    if not tally:
        return None
    if len(axes) == 1:
        return CountTable.from_counts({cell[0]: n for cell, n in tally.items()}, rows=axes[0])
    pairs = {(cell[0], cell[1]): n for cell, n in tally.items()}
    return CountTable.from_counts(pairs, rows=axes[0], columns=axes[1])


def empty_table(query: Plan) -> PublishedTable:
    """The table when nothing was counted: every fixed category and every total 0."""
    axes = [_categories(d.by, ()) for d in query.dimensions]
    rows, columns = tuple(axes[0]), tuple(axes[1]) if len(axes) > 1 else ()
    positions: list[Position] = [(r, c) for r in rows for c in columns]
    positions += [(r, None) for r in rows]
    positions += [(None, c) for c in columns]
    positions.append((None, None))
    return PublishedTable(rows, columns, {p: PublishedCell(0) for p in positions})
