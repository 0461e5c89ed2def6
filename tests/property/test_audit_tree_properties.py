"""Random logs appended in random batches: audit.tree serves what InMemoryTree does, cheaply."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from audit.merkle import InMemoryTree, hash_leaf, verify_consistency, verify_inclusion
from audit.tree import (
    MemoryNodeStore,
    NodeKey,
    StreamingTree,
    consistency_proof_at,
    inclusion_proof_at,
    nodes_for_append,
    root_at,
)

TREES = st.lists(st.binary(max_size=8), min_size=1, max_size=80, unique=True).map(
    lambda entries: [hash_leaf(entry) for entry in entries]
)
BATCH_SIZES = st.lists(st.integers(1, 17), min_size=1, max_size=12)


class CountingStore(MemoryNodeStore):
    """Records every ``get_nodes`` call's keys."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[set[NodeKey]] = []

    def get_nodes(self, keys: Collection[NodeKey]) -> Mapping[NodeKey, bytes]:
        self.reads.append(set(keys))
        return super().get_nodes(keys)


def fill(leaves: list[bytes], batch_sizes: list[int]) -> CountingStore:
    """Append ``leaves`` in batches of the given sizes (cycled), checking each append's reads."""
    store = CountingStore()
    size, turn = 0, 0
    while size < len(leaves):
        batch = leaves[size : size + batch_sizes[turn % len(batch_sizes)]]
        store.reads.clear()
        store.put_nodes(nodes_for_append(store, size, batch))
        assert len(store.reads) <= 1
        for keys in store.reads:
            assert len(keys) <= math.ceil(math.log2(size + 1)) + 1
            assert all(level >= 0 and index >= 0 for level, index in keys)
        size, turn = size + len(batch), turn + 1
    store.reads.clear()
    return store


@settings(max_examples=100, deadline=None)
@given(leaves=TREES, batch_sizes=BATCH_SIZES)
def test_batches_of_any_sizes_store_the_same_nodes_as_one_by_one(
    leaves: list[bytes], batch_sizes: list[int]
) -> None:
    assert fill(leaves, batch_sizes).nodes == fill(leaves, [1]).nodes


@settings(max_examples=100, deadline=None)
@given(leaves=TREES, batch_sizes=BATCH_SIZES, data=st.data())
def test_roots_and_proofs_from_the_store_equal_the_in_memory_ones_and_verify(
    leaves: list[bytes], batch_sizes: list[int], data: st.DataObject
) -> None:
    store = fill(leaves, batch_sizes)
    reference = InMemoryTree(leaves)
    size = data.draw(st.integers(1, len(leaves)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    old_size = data.draw(st.integers(1, size), label="old_size")

    root = root_at(store, size)
    assert root == reference.root(size)
    assert root_at(store, old_size) == reference.root(old_size)

    inclusion = inclusion_proof_at(store, index, size)
    assert inclusion == reference.inclusion_proof(index, size)
    verify_inclusion(leaves[index], index, size, inclusion, root)

    consistency = consistency_proof_at(store, old_size, size)
    assert consistency == reference.consistency_proof(old_size, size)
    verify_consistency(old_size, size, reference.root(old_size), root, consistency)

    # One read per call, each of O(log n) keys: two per level is a generous bound.
    assert len(store.reads) == 4
    assert all(len(keys) <= 2 * size.bit_length() + 2 for keys in store.reads)


@settings(max_examples=100, deadline=None)
@given(leaves=TREES)
def test_streaming_tree_tracks_the_in_memory_root(leaves: list[bytes]) -> None:
    streaming, reference = StreamingTree(), InMemoryTree()
    for leaf in leaves:
        streaming.add(leaf)
        reference.append(leaf)
        assert streaming.root() == reference.root()
    assert streaming.size == len(leaves)
