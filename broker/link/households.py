"""Households: subjects (clusters) who share a keyed household token.

A household is a grouping beside the clusters, never a reason to merge them:
twins share a household and stay two subjects. A cluster whose records carry
several household tokens (a child who moved, or lives between two homes)
belongs to each of those households. A household's id is a digest of its
keyed token, so it is stable across runs under one linkage key and reveals
nothing without that key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from broker.link.cluster import HOUSEHOLD_TOKEN
from broker.link.types import EncodedRecord


def household_id(token: str) -> str:
    """The id of the household whose keyed token is ``token``."""
    return "h_" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:20]


def households(
    records: Sequence[EncodedRecord], labels: Sequence[str], *, min_subjects: int = 1
) -> Mapping[str, tuple[str, ...]]:
    """Household id to the sorted ids of its clusters, for households of ``min_subjects`` or more.

    ``labels`` is the cluster id of each record, by position.
    """
    groups: dict[str, set[str]] = {}
    for record, label in zip(records, labels, strict=True):
        token = record.tokens.get(HOUSEHOLD_TOKEN)
        if token is not None:
            groups.setdefault(token, set()).add(label)
    result = {
        household_id(token): tuple(sorted(clusters))
        for token, clusters in groups.items()
        if len(clusters) >= min_subjects
    }
    return dict(sorted(result.items()))
