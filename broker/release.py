"""Shaping what leaves the broker: only permitted fields, each in its permitted form."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from agreements.models import ReleasedField, ReleaseForm
from broker.errors import IdentifierError
from broker.normalise import postcode_district, postcode_sector

# Age bands used in safeguarding reporting: under 10, then the bands that
# matter for serious violence (10-13, 14-15, 16-17, 18-24), then 25 and over.
AGE_BANDS: tuple[tuple[int, int | None, str], ...] = (
    (0, 9, "0-9"),
    (10, 13, "10-13"),
    (14, 15, "14-15"),
    (16, 17, "16-17"),
    (18, 24, "18-24"),
    (25, None, "25+"),
)
REDACTED = "[redacted]"


def age_on(born: date, on: date) -> int:
    """Whole years between ``born`` and ``on`` (a birthday counts on the day itself)."""
    years = on.year - born.year
    if (on.month, on.day) < (born.month, born.day):
        years -= 1
    return years


def age_band(age: int) -> str:
    """The band an age falls in; negative ages (a date after ``on``) have none."""
    for low, high, label in AGE_BANDS:
        if age >= low and (high is None or age <= high):
            return label
    return REDACTED


def _as_date(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _postcode_form(value: Any, form: ReleaseForm) -> str:
    try:
        return (
            postcode_district(str(value))
            if form == "postcode_district"
            else (postcode_sector(str(value)))
        )
    except IdentifierError:
        return REDACTED


# One return per form reads as the table it is.
def apply_form(value: Any, form: ReleaseForm, *, on: date | None = None) -> Any:  # noqa: PLR0911
    """Turn a stored value into the form the agreement releases it in.

    ``month`` keeps ``YYYY-MM`` of an ISO date; ``flag`` says whether a count
    (or a boolean) is non-zero, so the count itself never leaves; ``age`` and
    ``age_band`` are computed on ``on`` (the day of the request); the postcode
    forms keep the district or sector. A value that cannot take its form is
    redacted rather than released as it is.
    """
    if form == "as_supplied":
        return value
    if form == "redacted" or value is None:
        return REDACTED if form == "redacted" else None
    if form == "flag":
        return bool(value)
    if form in ("postcode_district", "postcode_sector"):
        return _postcode_form(value, form)
    when = _as_date(value)
    if when is None:
        return REDACTED
    if form == "month":
        return when.isoformat()[:7]
    age = age_on(when, on or date.today())
    return age if form == "age" and age >= 0 else age_band(age)


def released_fields(
    dataset_id: str,
    stored: Mapping[str, Any],
    permitted: tuple[ReleasedField, ...],
    *,
    on: date | None = None,
) -> dict[str, Any]:
    """The permitted fields of one stored record, in their forms; nothing else is copied."""
    out: dict[str, Any] = {}
    for grant in permitted:
        if grant.dataset == dataset_id and grant.field in stored:
            out[grant.field] = apply_form(stored[grant.field], grant.form, on=on)
    return out
