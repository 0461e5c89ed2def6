"""Every candidate pair of a batch compared, held compactly, in parallel where asked.

A million records make millions of candidate pairs, most of them plainly
different people; holding each as objects would cost gigabytes. Each pair is
kept as two positions and one code: the comparison levels two bits a field, and
the shared rule's place in the cascade above them. Scoring is then done once
per distinct code, not once per pair.

With ``workers`` above one, the blocking index is built once and forked
processes compare disjoint ranges of left positions (each right position above
its left), so the pairs and their order are exactly those of
``broker.link.blocking.candidate_pairs``.
"""

from __future__ import annotations

import multiprocessing
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from broker.link.blocking import BlockIndex, build_index
from broker.link.types import COMPARED_FIELDS, EncodedRecord, Level

Levels = tuple[Level, ...]
CompareFn = Callable[[EncodedRecord, EncodedRecord], tuple[Levels, str | None]]
PairsFn = Callable[[Sequence[EncodedRecord]], Iterable[tuple[int, int]]]

_FIELDS = len(COMPARED_FIELDS)
RULE_SHIFT = 2 * _FIELDS
_CHUNK = 4096
# Set in the parent before forking; workers read it (never pickled).
_SHARED: tuple[Sequence[EncodedRecord], BlockIndex, CompareFn, dict[str, int]] | None = None


def encode_levels(levels: Levels, rule_index: int) -> int:
    """One int for a pair's levels and rule (0: none; k: the k-th cascade key)."""
    code = rule_index << RULE_SHIFT
    for f, level in enumerate(levels):
        code |= int(level) << (2 * f)
    return code


@dataclass(frozen=True, slots=True)
class PairTable:
    """Candidate pairs as parallel arrays: left and right positions, and each pair's code."""

    left: array[int]
    right: array[int]
    codes: array[int]
    rules: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.codes)

    def decode(self, code: int) -> tuple[Levels, str | None]:
        """The levels and rule a code stands for."""
        levels = tuple(Level((code >> (2 * f)) & 3) for f in range(_FIELDS))
        index = code >> RULE_SHIFT
        return levels, (self.rules[index - 1] if index else None)


def _coder(rules: dict[str, int]) -> Callable[[Levels, str | None], int]:
    cache: dict[tuple[Levels, str | None], int] = {}

    def code(levels: Levels, rule: str | None) -> int:
        key = (levels, rule)
        found = cache.get(key)
        if found is None:
            if rule is not None and rule not in rules:
                raise ValueError("compare reported a rule that is not in the cascade")
            found = encode_levels(levels, rules[rule] if rule is not None else 0)
            cache[key] = found
        return found

    return code


def _compare_range(bounds: tuple[int, int]) -> tuple[bytes, bytes, bytes]:
    assert _SHARED is not None  # set by compare_all before any worker starts
    records, index, compare, rules = _SHARED
    code = _coder(rules)
    left, right, codes = array("I"), array("I"), array("I")
    for i in range(*bounds):
        record = records[i]
        for j in sorted(index.candidates(record)):
            if j > i:
                levels, rule = compare(record, records[j])
                left.append(i)
                right.append(j)
                codes.append(code(levels, rule))
    return left.tobytes(), right.tobytes(), codes.tobytes()


def compare_all(
    records: Sequence[EncodedRecord],
    compare: CompareFn,
    rules: Sequence[str],
    *,
    pairs: PairsFn | None = None,
    workers: int = 1,
) -> PairTable:
    """Compare the candidate pairs of ``records`` (``pairs``, or the blocking index's).

    ``rules`` are the cascade's key names, strongest first. ``workers`` above
    one forks that many processes (where the platform can fork).
    """
    global _SHARED  # noqa: PLW0603 - handed to forked workers without pickling
    numbered = {name: k + 1 for k, name in enumerate(rules)}
    names = tuple(rules)
    if pairs is not None:
        code = _coder(numbered)
        left, right, codes = array("I"), array("I"), array("I")
        for i, j in pairs(records):
            levels, rule = compare(records[i], records[j])
            left.append(i)
            right.append(j)
            codes.append(code(levels, rule))
        return PairTable(left, right, codes, names)
    _SHARED = (records, build_index(records), compare, numbered)
    try:
        n = len(records)
        ranges = [(start, min(start + _CHUNK, n)) for start in range(0, n, _CHUNK)]
        can_fork = "fork" in multiprocessing.get_all_start_methods()
        if workers > 1 and can_fork and len(ranges) > 1:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                parts = pool.map(_compare_range, ranges, chunksize=1)
        else:
            parts = [_compare_range(r) for r in ranges]
    finally:
        _SHARED = None
    table = PairTable(array("I"), array("I"), array("I"), names)
    for left_bytes, right_bytes, code_bytes in parts:
        table.left.frombytes(left_bytes)
        table.right.frombytes(right_bytes)
        table.codes.frombytes(code_bytes)
    return table
