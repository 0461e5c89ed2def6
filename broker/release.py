"""Shaping what leaves the broker: only permitted fields, each in its permitted form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agreements.models import ReleasedField, ReleaseForm


def apply_form(value: Any, form: ReleaseForm) -> Any:
    """Turn a stored value into the form the agreement releases it in.

    ``month`` keeps ``YYYY-MM`` of an ISO date; ``flag`` says whether a count
    (or a boolean) is non-zero, so the count itself never leaves.
    """
    if form == "as_supplied":
        return value
    if form == "month":
        return str(value)[:7]
    return bool(value)


def released_fields(
    dataset_id: str, stored: Mapping[str, Any], permitted: tuple[ReleasedField, ...]
) -> dict[str, Any]:
    """The permitted fields of one stored record, in their forms; nothing else is copied."""
    out: dict[str, Any] = {}
    for grant in permitted:
        if grant.dataset == dataset_id and grant.field in stored:
            out[grant.field] = apply_form(stored[grant.field], grant.form)
    return out
