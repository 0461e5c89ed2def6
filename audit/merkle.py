"""Merkle tree hashes, proofs and proof checks after RFC 9162 §2.1, for the audit log.

Hashes are SHA-256, 32 bytes. Entries go through ``hash_leaf``; everything else takes
leaf *hashes*. Proofs are computed against ``NodeSource``, so a store holding
perfect-subtree hashes serves them in O(log n) hashes; ``InMemoryTree`` is one.

Errors: ``ValidationError`` for malformed input (a hash not 32 bytes, an index or size
out of range), ``AuditIntegrityError`` when well-formed input does not verify; treat
both as "not proven". Messages name sizes and positions, never hash values.

Empty trees: the root is ``EMPTY_ROOT``; there are no inclusion proofs. Consistency
*from* an empty tree (old size 0) is refused with ``ValidationError``, generating or
verifying, even between two empty trees: every tree extends the empty one, so it proves
nothing. The transparency-dev vectors reject it too (other sets accept an empty proof).
A caller without an earlier checkpoint has nothing to compare and skips the check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final, Protocol

from broker.errors import AuditIntegrityError, ValidationError

HASH_SIZE: Final = 32
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()


def hash_leaf(data: bytes) -> bytes:
    """Return the leaf hash SHA-256(0x00 || data) of one entry's bytes."""
    return hashlib.sha256(b"\x00" + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """Return the interior node hash SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


class NodeSource(Protocol):
    """Anything that can give the Merkle tree hash (MTH) of a range of leaves."""

    def subtree_hash(self, start: int, end: int) -> bytes:
        """Return MTH of the leaves [start, end), where 0 <= start < end <= tree size.

        The proof functions ask for aligned perfect subtrees (end - start a power of two
        that divides start), which a store should serve in O(1), and per proof at most
        one other range, [k, size), whose hash folds O(log n) perfect subtrees.
        """
        ...


def _split(width: int) -> int:
    """Return the largest power of two strictly below ``width`` (``width`` >= 2)."""
    return 1 << ((width - 1).bit_length() - 1)


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ValidationError(f"{what} must be {HASH_SIZE} bytes, got {len(value)}")


def _check_hashes(values: Sequence[bytes], what: str) -> None:
    for position, value in enumerate(values):
        _check_hash(value, f"{what} {position}")


def _check_sizes(old_size: int, new_size: int) -> None:
    if old_size < 1:
        raise ValidationError("old tree size must be at least 1 (empty trees prove nothing)")
    if old_size > new_size:
        raise ValidationError(f"old tree size {old_size} exceeds new tree size {new_size}")


def _mth(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    if end - start == 1:
        return leaf_hashes[start]
    mid = start + _split(end - start)
    return hash_children(_mth(leaf_hashes, start, mid), _mth(leaf_hashes, mid, end))


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return MTH(D[n]) of the leaf hashes by the RFC's recursive split, in O(n) hashes."""
    _check_hashes(leaf_hashes, "leaf hash")
    return _mth(leaf_hashes, 0, len(leaf_hashes)) if leaf_hashes else EMPTY_ROOT


class _LeafList:
    """A ``NodeSource`` over a plain list; every range costs O(width) hashes."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        _check_hashes(leaf_hashes, "leaf hash")
        self._leaves = leaf_hashes

    def subtree_hash(self, start: int, end: int) -> bytes:
        return _mth(self._leaves, start, end)


def inclusion_path(source: NodeSource, index: int, size: int) -> list[bytes]:
    """Return PATH(index, D[size]) of RFC 9162 §2.1.3.1, the deepest sibling first.

    ``source`` must hold at least ``size`` leaves; the path has about log2(size) hashes.
    """
    if not 0 <= index < size:
        raise ValidationError(f"leaf index {index} is outside a tree of {size} leaves")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            path.append(source.subtree_hash(mid, hi))
            hi = mid
        else:
            path.append(source.subtree_hash(lo, mid))
            lo = mid
    path.reverse()
    return path


def consistency_path(source: NodeSource, old_size: int, new_size: int) -> list[bytes]:
    """Return PROOF(old_size, D[new_size]) of RFC 9162 §2.1.4.1, the deepest node first.

    Equal sizes give an empty proof; an old size of 0 is refused (see the module notes).
    """
    _check_sizes(old_size, new_size)
    path: list[bytes] = []
    lo, hi, old_root_known = 0, new_size, True
    while hi != old_size:
        mid = lo + _split(hi - lo)
        if old_size <= mid:
            path.append(source.subtree_hash(mid, hi))
            hi = mid
        else:
            path.append(source.subtree_hash(lo, mid))
            lo, old_root_known = mid, False
    if not old_root_known:
        path.append(source.subtree_hash(lo, hi))
    path.reverse()
    return path


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Return the inclusion proof of leaf ``index`` in the tree of all ``leaf_hashes``."""
    return inclusion_path(_LeafList(leaf_hashes), index, len(leaf_hashes))


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return the proof that the first ``old_size`` leaves are a prefix of all of them."""
    return consistency_path(_LeafList(leaf_hashes), old_size, len(leaf_hashes))


class InMemoryTree:
    """An append-only tree of leaf hashes that stores every complete perfect subtree.

    ``_levels[h][i]`` is MTH of leaves [i * 2**h, (i + 1) * 2**h): appends cost amortised
    O(1) hashes, aligned power-of-two ranges O(1), roots and proofs O(log n), also for
    any earlier size. About 2n hashes of memory; not thread-safe.
    """

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for leaf_hash in leaf_hashes:
            self.append(leaf_hash)

    def __len__(self) -> int:
        return len(self._levels[0])

    def append(self, leaf_hash: bytes) -> int:
        """Add one leaf hash (not the entry itself) and return its index."""
        _check_hash(leaf_hash, "leaf hash")
        self._levels[0].append(leaf_hash)
        level = 0
        while len(self._levels[level]) % 2 == 0:
            if level + 1 == len(self._levels):
                self._levels.append([])
            row = self._levels[level]
            self._levels[level + 1].append(hash_children(row[-2], row[-1]))
            level += 1
        return len(self) - 1

    def subtree_hash(self, start: int, end: int) -> bytes:
        """Return MTH of the leaves [start, end); O(1) for aligned power-of-two ranges."""
        if not 0 <= start < end <= len(self):
            raise ValidationError(f"leaf range {start}..{end} is outside a tree of {len(self)}")
        width = end - start
        if width & (width - 1) == 0 and start % width == 0:
            return self._levels[width.bit_length() - 1][start // width]
        mid = start + _split(width)
        return hash_children(self.subtree_hash(start, mid), self.subtree_hash(mid, end))

    def _size(self, size: int | None) -> int:
        if size is None:
            return len(self)
        if not 0 <= size <= len(self):
            raise ValidationError(f"tree size {size} is outside 0..{len(self)}")
        return size

    def root(self, size: int | None = None) -> bytes:
        """Return the root of the first ``size`` leaves (default: all of them)."""
        size = self._size(size)
        return self.subtree_hash(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Return the inclusion proof of leaf ``index`` in the first ``size`` leaves."""
        return inclusion_path(self, index, self._size(size))

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """Return the consistency proof from ``old_size`` to ``new_size`` (default: all)."""
        return consistency_path(self, old_size, self._size(new_size))


def _climb(fn: int, sn: int, seed: bytes, path: Sequence[bytes]) -> tuple[bytes, bytes]:
    """Run the loop of RFC 9162 §2.1.3.2 / §2.1.4.2: (fr, sr) = (old root, new root)."""
    fr = sr = seed
    for node in path:
        if sn == 0:
            raise AuditIntegrityError("proof has more entries than the tree size allows")
        if fn & 1 or fn == sn:
            fr, sr = hash_children(node, fr), hash_children(node, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = hash_children(sr, node)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise AuditIntegrityError("proof has fewer entries than the tree size needs")
    return fr, sr


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree with ``root``; else raise.

    Returns None on success. ``AuditIntegrityError``: the proof does not verify.
    ``ValidationError``: a hash is not 32 bytes or ``index`` is not below ``tree_size``.
    """
    _check_hash(leaf_hash, "leaf hash")
    _check_hash(root, "root")
    _check_hashes(proof, "proof entry")
    if not 0 <= index < tree_size:
        raise ValidationError(f"leaf index {index} is outside a tree of {tree_size} leaves")
    _, computed = _climb(index, tree_size - 1, leaf_hash, proof)
    if computed != root:
        raise AuditIntegrityError("inclusion proof does not lead to the given root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree with ``new_root`` extends the one with ``old_root``; else raise.

    Returns None on success. Equal sizes need an empty proof and equal roots.
    ``AuditIntegrityError``: the proof does not verify. ``ValidationError``: a hash is
    not 32 bytes, ``old_size`` is 0 (see the module notes) or exceeds ``new_size``.
    """
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    _check_hashes(proof, "proof entry")
    _check_sizes(old_size, new_size)
    if old_size == new_size:
        if proof:
            raise AuditIntegrityError("consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise AuditIntegrityError("roots differ for the same tree size")
        return
    if not proof:
        raise AuditIntegrityError("consistency proof is empty for different tree sizes")
    path = [old_root, *proof] if old_size & (old_size - 1) == 0 else list(proof)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    old_computed, new_computed = _climb(fn, sn, path[0], path[1:])
    if old_computed != old_root:
        raise AuditIntegrityError("consistency proof does not lead to the old root")
    if new_computed != new_root:
        raise AuditIntegrityError("consistency proof does not lead to the new root")
