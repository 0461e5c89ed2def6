"""Fellegi-Sunter scoring with m and u probabilities estimated by EM, without labels.

For each compared field and level (disagree, near, agree) the model holds
``m`` (how often a true match shows that level) and ``u`` (how often a
non-match does). A pair's weight is its posterior log2 odds: the prior odds
``lambda / (1 - lambda)`` plus ``log2(m / u)`` of each field; a missing field
adds nothing. ``u`` is best estimated from random record pairs (almost all
non-matches) and then held; ``m`` and ``lambda`` come from EM over the blocked
candidate pairs. The per-level weights are made monotone after fitting
(near never weighs less than disagree, agree never less than near), so raising
one field's agreement never lowers a pair's weight.

A pair with no date of birth, NHS number or UPN compared (missing on either
side) and no full postcode agreeing is never banded match, whatever its
names say: it can be at most possible. Measured on the hard synthetic town,
such pairs (a name and nothing else) were the commonest false merge, while
names agreeing at one full postcode were all true on the moderate town.

A pair sharing a strong key (a valid NHS number, a UPN) is decisive: its
weight is raised to ``decisive_weight`` unless a strong disagreement
(different NHS numbers, different UPNs, different dates of birth and different
given names) contradicts it.

Estimated quality, with no labels: expected precision is the mean posterior of
the pairs banded match; expected recall is the sum of those posteriors over
the sum of the posteriors of every candidate pair. Limits: both trust the
model's calibration (Fellegi-Sunter assumes fields agree independently given
match status, which names and postcodes of one family break, so posteriors run
overconfident); recall cannot see true matches that blocking never proposed;
and the decisive rule counts its pairs as near-certain.

Fitting is deterministic: the comparisons are reduced to counts of distinct
level patterns, visited in sorted order.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from broker.link.config import DEFAULT_CONFIG, LinkageConfig, Thresholds
from broker.link.types import COMPARED_FIELDS, Band, Comparison, Level

_NHS = COMPARED_FIELDS.index("nhs_number")
_UPN = COMPARED_FIELDS.index("upn")
_GIVEN = COMPARED_FIELDS.index("given_name")
_DOB = COMPARED_FIELDS.index("date_of_birth")
_POSTCODE = COMPARED_FIELDS.index("postcode")
_N = len(COMPARED_FIELDS)
# How far from certain an anchored pair is held (a mistyped identifier can still pass its check).
_ANCHOR_EPSILON = 1e-3
# Probabilities per field, indexed by level - 1 (disagree, near, agree).
Table = tuple[tuple[float, float, float], ...]


def strong_disagreement(levels: Sequence[Level]) -> bool:
    """Whether levels alone show two people: NHS or UPN differ, or both DOB and given name."""
    return (
        levels[_NHS] == Level.DISAGREE
        or levels[_UPN] == Level.DISAGREE
        or (levels[_GIVEN] == Level.DISAGREE and levels[_DOB] == Level.DISAGREE)
    )


def probability(weight: float) -> float:
    """Posterior probability of a match from log2 odds."""
    if weight >= 0:
        return 1.0 / (1.0 + math.pow(2.0, -weight))
    odds = math.pow(2.0, weight)
    return odds / (1.0 + odds)


@dataclass(frozen=True)
class Model:
    """A fitted model; ``score`` and ``band`` are all the engine needs from it."""

    m: Table
    u: Table
    match_prior: float
    thresholds: Thresholds = DEFAULT_CONFIG.thresholds
    strong_rules: frozenset[str] = DEFAULT_CONFIG.strong_rules
    decisive_weight: float = DEFAULT_CONFIG.decisive_weight
    require_anchor: bool = DEFAULT_CONFIG.require_dob_or_identifier
    iterations: int = 0
    converged: bool = True
    weights: Table = field(init=False, repr=False)
    _cache: dict[tuple[tuple[Level, ...], str | None], tuple[float, float]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        table = []
        for m_f, u_f in zip(self.m, self.u, strict=True):
            d, n, a = (math.log2(m_f[i] / u_f[i]) for i in range(3))
            n = max(n, d)  # monotone: see the module docstring
            table.append((d, n, max(a, n)))
        object.__setattr__(self, "weights", tuple(table))

    def score(self, levels: tuple[Level, ...], rule: str | None = None) -> tuple[float, float]:
        """(weight as posterior log2 odds, posterior probability) of one pair."""
        key = (levels, rule)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        weight = math.log2(self.match_prior / (1.0 - self.match_prior))
        for f, level in enumerate(levels):
            if level:  # MISSING (0) adds nothing
                weight += self.weights[f][level - 1]
        if rule in self.strong_rules and not strong_disagreement(levels):
            weight = max(weight, self.decisive_weight)
        if (
            self.require_anchor
            and not (levels[_NHS] or levels[_UPN] or levels[_DOB])
            and levels[_POSTCODE] != Level.AGREE
        ):
            # Names and sex alone never link a child: at most possible.
            ceiling = math.log2(self.thresholds.match_at / (1.0 - self.thresholds.match_at))
            weight = min(weight, ceiling - 1e-6)  # clearly below, after rounding
        result = (weight, probability(weight))
        self._cache[key] = result
        return result

    def band(self, probability: float) -> Band:
        """The band of a posterior probability under this model's thresholds."""
        if probability >= self.thresholds.match_at:
            return Band.MATCH
        if probability >= self.thresholds.possible_at:
            return Band.POSSIBLE
        return Band.NON_MATCH


