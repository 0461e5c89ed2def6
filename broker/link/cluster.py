"""Subjects from matched pairs, guarded against chaining.

Match-band pairs are joined strongest first (weight, then the two refs, so the
order never depends on input order). Before two clusters merge, every record of
one is checked against every record of the other: if any two strongly
disagree, the merge is refused and the pair is recorded as a possible match
for people to resolve. Strong disagreement (``GuardSettings``): different
valid NHS numbers; different valid UPNs; different given names at the same
household with family names not disagreeing (twins, siblings); different dates
of birth and different given names anywhere. Records of one source link to
each other like any others (within-source duplicates).

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

CompareFn = Callable[[EncodedRecord, EncodedRecord], tuple[tuple[Level, ...], str | None]]


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
    ) -> None:
        self._records = records
        self._compare = compare
        self._s = settings

    def conflict(self, a: int, b: int, levels: tuple[Level, ...] | None = None) -> bool:
        """True when records ``a`` and ``b`` must not be in one cluster.

        ``levels`` are the pair's comparison levels when the caller has them;
        otherwise the pair is compared here.
        """
        s = self._s
        ta, tb = self._records[a].tokens, self._records[b].tokens
        for enabled, name in ((s.different_nhs, NHS_TOKEN), (s.different_upn, UPN_TOKEN)):
            if enabled:
                x, y = ta.get(name), tb.get(name)
                if x is not None and y is not None and x != y:
                    return True
        if not (s.household_given or s.dob_and_given):
            return False
        if levels is None:
            levels = self._compare(self._records[a], self._records[b])[0]
        if levels[_GIVEN] != Level.DISAGREE:
            return False
        if s.household_given and levels[_FAMILY] != Level.DISAGREE:
            household = ta.get(HOUSEHOLD_TOKEN)
            if household is not None and household == tb.get(HOUSEHOLD_TOKEN):
                return True
        return s.dob_and_given and levels[_DOB] == Level.DISAGREE


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


def cluster(refs: Sequence[str], links: Sequence[Link], guard: Guard) -> Clustering:
    """Join ``links`` strongest first into clusters, refusing any merge the guard forbids."""
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

    for link in order_links(links, refs):
        ra, rb = find(link.left), find(link.right)
        if ra == rb:
            continue
        group_a = members.get(ra, [ra])
        group_b = members.get(rb, [rb])
        if len(group_a) == 1 and len(group_b) == 1:
            blocked = guard.conflict(link.left, link.right, link.levels)
        else:
            blocked = any(guard.conflict(a, b) for a in group_a for b in group_b)
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
