"""An RFC 9162 Merkle tree whose node hashes live in a store, for the audit log.

A node ``(level, index)`` is the hash of the perfect subtree over leaves
``[index * 2**level, (index + 1) * 2**level)``; level 0 holds the leaf hashes. The store
keeps every *complete* perfect subtree, so the root of any earlier size and every proof
fold O(log n) stored nodes. Each read works out all the keys it needs first and asks the
store once, so a database-backed store answers a proof with one query.

Errors: ``ValidationError`` with code ``proof_request_invalid`` for an index or size out
of range and for a node the store does not hold (the size is beyond the log, or the
store is incomplete); a missing node is never treated as zero. Proofs equal those of
``audit.merkle.InMemoryTree`` and check with ``verify_inclusion`` / ``verify_consistency``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Final, Protocol

from audit.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    consistency_path,
    hash_children,
    inclusion_path,
)
from broker.errors import ValidationError

NodeKey = tuple[int, int]
PROOF_REQUEST_INVALID: Final = "proof_request_invalid"
# Returned while only collecting keys; never reaches a caller.
_PLACEHOLDER: Final = bytes(HASH_SIZE)


class NodeStore(Protocol):
    """Where node hashes live: keyed by ``(level, index)``, written once, never changed."""

    def get_nodes(self, keys: Collection[NodeKey]) -> Mapping[NodeKey, bytes]:
        """Return the hashes of those ``keys`` the store holds; missing keys are absent."""
        ...

    def put_nodes(self, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        """Store ``(level, index, hash)`` triples, as ``nodes_for_append`` returns them."""
        ...


class MemoryNodeStore:
    """A dict-backed ``NodeStore`` for tests and the benchmark; not thread-safe."""

    def __init__(self) -> None:
        self.nodes: dict[NodeKey, bytes] = {}

    def get_nodes(self, keys: Collection[NodeKey]) -> Mapping[NodeKey, bytes]:
        """Return the held hashes of ``keys``; missing keys are absent."""
        return {key: self.nodes[key] for key in keys if key in self.nodes}

    def put_nodes(self, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        """Store ``(level, index, hash)`` triples, replacing any held under the same key."""
        for level, index, value in nodes:
            self.nodes[level, index] = value

    def level_range(self, level: int, first: int, last: int) -> dict[int, bytes]:
        """Held nodes of one level with index in [first, last]."""
        return {ix: h for (lv, ix), h in self.nodes.items() if lv == level and first <= ix <= last}

    def count(self) -> int:
        """How many nodes are held."""
        return len(self.nodes)


def _invalid(message: str) -> ValidationError:
    return ValidationError(message, code=PROOF_REQUEST_INVALID)


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ValidationError(f"{what} must be {HASH_SIZE} bytes, got {len(value)}")


def _mth(start: int, end: int, node: Callable[[NodeKey], bytes]) -> bytes:
    """MTH of leaves [start, end) by the RFC split, asking ``node`` for each perfect part."""
    width = end - start
    if width & (width - 1) == 0 and start % width == 0:
        return node((width.bit_length() - 1, start // width))
    split = 1 << ((width - 1).bit_length() - 1)
    return hash_children(_mth(start, start + split, node), _mth(start + split, end, node))


class _Nodes:
    """A ``NodeSource`` that first records the keys it is asked for, then serves them."""

    def __init__(self) -> None:
        self.wanted: set[NodeKey] = set()
        self.fetched: Mapping[NodeKey, bytes] | None = None

    def _node(self, key: NodeKey) -> bytes:
        if self.fetched is None:
            self.wanted.add(key)
            return _PLACEHOLDER
        return self.fetched[key]  # the second pass asks for exactly the keys fetched

    def subtree_hash(self, start: int, end: int) -> bytes:
        return _mth(start, end, self._node)

    def fetch(self, store: NodeStore, size: int) -> None:
        """Read every recorded key in one call; the last leaf proves ``size`` is held."""
        self.wanted.add((0, size - 1))
        self.fetched = store.get_nodes(self.wanted)
        _require(self.wanted, self.fetched, f"the store holds fewer than {size} leaves")


def _require(keys: Collection[NodeKey], held: Mapping[NodeKey, bytes], why: str) -> None:
    """Raise for the lowest key not held, so that no missing node is ever read as zero."""
    missing = sorted(key for key in keys if key not in held)
    if missing:
        level, index = missing[0]
        raise _invalid(f"node at level {level}, index {index} is missing: {why}, or is incomplete")


def _check_size(size: int) -> None:
    if size < 0:
        raise _invalid(f"tree size {size} is negative")


def root_at(store: NodeStore, size: int) -> bytes:
    """Return the RFC 9162 root (MTH) of the first ``size`` leaves; ``EMPTY_ROOT`` for 0.

    One ``get_nodes`` call of at most log2(size) + 2 keys; raises ``ValidationError``
    if the store does not hold ``size`` leaves.
    """
    _check_size(size)
    if size == 0:
        return EMPTY_ROOT
    nodes = _Nodes()
    nodes.subtree_hash(0, size)
    nodes.fetch(store, size)
    return nodes.subtree_hash(0, size)


def inclusion_proof_at(store: NodeStore, index: int, size: int) -> list[bytes]:
    """Return the inclusion proof of leaf ``index`` in the first ``size`` leaves.

    The deepest sibling comes first, as ``verify_inclusion`` expects. One ``get_nodes``
    call; ``ValidationError`` if ``index`` is not below ``size`` or ``size`` is not held.
    """
    _check_size(size)
    if not 0 <= index < size:
        raise _invalid(f"leaf index {index} is outside a tree of {size} leaves")
    nodes = _Nodes()
    inclusion_path(nodes, index, size)
    nodes.wanted.add((0, index))  # a proof is only for a leaf the store really holds
    nodes.fetch(store, size)
    return inclusion_path(nodes, index, size)


def consistency_proof_at(store: NodeStore, old_size: int, new_size: int) -> list[bytes]:
    """Return the proof that the first ``old_size`` leaves are a prefix of ``new_size``.

    Equal sizes give an empty proof (the store must still hold them). One ``get_nodes``
    call; ``ValidationError`` if ``old_size`` is 0 or exceeds ``new_size``, or
    ``new_size`` is not held.
    """
    if old_size < 1:
        raise _invalid(f"old tree size {old_size} must be at least 1 (empty trees prove nothing)")
    if old_size > new_size:
        raise _invalid(f"old tree size {old_size} exceeds new tree size {new_size}")
    nodes = _Nodes()
    consistency_path(nodes, old_size, new_size)
    nodes.fetch(store, new_size)
    return consistency_path(nodes, old_size, new_size)


def nodes_for_append(
    store: NodeStore, size: int, leaf_hashes: Sequence[bytes]
) -> list[tuple[int, int, bytes]]:
    """Return every node that appending ``leaf_hashes`` after ``size`` leaves completes.

    The result holds the new leaves (level 0) and each interior node they complete, as
    ``(level, index, hash)`` ready for ``put_nodes``; the store is not written. Reads
    only the right-edge left siblings the new nodes need (at most log2(size) + 1), in at
    most one ``get_nodes`` call. ``ValidationError`` if one of them is missing.
    """
    _check_size(size)
    for position, leaf_hash in enumerate(leaf_hashes):
        _check_hash(leaf_hash, f"leaf hash {position}")
    end = size + len(leaf_hashes)
    # A held node (h, size >> h - 1) is needed exactly when its right sibling,
    # (h, size >> h), is completed by this batch.
    needed = [
        (level, (size >> level) - 1)
        for level in range(size.bit_length())
        if (size >> level) & 1 and (end >> level) > (size >> level)
    ]
    left: dict[int, bytes] = {}
    if needed:
        held = store.get_nodes(needed)
        _require(needed, held, f"the store holds fewer than {size} leaves")
        left = {level: held[level, index] for level, index in needed}
    created: list[tuple[int, int, bytes]] = []
    for offset, leaf_hash in enumerate(leaf_hashes):
        node, level, index = leaf_hash, 0, size + offset
        created.append((0, index, node))
        while index & 1:
            node = hash_children(left.pop(level), node)
            level, index = level + 1, index >> 1
            created.append((level, index, node))
        left[level] = node
    return created


class StreamingTree:
    """Rebuilds a tree leaf by leaf in O(log n) memory, for full verification of a log.

    Keeps only the roots of the perfect subtrees along the right edge, largest first;
    each ``add`` costs amortised one interior hash. Not thread-safe.
    """

    def __init__(self) -> None:
        self.size = 0
        self._edge: list[bytes] = []

    def add(self, leaf_hash: bytes) -> None:
        """Add one leaf hash (not the entry itself); ``ValidationError`` if not 32 bytes."""
        if len(leaf_hash) != HASH_SIZE:
            raise ValidationError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf_hash)}")
        edge = self._edge
        edge.append(leaf_hash)
        size = self.size
        while size & 1:
            right = edge.pop()
            edge[-1] = hash_children(edge[-1], right)
            size >>= 1
        self.size += 1

    def root(self) -> bytes:
        """Return the root of the leaves added so far; ``EMPTY_ROOT`` before the first."""
        if not self._edge:
            return EMPTY_ROOT
        node = self._edge[-1]
        for left in reversed(self._edge[:-1]):
            node = hash_children(left, node)
        return node