def _anchor(levels: Sequence[Level]) -> float | None:
    """The posterior a national identifier fixes, or None where none is compared.

    Different valid NHS numbers or UPNs: two people. The same one, with nothing
    strongly disagreeing: one person. Anchoring these pairs keeps EM from
    taking "the same family" (siblings agree on family name, postcode and
    household) for "the same person", which unanchored EM does on tightly
    blocked pairs.
    """
    if strong_disagreement(levels):
        return _ANCHOR_EPSILON if _identity_disagrees(levels) else None
    if levels[_NHS] == Level.AGREE or levels[_UPN] == Level.AGREE:
        return 1.0 - _ANCHOR_EPSILON
    return None


def _identity_disagrees(levels: Sequence[Level]) -> bool:
    return levels[_NHS] == Level.DISAGREE or levels[_UPN] == Level.DISAGREE


def _smoothed(
    counts: Sequence[float], prior: Sequence[float], alpha: float
) -> tuple[float, float, float]:
    total = sum(counts) + alpha
    d, n, a = ((c + alpha * p) / total for c, p in zip(counts, prior, strict=True))
    return (d, n, a)


def _level_counts(patterns: Iterable[tuple[tuple[Level, ...], float]]) -> list[list[float]]:
    counts = [[0.0, 0.0, 0.0] for _ in range(_N)]
    for levels, weight in patterns:
        for f, level in enumerate(levels):
            if level:
                counts[f][level - 1] += weight
    return counts


def _largest_change(new: Sequence[Sequence[float]], old: Sequence[Sequence[float]]) -> float:
    return max(
        abs(a - b) for row, was in zip(new, old, strict=True) for a, b in zip(row, was, strict=True)
    )


def fit(
    comparisons: Sequence[Comparison],
    config: LinkageConfig = DEFAULT_CONFIG,
    *,
    random_levels: Sequence[tuple[Level, ...]] = (),
) -> Model:
    """Estimate m, u and lambda by EM over the candidate pairs' levels (see ``fit_patterns``)."""
    patterns: Counter[tuple[Level, ...]] = Counter(c.levels for c in comparisons)
    return fit_patterns(patterns, config, random_levels=random_levels)


def fit_patterns(
    patterns: Mapping[tuple[Level, ...], float],
    config: LinkageConfig = DEFAULT_CONFIG,
    *,
    random_levels: Sequence[tuple[Level, ...]] = (),
) -> Model:
    """Estimate m, u and lambda by EM over counts of level patterns.

    ``random_levels`` are the levels of random record pairs: when given, u starts
    from them, and stays there if ``em.hold_u``; otherwise EM moves u to the
    non-matches among the blocked pairs, which agree far more than random pairs
    do (family members, namesakes), so weights fit the pairs actually scored.
    Deterministic for a given multiset of comparisons.
    """
    em = config.em
    alpha = em.pseudo_count
    counted = sorted((levels, float(count)) for levels, count in patterns.items() if count > 0)
    m: Table = tuple(em.m_prior for _ in range(_N))
    u: Table = tuple(em.u_prior for _ in range(_N))
    fixed_u = len(random_levels) > 0
    if fixed_u:
        counts = _level_counts((levels, 1.0) for levels in random_levels)
        u = tuple(_smoothed(c, em.u_prior, alpha) for c in counts)
    lam = em.match_prior
    iterations, converged = 0, not counted
    while counted and iterations < em.max_iterations:
        iterations += 1
        log_m = [[math.log(p) for p in row] for row in m]
        log_u = [[math.log(p) for p in row] for row in u]
        prior = math.log(lam / (1.0 - lam))
        matched: list[tuple[tuple[Level, ...], float]] = []
        unmatched: list[tuple[tuple[Level, ...], float]] = []
        total_match = 0.0
        total = 0.0
        for levels, count in counted:
            odds = prior
            for f, level in enumerate(levels):
                if level:
                    odds += log_m[f][level - 1] - log_u[f][level - 1]
            posterior = 1.0 / (1.0 + math.exp(-odds)) if odds > -700 else 0.0
            anchor = _anchor(levels) if em.anchor_identifiers else None
            if anchor is not None:
                posterior = anchor
            matched.append((levels, count * posterior))
            unmatched.append((levels, count * (1.0 - posterior)))
            total_match += count * posterior
            total += count
        new_m = tuple(_smoothed(c, em.m_prior, alpha) for c in _level_counts(matched))
        new_u = u
        if not em.hold_u or not fixed_u:
            new_u = tuple(_smoothed(c, em.u_prior, alpha) for c in _level_counts(unmatched))
        new_lam = min(max(total_match / total, 1e-9), 1.0 - 1e-9)
        change = max(abs(new_lam - lam), _largest_change(new_m, m), _largest_change(new_u, u))
        m, u, lam = new_m, new_u, new_lam
        if change < em.tolerance:
            converged = True
            break
    return Model(
        m=m,
        u=u,
        match_prior=lam,
        thresholds=config.thresholds,
        strong_rules=config.strong_rules,
        decisive_weight=config.decisive_weight,
        require_anchor=config.require_dob_or_identifier,
        iterations=iterations,
        converged=converged,
    )


def estimate_quality(scored: Iterable[tuple[float, Band]]) -> tuple[float, float]:
    """(expected precision, expected recall) from (posterior, band) of every candidate pair.

    Precision is 1.0 when nothing is banded match, recall 1.0 when no pair has
    any posterior mass: nothing claimed, nothing missed. See the module
    docstring for what these estimates cannot see.
    """
    matched_sum = 0.0
    matched = 0
    total = 0.0
    for posterior, band in scored:
        total += posterior
        if band is Band.MATCH:
            matched_sum += posterior
            matched += 1
    precision = matched_sum / matched if matched else 1.0
    recall = matched_sum / total if total > 0 else 1.0
    return precision, recall
