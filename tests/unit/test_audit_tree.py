"""audit.tree against audit.merkle.InMemoryTree on every small tree, and its refusals."""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Mapping, Sequence

import pytest

from audit.merkle import (
    EMPTY_ROOT,
    InMemoryTree,
    hash_leaf,
    verify_consistency,
    verify_inclusion,
)
from audit.tree import (
    MemoryNodeStore,
    NodeKey,
    StreamingTree,
    consistency_proof_at,
    inclusion_proof_at,
    nodes_for_append,
    root_at,
)
from broker.errors import ValidationError

MAX_SIZE = 20
LEAVES = [hash_leaf(f"entry {position}".encode()) for position in range(MAX_SIZE)]
REFERENCE = InMemoryTree(LEAVES)


class CountingStore(MemoryNodeStore):
    """Records every ``get_nodes`` call's keys, so tests can bound the reads."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[set[NodeKey]] = []

    def get_nodes(self, keys: Collection[NodeKey]) -> Mapping[NodeKey, bytes]:
        self.reads.append(set(keys))
        return super().get_nodes(keys)


def store_of(leaves: Sequence[bytes]) -> CountingStore:
    """A store filled one leaf at a time, with its read log cleared."""
    store = CountingStore()
    for size, leaf in enumerate(leaves):
        store.put_nodes(nodes_for_append(store, size, [leaf]))
    store.reads.clear()
    return store


def expected_nodes(tree: InMemoryTree) -> dict[NodeKey, bytes]:
    """Every complete perfect subtree of ``tree``, computed by the in-memory reference."""
    nodes: dict[NodeKey, bytes] = {}
    level = 0
    while 1 << level <= len(tree):
        width = 1 << level
        for index in range(len(tree) // width):
            nodes[level, index] = tree.subtree_hash(index * width, (index + 1) * width)
        level += 1
    return nodes


FULL = store_of(LEAVES)


@pytest.mark.parametrize("size", range(MAX_SIZE + 1))
def test_appending_one_by_one_stores_every_complete_perfect_subtree(size: int) -> None:
    store = store_of(LEAVES[:size])
    assert store.nodes == expected_nodes(InMemoryTree(LEAVES[:size]))


@pytest.mark.parametrize("seed", range(25))
def test_appending_in_random_batches_gives_the_same_nodes(seed: int) -> None:
    rng = random.Random(seed)
    store = MemoryNodeStore()
    size = 0
    while size < MAX_SIZE:
        batch = LEAVES[size : size + rng.randint(1, 7)]
        store.put_nodes(nodes_for_append(store, size, batch))
        size += len(batch)
    assert store.nodes == FULL.nodes


def test_append_reports_what_it_completes_without_writing() -> None:
    store = store_of(LEAVES[:3])
    before = dict(store.nodes)
    created = nodes_for_append(store, 3, [LEAVES[3]])
    assert store.nodes == before
    assert {(level, index) for level, index, _ in created} == {(0, 3), (1, 1), (2, 0)}
    assert store.reads == [{(0, 2), (1, 0)}]


def test_append_of_nothing_reads_nothing() -> None:
    store = store_of(LEAVES[:7])
    assert nodes_for_append(store, 7, []) == []
    assert store.reads == []


@pytest.mark.parametrize("size", range(MAX_SIZE + 1))
def test_root_at_every_size_equals_the_in_memory_root(size: int) -> None:
    assert root_at(FULL, size) == REFERENCE.root(size)
    assert len(FULL.reads) == (1 if size else 0)
    FULL.reads.clear()


def test_root_of_nothing_is_the_empty_root() -> None:
    assert root_at(MemoryNodeStore(), 0) == EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, MAX_SIZE + 1))
def test_every_inclusion_proof_equals_the_in_memory_one_and_verifies(size: int) -> None:
    root = REFERENCE.root(size)
    for index in range(size):
        proof = inclusion_proof_at(FULL, index, size)
        assert proof == REFERENCE.inclusion_proof(index, size)
        verify_inclusion(LEAVES[index], index, size, proof, root)
    assert len(FULL.reads) == size  # one read per proof
    FULL.reads.clear()


@pytest.mark.parametrize("new_size", range(1, MAX_SIZE + 1))
def test_every_consistency_proof_equals_the_in_memory_one_and_verifies(new_size: int) -> None:
    new_root = REFERENCE.root(new_size)
    for old_size in range(1, new_size + 1):
        proof = consistency_proof_at(FULL, old_size, new_size)
        assert proof == REFERENCE.consistency_proof(old_size, new_size)
        verify_consistency(old_size, new_size, REFERENCE.root(old_size), new_root, proof)
    assert len(FULL.reads) == new_size
    FULL.reads.clear()


def _refused(call: Callable[[], object]) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        call()
    assert caught.value.code == "proof_request_invalid"
    return caught.value


@pytest.mark.parametrize(("index", "size"), [(0, 0), (5, 5), (6, 5), (-1, 5), (0, -1)], ids=str)
def test_an_index_outside_the_tree_is_refused(index: int, size: int) -> None:
    _refused(lambda: inclusion_proof_at(FULL, index, size))


@pytest.mark.parametrize(("old_size", "new_size"), [(0, 5), (0, 0), (6, 5), (-1, 3)], ids=str)
def test_a_bad_consistency_request_is_refused(old_size: int, new_size: int) -> None:
    _refused(lambda: consistency_proof_at(FULL, old_size, new_size))


def test_a_negative_size_is_refused() -> None:
    _refused(lambda: root_at(FULL, -1))
    _refused(lambda: nodes_for_append(FULL, -1, [LEAVES[0]]))


@pytest.mark.parametrize("held", [1, 4, 5, 8, 13])
def test_a_size_beyond_the_store_is_refused(held: int) -> None:
    store = store_of(LEAVES[:held])
    error = _refused(lambda: root_at(store, held + 1))
    assert "missing" in error.message
    _refused(lambda: inclusion_proof_at(store, held, held + 1))
    _refused(lambda: inclusion_proof_at(store, 0, held + 1))
    _refused(lambda: consistency_proof_at(store, held, held + 1))
    _refused(lambda: consistency_proof_at(store, held + 1, held + 1))


LOST_AND_NEEDED_BY: dict[NodeKey, Callable[[MemoryNodeStore], object]] = {
    (0, 0): lambda store: inclusion_proof_at(store, 1, 12),
    (0, 6): lambda store: root_at(store, 7),
    (1, 2): lambda store: consistency_proof_at(store, 3, 7),
    (2, 0): lambda store: root_at(store, 5),
    (3, 0): lambda store: root_at(store, 12),
}


@pytest.mark.parametrize("lost", list(LOST_AND_NEEDED_BY), ids=str)
def test_a_missing_node_is_reported_not_treated_as_zero(lost: NodeKey) -> None:
    store = store_of(LEAVES[:12])
    call = LOST_AND_NEEDED_BY[lost]
    call(store)
    del store.nodes[lost]
    with pytest.raises(ValidationError, match=f"level {lost[0]}, index {lost[1]} is missing"):
        call(store)


def test_a_lost_leaf_with_a_proof_for_itself_is_refused() -> None:
    store = store_of(LEAVES[:4])
    del store.nodes[0, 3]
    # The path for leaf 3 needs only its sibling and the left half, yet leaf 3 is gone.
    _refused(lambda: inclusion_proof_at(store, 3, 4))


def test_append_after_a_missing_left_sibling_is_refused() -> None:
    store = store_of(LEAVES[:6])
    del store.nodes[1, 2]
    _refused(lambda: nodes_for_append(store, 6, LEAVES[6:8]))


def test_append_refuses_a_leaf_hash_of_the_wrong_length() -> None:
    with pytest.raises(ValidationError, match="leaf hash 1 must be 32 bytes"):
        nodes_for_append(MemoryNodeStore(), 0, [LEAVES[0], b"short"])


def test_streaming_root_equals_the_in_memory_root_after_every_add() -> None:
    streaming, reference = StreamingTree(), InMemoryTree()
    assert streaming.root() == EMPTY_ROOT
    leaves = [hash_leaf(f"streamed {position}".encode()) for position in range(70)]
    for leaf in leaves:
        streaming.add(leaf)
        reference.append(leaf)
        assert streaming.size == len(reference)
        assert streaming.root() == reference.root()


def test_streaming_tree_refuses_a_leaf_hash_of_the_wrong_length() -> None:
    tree = StreamingTree()
    with pytest.raises(ValidationError):
        tree.add(b"\x00" * 31)
    assert tree.size == 0
