"""Linkage end to end: compare the candidate pairs, fit or reuse a model, score, cluster.

``link_records`` links one batch at once. ``IncrementalLinker`` adds batches
and ends with the same clusters as ``link_records`` over everything: with a
model given it is fitted once and held (the broker refits it now and then over
what it stores), each batch is compared against the block index, and only the
components of the match graph that a batch touches are re-clustered; without a
model it refits and relinks everything on each batch, which is exact but slow.

Everything is ordered by ref before any step, so results never depend on the
order records were supplied in.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from broker.errors import Location, ValidationError
from broker.link.blocking import candidate_pairs
from broker.link.cluster import CompareFn, Guard, Link, cluster
from broker.link.compare import make_comparer
from broker.link.config import DEFAULT_CONFIG, LinkageConfig
from broker.link.households import households
from broker.link.model import Model, estimate_quality, fit
from broker.link.types import Band, Comparison, EncodedRecord, Level, ScoredPair

PairsFn = Callable[[Sequence[EncodedRecord]], Iterable[tuple[int, int]]]


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
    """Clusters (ref to cluster id), scored pairs, estimated quality and the pairs compared.

    ``pairs`` holds every compared pair above non-match (and non-matches when
    the configuration keeps them), sorted by refs; a link the chaining guard
    refused is banded possible. ``households`` maps a household id to its
    cluster ids.
    """

    clusters: Mapping[str, str]
    pairs: Sequence[ScoredPair]
    quality: QualityEstimate
    comparisons: int
    households: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    model: Model | None = None


def default_steps(config: LinkageConfig = DEFAULT_CONFIG) -> tuple[PairsFn, CompareFn]:
    """The blocking and comparison steps of ``broker.link`` for this configuration's cascade."""
    return candidate_pairs, make_comparer(config.encoder_cascade())


def _sorted_unique(records: Sequence[EncodedRecord]) -> list[EncodedRecord]:
    ordered = sorted(records, key=lambda r: r.ref)
    for i in range(1, len(ordered)):
        if ordered[i].ref == ordered[i - 1].ref:
            raise ValidationError(
                "two records share one ref; refs must be unique across everything linked",
                code="duplicate_ref",
                location=Location(record=i),
            )
    return ordered


def random_levels(
    records: Sequence[EncodedRecord], compare: CompareFn, config: LinkageConfig
) -> list[tuple[Level, ...]]:
    """Levels of seeded random pairs of ``records``, to estimate u (almost all non-matches)."""
    n = len(records)
    wanted = min(config.em.u_sample_pairs, n * (n - 1) // 2)
    rng = random.Random(config.em.seed)  # noqa: S311 - sampling, not secrecy
    out: list[tuple[Level, ...]] = []
    for _ in range(wanted):
        i, j = rng.randrange(n), rng.randrange(n - 1)
        j = j + 1 if j >= i else j
        out.append(compare(records[i], records[j])[0])
    return out


def _scored(
    records: Sequence[EncodedRecord], comparison: Comparison, model: Model
) -> tuple[ScoredPair, float]:
    weight, prob = model.score(comparison.levels, comparison.rule)
    left, right = records[comparison.left].ref, records[comparison.right].ref
    if right < left:
        left, right = right, left
    pair = ScoredPair(
        left, right, weight, prob, model.band(prob), comparison.rule, comparison.levels
    )
    return pair, weight


def _result(
    records: Sequence[EncodedRecord],
    comparisons: Sequence[Comparison],
    model: Model,
    config: LinkageConfig,
    compare: CompareFn,
) -> LinkResult:
    scored = [_scored(records, c, model) for c in comparisons]
    links = [
        Link(c.left, c.right, weight, c.levels)
        for c, (pair, weight) in zip(comparisons, scored, strict=True)
        if pair.band is Band.MATCH
    ]
    refs = [r.ref for r in records]
    clustering = cluster(refs, links, Guard(records, compare, config.guard))
    return _assemble(
        records, [p for p, _ in scored], clustering.labels, clustering.refused, model, config
    )


def _assemble(  # noqa: PLR0917 - private, called from two places
    records: Sequence[EncodedRecord],
    pairs: Sequence[ScoredPair],
    labels: Sequence[str],
    refused: Iterable[Link],
    model: Model,
    config: LinkageConfig,
) -> LinkResult:
    refused_refs = {
        tuple(sorted((records[link.left].ref, records[link.right].ref))) for link in refused
    }
    kept: list[ScoredPair] = []
    bands: Counter[Band] = Counter()
    quality_input: list[tuple[float, Band]] = []
    for offered in pairs:
        pair = offered
        if pair.band is Band.MATCH and (pair.left_ref, pair.right_ref) in refused_refs:
            pair = ScoredPair(
                pair.left_ref, pair.right_ref, pair.weight, pair.probability,
                Band.POSSIBLE, pair.rule, pair.levels,
            )  # fmt: skip
        bands[pair.band] += 1
        quality_input.append((pair.probability, pair.band))
        if pair.band is not Band.NON_MATCH or config.keep_non_matches:
            kept.append(pair)
    kept.sort(key=lambda p: (p.left_ref, p.right_ref))
    precision, recall = estimate_quality(quality_input)
    clusters = {r.ref: label for r, label in zip(records, labels, strict=True)}
    quality = QualityEstimate(
        precision=precision,
        recall=recall,
        pairs_per_band={band: bands.get(band, 0) for band in Band},
        records=len(records),
        clusters=len(set(labels)),
        refused_links=len(refused_refs),
    )
    return LinkResult(
        clusters=clusters,
        pairs=kept,
        quality=quality,
        comparisons=len(pairs),
        households=households(records, labels),
        model=model,
    )


def link_records(
    records: Sequence[EncodedRecord],
    config: LinkageConfig = DEFAULT_CONFIG,
    *,
    model: Model | None = None,
    pairs: PairsFn | None = None,
    compare: CompareFn | None = None,
) -> LinkResult:
    """Link ``records`` as one batch: block, compare, fit (unless ``model`` is given), cluster.

    Refs must be unique (ValidationError ``duplicate_ref``). ``pairs`` and
    ``compare`` replace the blocking and comparison steps (tests, benches).
    """
    if pairs is None or compare is None:
        default_pairs, default_compare = default_steps(config)
        pairs = pairs or default_pairs
        compare = compare or default_compare
    ordered = _sorted_unique(records)
    comparisons = [Comparison(i, j, *compare(ordered[i], ordered[j])) for i, j in pairs(ordered)]
    if model is None:
        model = fit(comparisons, config, random_levels=random_levels(ordered, compare, config))
    return _result(ordered, comparisons, model, config, compare)
