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
from broker.link.batch import PairTable, compare_all
from broker.link.blocking import BlockIndex, candidate_pairs
from broker.link.cluster import CompareFn, Guard, Link, cluster, cluster_id
from broker.link.compare import make_comparer
from broker.link.config import DEFAULT_CONFIG, LinkageConfig
from broker.link.households import households
from broker.link.model import Model, fit, fit_patterns, probability
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
    table: PairTable,
    model: Model,
    config: LinkageConfig,
    compare: CompareFn,
) -> LinkResult:
    counts = Counter(table.codes)
    codes = sorted(counts)  # a fixed order, so float sums never depend on input order
    decoded = {code: table.decode(code) for code in codes}
    scores = {code: model.score(*decoded[code]) for code in codes}
    bands = {code: model.band(scores[code][1]) for code in codes}
    matching = {code for code in codes if bands[code] is Band.MATCH}
    kept = set(codes) if config.keep_non_matches else {
        code for code in codes if bands[code] is not Band.NON_MATCH
    }  # fmt: skip
    links: list[Link] = []
    shown: list[int] = []
    left, right, all_codes = table.left, table.right, table.codes
    for k, code in enumerate(all_codes):
        if code in kept:
            shown.append(k)
            if code in matching:
                links.append(Link(left[k], right[k], scores[code][0], decoded[code][0]))
    refs = [r.ref for r in records]
    clustering = cluster(
        refs,
        links,
        Guard(records, compare, config.guard, model.score),
        config.guard.ambiguity_margin,
    )
    refused = {(x.left, x.right) for x in clustering.refused}
    pairs = []
    for k in shown:
        code = all_codes[k]
        weight, prob = scores[code]
        band = Band.POSSIBLE if (left[k], right[k]) in refused else bands[code]
        levels, rule = decoded[code]
        pairs.append(ScoredPair(refs[left[k]], refs[right[k]], weight, prob, band, rule, levels))
    pairs.sort(key=lambda p: (p.left_ref, p.right_ref))
    per_band: Counter[Band] = Counter()
    total = matched_mass = 0.0
    for code in codes:
        per_band[bands[code]] += counts[code]
        total += counts[code] * scores[code][1]
        if code in matching:
            matched_mass += counts[code] * scores[code][1]
    refused_mass = sum(probability(x.weight) for x in clustering.refused)
    matched = per_band[Band.MATCH] - len(refused)
    per_band[Band.MATCH] = matched
    per_band[Band.POSSIBLE] += len(refused)
    mass = matched_mass - refused_mass
    quality = QualityEstimate(
        precision=mass / matched if matched else 1.0,
        recall=mass / total if total > 0 else 1.0,
        pairs_per_band={band: per_band.get(band, 0) for band in Band},
        records=len(records),
        clusters=len(set(clustering.labels)),
        refused_links=len(refused),
    )
    return LinkResult(
        clusters=dict(zip(refs, clustering.labels, strict=True)),
        pairs=pairs,
        quality=quality,
        comparisons=len(table),
        households=households(records, clustering.labels),
        model=model,
    )


def link_records(
    records: Sequence[EncodedRecord],
    config: LinkageConfig = DEFAULT_CONFIG,
    *,
    model: Model | None = None,
    pairs: PairsFn | None = None,
    compare: CompareFn | None = None,
    workers: int = 1,
) -> LinkResult:
    """Link ``records`` as one batch: block, compare, fit (unless ``model`` is given), cluster.

    Refs must be unique (ValidationError ``duplicate_ref``). ``pairs`` and
    ``compare`` replace the blocking and comparison steps (tests, benches);
    ``workers`` above one compares in that many forked processes.
    """
    if compare is None:
        compare = default_steps(config)[1]
    ordered = _sorted_unique(records)
    names = [key.name for key in config.cascade]
    table = compare_all(ordered, compare, names, pairs=pairs, workers=workers)
    if model is None:
        patterns: Counter[tuple[Level, ...]] = Counter()
        for code, count in Counter(table.codes).items():
            patterns[table.decode(code)[0]] += count
        sample = random_levels(ordered, compare, config)
        model = fit_patterns(patterns, config, random_levels=sample)
    return _result(ordered, table, model, config, compare)


