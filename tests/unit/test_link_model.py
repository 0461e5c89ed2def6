"""Fellegi-Sunter model: EM recovers separable classes, scores add up, rules decide, bands cut."""

from __future__ import annotations

import math
import random

import pytest

from broker.link.config import DEFAULT_CONFIG, LinkageConfig
from broker.link.model import Model, estimate_quality, fit, probability, strong_disagreement
from broker.link.types import COMPARED_FIELDS, Band, Comparison, Level

A, N, D, M = Level.AGREE, Level.NEAR, Level.DISAGREE, Level.MISSING


def _population(seed: int, matches: int, non_matches: int) -> list[Comparison]:
    """Matches agree on each field with p 0.9, non-matches with p 0.1; independent fields."""
    rng = random.Random(seed)
    out = []
    for i in range(matches + non_matches):
        p_agree = 0.9 if i < matches else 0.1
        levels = tuple(A if rng.random() < p_agree else D for _ in COMPARED_FIELDS)
        out.append(Comparison(i, i + 1, levels, None))
    return out


UNANCHORED = LinkageConfig.model_validate({"em": {"anchor_identifiers": False}})


def test_em_recovers_a_separable_mixture() -> None:
    model = fit(_population(1, 3000, 7000), UNANCHORED)
    assert model.converged
    assert model.match_prior == pytest.approx(0.3, abs=0.02)
    for f in range(len(COMPARED_FIELDS)):
        m_agree = model.m[f][2] / (model.m[f][0] + model.m[f][2])
        u_agree = model.u[f][2] / (model.u[f][0] + model.u[f][2])
        assert m_agree == pytest.approx(0.9, abs=0.03)
        assert u_agree == pytest.approx(0.1, abs=0.03)
        assert model.weights[f][2] > 2.5
        assert model.weights[f][0] < -2.5


def test_fit_is_independent_of_comparison_order() -> None:
    comparisons = _population(2, 500, 1500)
    shuffled = comparisons[:]
    random.Random(9).shuffle(shuffled)
    assert fit(comparisons) == fit(shuffled)
    assert fit(comparisons, UNANCHORED) == fit(shuffled, UNANCHORED)


def test_national_identifiers_anchor_the_classes() -> None:
    """Siblings (same family name and postcode, different NHS numbers) teach u, not m."""
    siblings = (D, M, D, A, D, A, A)
    same = (A, M, A, A, A, A, A)
    unknown = (M, M, D, A, D, A, A)
    counts = [(siblings, 600), (same, 300), (unknown, 100)]
    comparisons = [Comparison(i, i + 1, levels) for levels, n in counts for i in range(n)]
    anchored = fit(comparisons)
    # Share of matches: the 300 anchored, plus whatever of the 100 unknowns look like them.
    assert 0.29 < anchored.match_prior < 0.41
    assert anchored.score(unknown)[1] < 0.01  # the siblings' pattern bar the NHS numbers
    assert anchored.weights[4][0] < -5  # a different date of birth is strong evidence
    assert anchored.weights[0][0] < -5  # so is a different NHS number
    assert anchored.score(same)[1] > 0.999


def test_fit_on_nothing_gives_the_priors() -> None:
    model = fit([])
    assert model.iterations == 0
    assert model.match_prior == DEFAULT_CONFIG.em.match_prior
    assert model.m[0] == DEFAULT_CONFIG.em.m_prior


def test_hold_u_keeps_the_random_pair_estimate() -> None:
    config = LinkageConfig.model_validate({"em": {"hold_u": True, "pseudo_count": 1.0}})
    random_levels = [tuple(D for _ in COMPARED_FIELDS)] * 99
    model = fit(_population(3, 300, 700), config, random_levels=random_levels)
    # 99 disagreements plus one pseudo-count spread over u_prior (0.85, 0.10, 0.05).
    assert model.u[0] == pytest.approx((99.85 / 100, 0.10 / 100, 0.05 / 100))


def _model() -> Model:
    return fit(_population(4, 2000, 6000))


