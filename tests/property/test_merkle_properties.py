"""Random trees: every proof audit.merkle makes verifies, and any change to it is caught."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from audit.merkle import (
    InMemoryTree,
    consistency_proof,
    hash_leaf,
    inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from broker.errors import AuditIntegrityError

# Distinct entries, so that no two leaves share a hash and "another leaf" really differs.
TREES = st.lists(st.binary(max_size=8), min_size=1, max_size=70, unique=True).map(
    lambda entries: [hash_leaf(entry) for entry in entries]
)
BITS = st.integers(0, 255)


def _flip(value: bytes, bit: int) -> bytes:
    changed = bytearray(value)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


def _rejects_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    try:
        verify_inclusion(leaf, index, size, proof, root)
    except AuditIntegrityError:
        return True
    return False


def _rejects_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> bool:
    try:
        verify_consistency(old_size, new_size, old_root, new_root, proof)
    except AuditIntegrityError:
        return True
    return False


@settings(max_examples=60, deadline=None)
@given(leaves=TREES, bit=BITS)
def test_every_inclusion_proof_verifies_and_only_for_its_leaf(
    leaves: list[bytes], bit: int
) -> None:
    size, root = len(leaves), root_from_leaf_hashes(leaves)
    tree = InMemoryTree(leaves)
    for index, leaf in enumerate(leaves):
        proof = inclusion_proof(leaves, index)
        assert tree.inclusion_proof(index) == proof
        verify_inclusion(leaf, index, size, proof, root)
        assert _rejects_inclusion(_flip(leaf, bit), index, size, proof, root)
        assert _rejects_inclusion(leaf, index, size, proof, _flip(root, bit))
        assert _rejects_inclusion(leaf, index, size, [*proof, root], root)
        if proof:
            assert _rejects_inclusion(leaf, index, size, [_flip(proof[0], bit), *proof[1:]], root)
            assert _rejects_inclusion(leaf, index, size, proof[:-1], root)
        if size > 1:
            other = (index + 1) % size
            assert _rejects_inclusion(leaves[other], index, size, proof, root)
            assert _rejects_inclusion(leaf, other, size, proof, root)


@settings(max_examples=60, deadline=None)
@given(leaves=TREES, bit=BITS)
def test_every_consistency_proof_verifies_and_only_for_its_roots(
    leaves: list[bytes], bit: int
) -> None:
    new_size = len(leaves)
    tree = InMemoryTree(leaves)
    new_root = tree.root()
    for old_size in range(1, new_size + 1):
        old_root = tree.root(old_size)
        proof = consistency_proof(leaves, old_size)
        assert tree.consistency_proof(old_size) == proof
        verify_consistency(old_size, new_size, old_root, new_root, proof)
        assert _rejects_consistency(old_size, new_size, _flip(old_root, bit), new_root, proof)
        assert _rejects_consistency(old_size, new_size, old_root, _flip(new_root, bit), proof)
        if proof:
            assert _rejects_consistency(old_size, new_size, old_root, new_root, proof[:-1])
            assert _rejects_consistency(old_size, new_size, old_root, new_root, [*proof, leaves[0]])


@settings(max_examples=60, deadline=None)
@given(leaves=TREES, data=st.data())
def test_in_memory_tree_agrees_with_the_recursive_root_for_every_prefix(
    leaves: list[bytes], data: st.DataObject
) -> None:
    tree = InMemoryTree()
    roots = [tree.root()]
    for size, leaf in enumerate(leaves, start=1):
        assert tree.append(leaf) == size - 1
        roots.append(tree.root())
        assert roots[-1] == root_from_leaf_hashes(leaves[:size])
    assert [tree.root(size) for size in range(len(leaves) + 1)] == roots
    start = data.draw(st.integers(0, len(leaves) - 1))
    end = data.draw(st.integers(start + 1, len(leaves)))
    assert tree.subtree_hash(start, end) == root_from_leaf_hashes(leaves[start:end])
