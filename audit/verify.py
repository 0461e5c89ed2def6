"""Full verification of the audit log: every entry, every stored node, every signed checkpoint.

Pure: the entries, the head, the checkpoints and the stored tree are handed in.
Entries are streamed through an O(log n) tree, so a log of millions of
entries verifies in one pass without holding it in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit import checkpoint as notes
from audit.entries import leaf_hash
from audit.events import LoggedEntry, StoredCheckpoint
from audit.tree import StreamingTree
from broker.errors import AccordError, AuditIntegrityError, Location


@dataclass(frozen=True)
class Verified:
    """A log that verified: its size and root, and how many signatures were checked."""

    size: int
    root_hash: str
    checkpoints: int = 0
    cosignatures: int = 0


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
) -> Verified:
    """Recompute everything; raise AuditIntegrityError at the first thing that is not as written."""
    cosigned = sum(
        check_checkpoint(c, origin=origin, log_key=log_key, witness_keys=witness_keys)
        for c in checkpoints
    )
    by_size = {c.size: c for c in checkpoints}
    if checkpoints and max(by_size) > head_size:
        raise _broken(f"a checkpoint covers {max(by_size)} entries but the log holds {head_size}")
    tree = StreamingTree()
    for entry in entries:
        position = tree.size + 1
        if entry.seq != position:
            raise _broken(
                f"audit entry {position} is missing or out of order (found {entry.seq})", position
            )
        leaf = leaf_hash(entry.seq, entry.at, entry.event)
        if leaf.hex() != entry.leaf_hash:
            raise _broken(f"audit entry {position} has been changed since it was written", position)
        tree.add(leaf)
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
    root = tree.root().hex()
    if root != head_root:
        raise _broken("the log's head does not record the root of its entries", head_size)
    if head_size and stored_root(head_size).hex() != root:
        raise _broken("the stored tree nodes do not match the entries; proofs would be wrong")
    return Verified(
        size=head_size, root_hash=root, checkpoints=len(checkpoints), cosignatures=cosigned
    )