def test_score_is_the_prior_plus_field_weights_and_missing_adds_nothing() -> None:
    model = _model()
    levels = (M, M, A, D, N, M, A)
    weight, prob = model.score(levels)
    expected = math.log2(model.match_prior / (1 - model.match_prior))
    expected += model.weights[2][2] + model.weights[3][0] + model.weights[4][1]
    expected += model.weights[6][2]
    assert weight == pytest.approx(expected)
    assert prob == pytest.approx(2**expected / (1 + 2**expected))
    all_missing, _ = model.score(tuple(M for _ in COMPARED_FIELDS))
    assert all_missing == pytest.approx(math.log2(model.match_prior / (1 - model.match_prior)))


def test_a_shared_strong_key_is_decisive() -> None:
    model = _model()
    weak = (A, M, D, N, N, D, D)
    assert model.score(weak)[0] < model.decisive_weight
    assert model.score(weak, "nhs")[0] == model.decisive_weight
    assert model.band(model.score(weak, "nhs")[1]) is Band.MATCH
    # A medium key is not decisive.
    assert model.score(weak, "name_dob_postcode") == model.score(weak)


def test_a_strong_disagreement_overrides_a_strong_key() -> None:
    model = _model()
    levels = (D, A, A, A, A, A, A)  # shared UPN, different valid NHS numbers
    assert strong_disagreement(levels)
    assert model.score(levels, "upn") == model.score(levels)
    twins_apart = (M, A, D, A, D, A, A)  # different given names and dates of birth
    assert strong_disagreement(twins_apart)
    assert model.score(twins_apart, "upn") == model.score(twins_apart)
    assert not strong_disagreement((M, A, D, A, N, A, A))


def test_bands_follow_the_thresholds() -> None:
    model = _model()
    t = model.thresholds
    assert model.band(t.match_at) is Band.MATCH
    assert model.band(math.nextafter(t.match_at, 0)) is Band.POSSIBLE
    assert model.band(t.possible_at) is Band.POSSIBLE
    assert model.band(math.nextafter(t.possible_at, 0)) is Band.NON_MATCH


def test_weights_are_monotone_per_field_even_when_em_is_not() -> None:
    model = Model(
        m=tuple((0.1, 0.1, 0.8) for _ in COMPARED_FIELDS),
        u=tuple((0.5, 0.49, 0.01) for _ in COMPARED_FIELDS),
        match_prior=0.5,
    )
    # log2(0.1/0.5) = -2.32 for disagree; near alone would be log2(0.1/0.49) = -2.29.
    disagree, near, agree = model.weights[0]
    assert disagree == pytest.approx(math.log2(0.2))
    assert near >= disagree
    assert agree == pytest.approx(math.log2(80))
    lowered = Model(m=((0.1, 0.01, 0.89),) * 7, u=((0.5, 0.4, 0.1),) * 7, match_prior=0.5)
    assert lowered.weights[0][1] == lowered.weights[0][0]


def test_probability_is_stable_at_the_extremes() -> None:
    assert probability(0.0) == 0.5
    assert probability(2000.0) == 1.0
    assert probability(-2000.0) == 0.0
    assert probability(3.0) == pytest.approx(8 / 9)


def test_estimated_quality_is_the_documented_ratio() -> None:
    scored = [(0.99, Band.MATCH), (0.97, Band.MATCH), (0.6, Band.POSSIBLE), (0.04, Band.NON_MATCH)]
    precision, recall = estimate_quality(scored)
    assert precision == pytest.approx(0.98)
    assert recall == pytest.approx(1.96 / 2.6)
    assert estimate_quality([]) == (1.0, 1.0)
    assert estimate_quality([(0.3, Band.POSSIBLE)]) == (1.0, 0.0)


def test_without_a_birth_date_identifier_or_postcode_a_pair_is_at_most_possible() -> None:
    model = _model()
    names_only = (M, M, A, A, M, A, D)
    weight, prob = model.score(names_only)
    assert prob < model.thresholds.match_at
    assert model.band(prob) is Band.POSSIBLE
    free = Model(m=model.m, u=model.u, match_prior=model.match_prior, require_anchor=False)
    assert free.score(names_only)[0] > weight
    assert free.band(free.score(names_only)[1]) is Band.MATCH
    with_dob = (M, M, A, A, A, A, A)
    assert model.score(with_dob) == free.score(with_dob)
    at_one_postcode = (M, M, A, A, M, A, A)
    assert model.score(at_one_postcode) == free.score(at_one_postcode)
