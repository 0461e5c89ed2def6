"""Scoring a linkage against the synthetic town's truth: pure functions, no engine.

Pairwise measures count pairs of records: a pair is predicted when both
records share a cluster, and true when both belong to one person. Counting is
done on the contingency table of (cluster, person), so it costs one pass over
the records however large the clusters are.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import combinations

from broker.synth import Town


@dataclass(frozen=True, slots=True)
class PairScore:
    """True, predicted and correctly predicted record pairs, and the measures from them."""

    true_pairs: int
    predicted_pairs: int
    correct_pairs: int

    @property
    def precision(self) -> float:
        """Correct over predicted; 1.0 when nothing was linked (no pair claimed, none wrong)."""
        return self.correct_pairs / self.predicted_pairs if self.predicted_pairs else 1.0

    @property
    def recall(self) -> float:
        """Correct over true; 1.0 when there was nothing to find."""
        return self.correct_pairs / self.true_pairs if self.true_pairs else 1.0

    @property
    def f1(self) -> float:
        """The harmonic mean of precision and recall."""
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def pairwise_score(clusters: Mapping[str, str], truth: Mapping[str, str]) -> PairScore:
    """Pairwise counts of a cluster map (ref to cluster) against a truth map (ref to person).

    Both maps must hold the same refs: a ref in one and not the other is a
    bench bug, so it raises ValueError rather than being scored quietly.
    """
    if clusters.keys() != truth.keys():
        raise ValueError("the cluster map and the truth map must hold the same refs")
    cells = Counter((clusters[ref], truth[ref]) for ref in clusters)
    by_cluster = Counter(clusters.values())
    by_person = Counter(truth.values())
    return PairScore(
        true_pairs=sum(_pairs(n) for n in by_person.values()),
        predicted_pairs=sum(_pairs(n) for n in by_cluster.values()),
        correct_pairs=sum(_pairs(n) for n in cells.values()),
    )


def merged_person_pairs(
    clusters: Mapping[str, str],
    truth: Mapping[str, str],
    person_pairs: Iterable[tuple[str, str]],
) -> int:
    """How many of ``person_pairs`` (two different people each) have records in one cluster."""
    held: dict[str, set[str]] = defaultdict(set)
    for ref, person in truth.items():
        held[person].add(clusters[ref])
    return sum(1 for a, b in person_pairs if held.get(a, set()) & held.get(b, set()))


def missed_by_mistake(
    clusters: Mapping[str, str],
    truth: Mapping[str, str],
    mistakes: Mapping[str, frozenset[str]],
) -> dict[str, tuple[int, int]]:
    """Per mistake: (true pairs missed, true pairs) among pairs where either record has it.

    A pair whose records carry no mistake counts under "none". A pair with two
    mistakes counts under each, so the rows do not add up to the whole.
    """
    by_person: dict[str, list[str]] = defaultdict(list)
    for ref in sorted(truth):
        by_person[truth[ref]].append(ref)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for refs in by_person.values():
        for a, b in combinations(refs, 2):
            missed = int(clusters[a] != clusters[b])
            for mistake in (mistakes.get(a, frozenset()) | mistakes.get(b, frozenset())) or {
                "none"
            }:
                counts[mistake][0] += missed
                counts[mistake][1] += 1
    return {name: (c[0], c[1]) for name, c in sorted(counts.items())}


def exact_key_clusters(keys: Mapping[str, str | None]) -> dict[str, str]:
    """Clusters of the exact-hash baseline: records with an equal key together, others alone.

    ``keys`` maps a ref to its one exact key (a token), or None where the
    record lacks a part of it. A cluster is named by its smallest ref.
    """
    first: dict[str, str] = {}
    for ref in sorted(keys):
        key = keys[ref]
        if key is not None:
            first.setdefault(key, ref)
    return {ref: first[key] if key is not None else ref for ref, key in keys.items()}


@dataclass(frozen=True, slots=True)
class TownTruth:
    """What the bench scores against: each record's person, and pairs of people never one."""

    persons: dict[str, str]  # ref ("agency:record_id") to person id
    twin_pairs: tuple[tuple[str, str], ...]
    stranger_pairs: tuple[tuple[str, str], ...]
    sibling_pairs: tuple[tuple[str, str], ...] = ()  # same household, not a twin pair
    mistakes: Mapping[str, frozenset[str]] = field(default_factory=dict)  # ref to mistakes


def ref_of(agency: str, record_id: str) -> str:
    """The ref the bench gives an agency's record (unique across the town)."""
    return f"{agency}:{record_id}"


def town_truth(town: Town) -> TownTruth:
    """The truth of a generated town, with every twin pair and same-name-same-birthday pair.

    Strangers are any two people in different households with the same true
    given name, family name and date of birth: the generator's deliberate
    namesakes and any that arose by chance.
    """
    persons = {ref_of(t["agency"], t["record_id"]): t["person_id"] for t in town.truth}
    twins: dict[str, list[str]] = defaultdict(list)
    homes: dict[str, list[str]] = defaultdict(list)
    same: dict[tuple[str, str, str], list[tuple[str, str]]] = defaultdict(list)
    for person in town.people:
        homes[person.household_id].append(person.person_id)
        if person.twin:
            twins[person.household_id].append(person.person_id)
        key = (person.given_name, person.family_name, person.date_of_birth.isoformat())
        same[key].append((person.household_id, person.person_id))
    twin_pairs = tuple(
        pair for members in twins.values() for pair in combinations(sorted(members), 2)
    )
    strangers = tuple(
        (min(a[1], b[1]), max(a[1], b[1]))
        for group in same.values()
        for a, b in combinations(sorted(group), 2)
        if a[0] != b[0]
    )
    twin_set = set(twin_pairs)
    siblings = tuple(
        pair
        for members in homes.values()
        for pair in combinations(sorted(members), 2)
        if pair not in twin_set
    )
    mistakes = {
        ref_of(t["agency"], t["record_id"]): frozenset(filter(None, t["corruptions"].split(";")))
        for t in town.truth
    }
    return TownTruth(persons, twin_pairs, strangers, siblings, mistakes)
