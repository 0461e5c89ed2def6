"""Full verification of the audit log: every entry, every stored node, every signed checkpoint.

Pure: the entries, the head, the checkpoints and the stored tree are handed in.
Entries are streamed through an O(log n) tree, so a log of millions of
entries verifies in one pass without holding it in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit import checkpoint as notes
from audit.entries import leaf_hash
from audit.events import LoggedEntry, StoredCheckpoint
from audit.merkle import hash_children
from broker.errors import AccordError, AuditIntegrityError, Location


@dataclass(frozen=True)
class Verified:
    """A log that verified: its size and root, and how many signatures were checked."""

    size: int
    root_hash: str
    checkpoints: int = 0
    cosignatures: int = 0


# Reads the stored nodes of one level with index in [first, last], as {index: hash}.
NodeRange = Callable[[int, int, int], Mapping[int, bytes]]
CHUNK_LEAVES = 4096


class _Rebuild:
    """Rebuilds the tree leaf by leaf (O(log n) memory), yielding each node as it completes."""

    def __init__(self) -> None:
        self.size = 0
        self._edge: list[bytes] = []  # perfect subtrees on the right edge, largest first

    def add(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        completed = [(0, self.size, leaf)]
        level, index, node = 0, self.size, leaf
        while index % 2 == 1:
            node = hash_children(self._edge.pop(), node)
            level, index = level + 1, index // 2
            completed.append((level, index, node))
        self._edge.append(node)
        self.size += 1
        return completed

    def root(self) -> bytes:
        if not self._edge:
            return hashlib.sha256(b"").digest()
        root = self._edge[-1]
        for left in reversed(self._edge[:-1]):
            root = hash_children(left, root)
        return root


def _check_nodes(expected: list[tuple[int, int, bytes]], read: NodeRange) -> None:
    """Compare every node completed by leaves [first_leaf, last_leaf] with what is stored."""
    by_level: dict[int, dict[int, bytes]] = {}
    for level, index, node in expected:
        by_level.setdefault(level, {})[index] = node
    for level, nodes in by_level.items():
        stored = read(level, min(nodes), max(nodes))
        for index, node in nodes.items():
            if stored.get(index) != node:
                first = index << level
                raise _broken(
                    f"the stored tree node over entries {first + 1} to {first + (1 << level)} "
                    "does not match the entries; proofs built from it would be wrong",
                    first + 1,
                )


def _node_total(size: int) -> int:
    total, width = 0, 1
    while width <= size:
        total += size // width
        width *= 2
    return total


def _broken(message: str, entry: int | None = None) -> AuditIntegrityError:
    return AuditIntegrityError(message, location=Location(record=entry))


def check_checkpoint(
    stored: StoredCheckpoint,
    *,
    origin: str,
    log_key: Ed25519PublicKey,
    witness_keys: Mapping[str, Ed25519PublicKey],
) -> int:
    """Verify one stored checkpoint and its cosignatures; returns how many cosignatures held."""
    try:
        signed = notes.verify(stored.note, origin, log_key)
    except AccordError:
        raise _broken(f"checkpoint at size {stored.size} is not signed by the log's key") from None
    if signed.size != stored.size or signed.root_hash.hex() != stored.root_hash:
        raise _broken(f"checkpoint at size {stored.size} does not say what the broker stored")
    for witness, line in stored.cosignatures:
        key = witness_keys.get(witness)
        if key is None:
            raise _broken(f"checkpoint at size {stored.size} is cosigned by unknown '{witness}'")
        try:
            notes.verify(stored.note + line + "\n", witness, key)
        except AccordError:
            raise _broken(
                f"the cosignature of '{witness}' on checkpoint {stored.size} does not verify"
            ) from None
    return len(stored.cosignatures)


def verify_log(
    entries: Iterable[LoggedEntry],
    *,
    head_size: int,
    head_root: str,
    stored_root: Callable[[int], bytes],
    checkpoints: Sequence[StoredCheckpoint],
    origin: str,
    log_key: Ed25519PublicKey,
    witness_keys: Mapping[str, Ed25519PublicKey],
    stored_nodes: NodeRange | None = None,
    stored_node_count: Callable[[], int] | None = None,
) -> Verified:
    """Recompute everything; raise AuditIntegrityError at the first thing that is not as written.

    With ``stored_nodes`` (and ``stored_node_count``) every stored Merkle node is
    compared with the rebuilt tree, a chunk of leaves at a time, so that no proof
    the broker serves can rest on a changed node.
    """
    cosigned = sum(
        check_checkpoint(c, origin=origin, log_key=log_key, witness_keys=witness_keys)
        for c in checkpoints
    )
    by_size = {c.size: c for c in checkpoints}
    if checkpoints and max(by_size) > head_size:
        raise _broken(f"a checkpoint covers {max(by_size)} entries but the log holds {head_size}")
    tree = _Rebuild()
    pending: list[tuple[int, int, bytes]] = []
    chunk_start = 0
    for entry in entries:
        position = tree.size + 1
        if entry.seq != position:
            raise _broken(
                f"audit entry {position} is missing or out of order (found {entry.seq})", position
            )
        leaf = leaf_hash(entry.seq, entry.at, entry.event)
        if leaf.hex() != entry.leaf_hash:
            raise _broken(f"audit entry {position} has been changed since it was written", position)
        pending.extend(tree.add(leaf))
        if stored_nodes is not None and tree.size - chunk_start >= CHUNK_LEAVES:
            _check_nodes(pending, stored_nodes)
            pending, chunk_start = [], tree.size
        signed = by_size.get(position)
        if signed is not None and tree.root().hex() != signed.root_hash:
            raise _broken(
                f"entries up to {position} do not match the checkpoint signed at that size: "
                "the log was rewritten after it was signed",
                position,
            )
    if tree.size != head_size:
        first = min(tree.size, head_size) + 1
        raise _broken(
            f"audit log holds {tree.size} entries but its head records {head_size}: "
            f"entries from {first} have been removed or added",
            first,
        )
    if stored_nodes is not None and pending:
        _check_nodes(pending, stored_nodes)
    if stored_node_count is not None and stored_node_count() != _node_total(tree.size):
        raise _broken("the stored tree holds nodes that no entry accounts for")
    root = tree.root().hex()
    if root != head_root:
        raise _broken("the log's head does not record the root of its entries", head_size)
    if head_size and stored_root(head_size).hex() != root:
        raise _broken("the stored tree nodes do not match the entries; proofs would be wrong")
    return Verified(
        size=head_size, root_hash=root, checkpoints=len(checkpoints), cosignatures=cosigned
    )
