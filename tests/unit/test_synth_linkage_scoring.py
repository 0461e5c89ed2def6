"""The linkage bench's truth scoring: pairwise measures, merged person pairs, the baseline."""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import pytest

from bench.linkage_truth import (
    PairScore,
    exact_key_clusters,
    merged_person_pairs,
    missed_by_mistake,
    pairwise_score,
    town_truth,
)
from broker.synth import generate_town

TRUTH = {"a1": "P1", "a2": "P1", "a3": "P1", "b1": "P2", "b2": "P2", "c1": "P3"}


def _brute_force(clusters: dict[str, str], truth: dict[str, str]) -> PairScore:
    pairs = list(combinations(sorted(truth), 2))
    predicted = {p for p in pairs if clusters[p[0]] == clusters[p[1]]}
    true = {p for p in pairs if truth[p[0]] == truth[p[1]]}
    return PairScore(len(true), len(predicted), len(true & predicted))


def test_perfect_clusters_score_one_everywhere() -> None:
    score = pairwise_score(dict(TRUTH), TRUTH)
    assert score == PairScore(true_pairs=4, predicted_pairs=4, correct_pairs=4)
    assert (score.precision, score.recall, score.f1) == (1.0, 1.0, 1.0)


def test_singletons_find_nothing_and_claim_nothing() -> None:
    score = pairwise_score({ref: ref for ref in TRUTH}, TRUTH)
    assert score == PairScore(true_pairs=4, predicted_pairs=0, correct_pairs=0)
    assert score.precision == 1.0
    assert score.recall == 0.0
    assert score.f1 == 0.0


def test_one_false_merge_and_one_split_count_exactly() -> None:
    # a3 split off alone (loses 2 true pairs); P2 merged with P3 (one false pair each of b1, b2).
    clusters = {"a1": "x", "a2": "x", "a3": "y", "b1": "z", "b2": "z", "c1": "z"}
    score = pairwise_score(clusters, TRUTH)
    assert score == PairScore(true_pairs=4, predicted_pairs=4, correct_pairs=2)
    assert score.precision == pytest.approx(0.5)
    assert score.recall == pytest.approx(0.5)
    assert score.f1 == pytest.approx(0.5)


def test_everything_in_one_cluster() -> None:
    score = pairwise_score(dict.fromkeys(TRUTH, "all"), TRUTH)
    assert score == PairScore(true_pairs=4, predicted_pairs=15, correct_pairs=4)
    assert score.precision == pytest.approx(4 / 15)


@pytest.mark.parametrize(
    "labels",
    ["xxyyzz", "xyzxyz", "xxxxxy", "abcdef", "aabbba"],
)
def test_contingency_counting_equals_brute_force(labels: str) -> None:
    clusters = dict(zip(sorted(TRUTH), labels, strict=True))
    assert pairwise_score(clusters, TRUTH) == _brute_force(clusters, TRUTH)


def test_maps_with_different_refs_are_refused() -> None:
    with pytest.raises(ValueError, match="same refs"):
        pairwise_score({"a1": "x"}, TRUTH)


def test_empty_maps_score_one() -> None:
    score = pairwise_score({}, {})
    assert (score.precision, score.recall) == (1.0, 1.0)


def test_merged_person_pairs_counts_pairs_sharing_any_cluster() -> None:
    clusters = {"a1": "x", "a2": "x", "a3": "y", "b1": "y", "b2": "z", "c1": "w"}
    pairs = [("P1", "P2"), ("P2", "P3"), ("P1", "P3"), ("P9", "P1")]
    # P1 and P2 meet in cluster y (a3 with b1); no other pair meets; P9 has no records.
    assert merged_person_pairs(clusters, TRUTH, pairs) == 1
    assert merged_person_pairs(dict(TRUTH), TRUTH, pairs) == 0


def test_exact_key_clusters_group_equal_keys_and_leave_missing_alone() -> None:
    keys = {"r3": "k1", "r1": "k1", "r2": None, "r4": "k2", "r5": None, "r6": "k2"}
    assert exact_key_clusters(keys) == {
        "r1": "r1", "r3": "r1", "r2": "r2", "r5": "r5", "r4": "r4", "r6": "r4",
    }  # fmt: skip


def test_town_truth_names_every_record_twin_pair_and_stranger_pair() -> None:
    town = generate_town(seed=1, people=3000, profile="clean")
    truth = town_truth(town)
    assert len(truth.persons) == len(town.truth)
    people = {p.person_id: p for p in town.people}
    assert truth.twin_pairs
    for a, b in truth.twin_pairs:
        assert people[a].twin
        assert people[b].twin
        assert people[a].household_id == people[b].household_id
    twin_set = set(truth.twin_pairs)
    assert truth.sibling_pairs
    for a, b in truth.sibling_pairs:
        assert (a, b) not in twin_set
        assert a < b
        assert people[a].household_id == people[b].household_id
    sizes = Counter(p.household_id for p in town.people)
    every_pair = sum(n * (n - 1) // 2 for n in sizes.values())
    assert len(truth.sibling_pairs) == every_pair - len(truth.twin_pairs)
    deliberate = {tuple(sorted((p.person_id, p.namesake_of))) for p in town.people if p.namesake_of}
    assert deliberate
    assert deliberate <= set(truth.stranger_pairs)
    for a, b in truth.stranger_pairs:
        left, right = people[a], people[b]
        assert left.household_id != right.household_id
        assert (left.given_name, left.family_name, left.date_of_birth) == (
            right.given_name,
            right.family_name,
            right.date_of_birth,
        )


def test_missed_by_mistake_counts_each_true_pair_under_each_mistake_it_carries() -> None:
    # P1's pairs: a1-a2 kept, a1-a3 and a2-a3 missed (a3 split); P2's b1-b2 kept.
    clusters = {"a1": "x", "a2": "x", "a3": "y", "b1": "z", "b2": "z", "c1": "w"}
    mistakes = {
        "a3": frozenset({"name_typo"}),
        "a1": frozenset({"dob_swap"}),
        "b1": frozenset({"name_typo", "postcode_old"}),
    }
    assert missed_by_mistake(clusters, TRUTH, mistakes) == {
        "dob_swap": (1, 2),  # a1-a2 kept, a1-a3 missed
        "name_typo": (2, 3),  # a1-a3, a2-a3 missed; b1-b2 kept
        "postcode_old": (0, 1),
    }
    assert missed_by_mistake(clusters, TRUTH, {})["none"] == (2, 4)
