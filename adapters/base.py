"""What every adapter does before sending: keep only what the agreement lets a dataset carry."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from agreements.models import Dataset


def declared_columns(dataset: Dataset) -> frozenset[str]:
    """The keys a record of ``dataset`` may hold: record_id, its identifiers and its fields."""
    return frozenset({"record_id", *dataset.identifiers, *(spec.name for spec in dataset.fields)})


def select_declared(rows: Iterable[Mapping[str, str]], dataset: Dataset) -> list[dict[str, str]]:
    """Drop every column the dataset does not declare, so undeclared data never leaves the agency.

    An extract often holds more than the agreement covers (an address line, an
    internal flag); sending it would be refused, and should never be attempted.
    """
    keep = declared_columns(dataset)
    return [{k: v for k, v in row.items() if k in keep} for row in rows]
