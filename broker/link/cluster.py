"""Subjects from matched pairs, guarded against chaining.

Match-band pairs are joined strongest first (weight, then the two refs, so the
order never depends on input order). Before two clusters merge, every record of
one is checked against every record of the other: if any two strongly
disagree, the merge is refused and the pair is recorded as a possible match
for people to resolve. Strong disagreement (``GuardSettings``): different
valid NHS numbers; different valid UPNs; different given names at the same
household with family names not disagreeing (twins, siblings); different dates
of birth and different given names anywhere. A record matched about equally
well (within ``GuardSettings.ambiguity_margin`` bits) to two records that may
not share a cluster is ambiguous: both links are refused. Records of one source
link to each other like any others (within-source duplicates).

A cluster's id is a digest of its smallest ref: stable, independent of input
order, and the same however the records arrived.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from broker.link.config import DEFAULT_CONFIG, GuardSettings
from broker.link.types import COMPARED_FIELDS, EncodedRecord, Level

_GIVEN = COMPARED_FIELDS.index("given_name")
_FAMILY = COMPARED_FIELDS.index("family_name")
_DOB = COMPARED_FIELDS.index("date_of_birth")

#: The token names the guard reads (made by ``broker.link.encode``).
NHS_TOKEN = "nhs"  # noqa: S105 - a token name, not a secret
UPN_TOKEN = "upn"  # noqa: S105
HOUSEHOLD_TOKEN = "household"  # noqa: S105
DOB_TOKEN = "dob"  # noqa: S105
GIVEN_TOKEN = "given"  # noqa: S105

CompareFn = Callable[[EncodedRecord, EncodedRecord], tuple[tuple[Level, ...], str | None]]
ScoreFn = Callable[[tuple[Level, ...], str | None], tuple[float, float]]


def cluster_id(smallest_ref: str) -> str:
    """The id of the cluster whose smallest ref is ``smallest_ref``."""
    return "c_" + hashlib.sha256(smallest_ref.encode("utf-8")).hexdigest()[:20]


class Guard:
    """Decides whether two records strongly disagree (may never share a cluster)."""

    def __init__(
        self,
        records: Sequence[EncodedRecord],
        compare: CompareFn,
        settings: GuardSettings = DEFAULT_CONFIG.guard,
        score: ScoreFn | None = None,
    ) -> None:
        self._records = records
        self._compare = compare
        self._s = settings
        self._score = score if settings.min_pair_probability is not None else None

    def conflict(self, a: int, b: int, levels: tuple[Level, ...] | None = None) -> bool:
        if self._strongly_disagree(a, b, levels):
            return True
        if self._score is None or levels is not None:
            return False  # levels given: a linked pair, above the floor by definition
        found, rule = self._compare(self._records[a], self._records[b])
        floor = self._s.min_pair_probability
        return floor is not None and self._score(found, rule)[1] < floor

    def _strongly_disagree(self, a: int, b: int, levels: tuple[Level, ...] | None) -> bool:
        """True when records ``a`` and ``b`` must not be in one cluster.

        Besides the strong disagreements, with a ``score`` and
        ``min_pair_probability`` set, two records the model itself finds
        plainly different (a pair never linked directly, brought together
        through a third record with little data) may not share a cluster.

        ``levels`` are the pair's comparison levels when the caller has them;
        otherwise the pair is compared here.
        """
        s = self._s
        ta, tb = self._records[a].tokens, self._records[b].tokens
        same_identifier = False
        for enabled, name in ((s.different_nhs, NHS_TOKEN), (s.different_upn, UPN_TOKEN)):
            x, y = ta.get(name), tb.get(name)
            if x is not None and y is not None:
                if x != y and enabled:
                    return True
                same_identifier = same_identifier or x == y
        # Cheap token checks first: most pairs can fire neither rule, and the full
        # comparison costs more than everything else here.
        same_home = False
        if s.household_given and not same_identifier:
            home = ta.get(HOUSEHOLD_TOKEN)
            same_home = home is not None and home == tb.get(HOUSEHOLD_TOKEN)
        dob_a, dob_b = ta.get(DOB_TOKEN), tb.get(DOB_TOKEN)
        dob_differs = s.dob_and_given and dob_a is not None and dob_b is not None and dob_a != dob_b
        if not (same_home or dob_differs):
            return False
        given = ta.get(GIVEN_TOKEN)
        if given is None or given == tb.get(GIVEN_TOKEN) or GIVEN_TOKEN not in tb:
            return False  # given names missing or equal: neither rule can fire
        if levels is None:
            levels = self._compare(self._records[a], self._records[b])[0]
        if levels[_GIVEN] != Level.DISAGREE:
            return False
        # A shared valid NHS number or UPN outweighs a different given name at one
        # address (a name used at home, one agency's mistake); twins never share one.
        if same_home and levels[_FAMILY] != Level.DISAGREE:
            return True
        return dob_differs and levels[_DOB] == Level.DISAGREE


@dataclass(frozen=True, slots=True)
class Link:
    """A match-band pair offered to clustering: positions, weight and levels."""

    left: int
    right: int
    weight: float
    levels: tuple[Level, ...]


@dataclass(frozen=True, slots=True)
class Clustering:
    """Cluster id per position, and the links the guard refused (now possible matches)."""

    labels: tuple[str, ...]
    refused: tuple[Link, ...]


def order_links(links: Sequence[Link], refs: Sequence[str]) -> list[Link]:
    """Strongest first; ties by the pair's refs, so the order is independent of positions."""

    def key(link: Link) -> tuple[float, str, str]:
        x, y = refs[link.left], refs[link.right]
        return (-link.weight, x, y) if x < y else (-link.weight, y, x)

    return sorted(links, key=key)


