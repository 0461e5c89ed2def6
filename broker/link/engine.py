"""Linkage end to end: compare the candidate pairs, fit or reuse a model, score, cluster.

``link_records`` links one batch at once; ``IncrementalLinker`` adds batches
and ends with the same clusters as ``link_records`` over everything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from broker.link.config import DEFAULT_CONFIG, LinkageConfig
from broker.link.types import Band, EncodedRecord, ScoredPair


@dataclass(frozen=True, slots=True)
class QualityEstimate:
    """Precision and recall estimated from the model without labels, and counts per band.

    ``precision`` is the mean posterior of the pairs banded match; ``recall`` is
    the sum of those posteriors over the sum of the posteriors of every
    candidate pair. Both trust the model's calibration and ignore true matches
    that blocking never proposed; see ``broker.link.model``.
    """

    precision: float
    recall: float
    pairs_per_band: Mapping[Band, int]
    records: int
    clusters: int
    refused_links: int = 0


@dataclass(frozen=True, slots=True)
class LinkResult:
    """Clusters (ref to cluster id), scored pairs, estimated quality and the pairs compared."""

    clusters: Mapping[str, str]
    pairs: Sequence[ScoredPair]
    quality: QualityEstimate
    comparisons: int
    households: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def link_records(
    records: Sequence[EncodedRecord], config: LinkageConfig = DEFAULT_CONFIG
) -> LinkResult:
    """Link ``records`` as one batch; the signature is agreed, the body lands next."""
    raise NotImplementedError("link_records lands in the next commit")