class IncrementalLinker:
    """Links batches as they arrive; after any batches, the clusters of ``link_records`` over all.

    With a ``model`` (fit once, held): each new record is compared with the
    records sharing a block (``BlockIndex``), and only the components of the
    match graph the batch touched are clustered again, so one record against a
    million costs its candidates, not the million. Without one, each batch
    refits and relinks everything: exact, and slow. The equality holds while no
    block passes the blocking cap (``broker.link.blocking``), beyond which the
    index keeps pairs it found before the block grew.
    """

    def __init__(
        self,
        config: LinkageConfig = DEFAULT_CONFIG,
        model: Model | None = None,
        *,
        compare: CompareFn | None = None,
    ) -> None:
        self._config = config
        self._model = model
        self._compare = compare or default_steps(config)[1]
        self._records: list[EncodedRecord] = []
        self._refs: set[str] = set()
        self._position: dict[str, int] = {}
        self._index = BlockIndex()
        self._pairs: list[ScoredPair] = []  # above non-match, or all when kept
        self._bands: Counter[Band] = Counter()
        self._posterior_total = 0.0
        self._match_posterior = 0.0
        self._parent: list[int] = []
        self._members: dict[int, list[int]] = {}
        self._links: dict[int, list[Link]] = {}
        # Per component root: refused ref pairs and their posteriors.
        self._refused: dict[int, dict[tuple[str, str], float]] = {}
        self._refused_count = 0
        self._refused_posterior = 0.0
        self._labels: list[str] = []
        self._cluster_count = 0  # distinct labels, kept as they change (a set is O(n))
        self._comparisons = 0
        self._last: LinkResult | None = None

    def add(self, records: Sequence[EncodedRecord]) -> LinkResult:
        """Link a batch: the refs whose cluster is new or may have changed, the new pairs.

        ``quality`` is over everything so far; ``households`` are left to ``result``.
        """
        batch = _sorted_unique(records)
        if any(record.ref in self._refs for record in batch):
            raise ValidationError(
                "a record with this ref was already linked; refs must be unique",
                code="duplicate_ref",
            )
        self._refs.update(record.ref for record in batch)
        if self._model is None:
            self._records.extend(batch)
            self._last = link_records(self._records, self._config, compare=self._compare)
            return self._last
        return self._add_with(batch, self._model)

    def result(self) -> LinkResult:
        """Everything linked so far, as ``link_records`` over all of it gives."""
        if self._model is None:
            if self._last is None:
                return link_records([], self._config, model=fit([]), compare=self._compare)
            return self._last
        pairs = sorted(
            (self._adjusted(p) for p in self._pairs), key=lambda p: (p.left_ref, p.right_ref)
        )
        clusters = {r.ref: label for r, label in zip(self._records, self._labels, strict=True)}
        return LinkResult(
            clusters=dict(sorted(clusters.items())),
            pairs=pairs,
            quality=self._quality(),
            comparisons=self._comparisons,
            households=households(self._records, self._labels),
            model=self._model,
        )

    def _quality(self) -> QualityEstimate:
        bands = dict(self._bands)
        matched = bands.get(Band.MATCH, 0) - self._refused_count
        bands[Band.MATCH] = matched
        bands[Band.POSSIBLE] = bands.get(Band.POSSIBLE, 0) + self._refused_count
        mass = self._match_posterior - self._refused_posterior
        return QualityEstimate(
            precision=mass / matched if matched else 1.0,
            recall=mass / self._posterior_total if self._posterior_total > 0 else 1.0,
            pairs_per_band={band: bands.get(band, 0) for band in Band},
            records=len(self._records),
            clusters=self._cluster_count,
            refused_links=self._refused_count,
        )

    def _adjusted(self, pair: ScoredPair) -> ScoredPair:
        if pair.band is not Band.MATCH:
            return pair
        root = self._find(self._position[pair.left_ref])
        if (pair.left_ref, pair.right_ref) not in self._refused.get(root, {}):
            return pair
        return ScoredPair(
            pair.left_ref, pair.right_ref, pair.weight, pair.probability,
            Band.POSSIBLE, pair.rule, pair.levels,
        )  # fmt: skip

    def _find(self, i: int) -> int:
        parent = self._parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def _add_with(self, batch: Sequence[EncodedRecord], model: Model) -> LinkResult:
        compare, keep = self._compare, self._config.keep_non_matches
        touched: set[int] = set()
        new_pairs: list[ScoredPair] = []
        compared = 0
        for record in batch:
            position = len(self._records)
            self._records.append(record)
            self._position[record.ref] = position
            self._parent.append(position)
            self._labels.append(cluster_id(record.ref))
            self._cluster_count += 1
            touched.add(position)
            for other in sorted(self._index.candidates(record)):
                levels, rule = compare(self._records[other], record)
                comparison = Comparison(other, position, levels, rule)
                pair, weight = _scored(self._records, comparison, model)
                compared += 1
                self._posterior_total += pair.probability
                self._bands[pair.band] += 1
                if pair.band is Band.MATCH:
                    self._match_posterior += pair.probability
                    touched.add(self._join(Link(other, position, weight, levels)))
                if pair.band is not Band.NON_MATCH or keep:
                    self._pairs.append(pair)
                    new_pairs.append(pair)
            self._index.add(position, record)
        self._comparisons += compared
        changed: dict[str, str] = {}
        for root in sorted({self._find(t) for t in touched}):
            changed.update(self._recluster(root))
        return LinkResult(
            clusters=dict(sorted(changed.items())),
            pairs=[self._adjusted(p) for p in new_pairs],
            quality=self._quality(),
            comparisons=compared,
            model=model,
        )

    def _join(self, link: Link) -> int:
        ra, rb = self._find(link.left), self._find(link.right)
        if ra != rb:
            if len(self._members.get(ra, [ra])) < len(self._members.get(rb, [rb])):
                ra, rb = rb, ra
            self._parent[rb] = ra
            self._members[ra] = self._members.pop(ra, [ra]) + self._members.pop(rb, [rb])
            self._links[ra] = self._links.pop(ra, []) + self._links.pop(rb, [])
            # Kept with the new root, so re-clustering it first takes back their count.
            self._refused[ra] = {**self._refused.pop(ra, {}), **self._refused.pop(rb, {})}
        self._links.setdefault(ra, []).append(link)
        return ra

    def _recluster(self, root: int) -> dict[str, str]:
        members = sorted(self._members.get(root, [root]))
        local = {position: i for i, position in enumerate(members)}
        records = [self._records[p] for p in members]
        links = [
            Link(local[x.left], local[x.right], x.weight, x.levels)
            for x in self._links.get(root, [])
        ]
        assert self._model is not None  # only the held-model path re-clusters
        guard = Guard(records, self._compare, self._config.guard, self._model.score)
        outcome = cluster(
            [r.ref for r in records], links, guard, self._config.guard.ambiguity_margin
        )
        old = self._refused.pop(root, {})
        self._refused_count -= len(old)
        self._refused_posterior -= sum(old.values())
        new: dict[tuple[str, str], float] = {}
        for x in outcome.refused:
            a, b = records[x.left].ref, records[x.right].ref
            new[(a, b) if a < b else (b, a)] = probability(x.weight)
        if new:
            self._refused[root] = new
        self._refused_count += len(new)
        self._refused_posterior += sum(new.values())
        before = len({self._labels[p] for p in members})
        self._cluster_count += len(set(outcome.labels)) - before
        changed = {}
        for position, label in zip(members, outcome.labels, strict=True):
            self._labels[position] = label
            changed[self._records[position].ref] = label
        return changed