def known_levels(links: Sequence[Link]) -> dict[tuple[int, int], tuple[Level, ...]]:
    """The levels of each linked pair, by its positions in order."""
    return {(x.left, x.right) if x.left < x.right else (x.right, x.left): x.levels for x in links}


def _ambiguous(links: Sequence[Link], guard: Guard, margin: float | None) -> set[Link]:
    """Links of one record to two that may not share a cluster, weights within ``margin``.

    Such a record (a namesake's, say) fits either equally well; joining the
    one whose ref happens to sort first would be a coin toss, so both wait.
    """
    if margin is None:
        return set()
    known = known_levels(links)
    by_record: dict[int, list[Link]] = {}
    for link in links:
        by_record.setdefault(link.left, []).append(link)
        by_record.setdefault(link.right, []).append(link)
    found: set[Link] = set()
    for record, own in by_record.items():
        if len(own) < 2:
            continue
        for i, first in enumerate(own):
            for second in own[i + 1 :]:
                if abs(first.weight - second.weight) > margin:
                    continue
                y = first.right if first.left == record else first.left
                z = second.right if second.left == record else second.left
                if guard.conflict(y, z, known.get((y, z) if y < z else (z, y))):
                    found.update((first, second))
    return found


def cluster(
    refs: Sequence[str], links: Sequence[Link], guard: Guard, margin: float | None = None
) -> Clustering:
    """Join ``links`` strongest first into clusters, refusing any merge the guard forbids.

    With a ``margin``, links that make a record ambiguous (``_ambiguous``) are
    refused before any joining.
    """
    parent = list(range(len(refs)))
    members: dict[int, list[int]] = {}
    refused: list[Link] = []

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:  # path compression keeps later finds short
            parent[i], i = root, parent[i]
        return root

    ordered = order_links(links, refs)
    known = known_levels(links)  # linked pairs need no second comparison
    ambiguous = _ambiguous(links, guard, margin)
    if ambiguous:
        refused.extend(link for link in ordered if link in ambiguous)
    for link in ordered:
        if link in ambiguous:
            continue
        ra, rb = find(link.left), find(link.right)
        if ra == rb:
            continue
        group_a = members.get(ra, [ra])
        group_b = members.get(rb, [rb])
        if len(group_a) == 1 and len(group_b) == 1:
            blocked = guard.conflict(link.left, link.right, link.levels)
        else:
            blocked = any(
                guard.conflict(a, b, known.get((a, b) if a < b else (b, a)))
                for a in group_a
                for b in group_b
            )
        if blocked:
            refused.append(link)
            continue
        if len(group_a) < len(group_b):
            ra, rb, group_a, group_b = rb, ra, group_b, group_a
        parent[rb] = ra
        group_a.extend(group_b)
        members[ra] = group_a
        members.pop(rb, None)
    smallest: dict[int, str] = {}
    for i, ref in enumerate(refs):
        root = find(i)
        if root not in smallest or ref < smallest[root]:
            smallest[root] = ref
    ids = {root: cluster_id(ref) for root, ref in smallest.items()}
    return Clustering(labels=tuple(ids[find(i)] for i in range(len(refs))), refused=tuple(refused))
