"""Appending to the audit log, and signing checkpoints of it, through the storage given.

An entry is appended in the caller's transaction, with the Merkle nodes it
completes and the new root, so it commits with the action it records or not
at all. The head row is locked first, which makes concurrent workers append
one after another: one linear log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit import checkpoint as notes
from audit.entries import seal_entry
from audit.events import AuditEvent, LoggedEntry, StoredCheckpoint
from audit.tree import nodes_for_append, root_at
from broker.interfaces import AuditRepository


@dataclass(frozen=True)
class LogSigner:
    """The broker's checkpoint key and when to sign: every N entries or T seconds."""

    origin: str
    private_key: Ed25519PrivateKey
    every_entries: int = 100
    every_seconds: float = 60.0

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The key anyone verifies checkpoints with."""
        return self.private_key.public_key()


def append(
    audit: AuditRepository, event: AuditEvent, *, at: str, signer: LogSigner | None = None
) -> LoggedEntry:
    """Append ``event`` in the caller's transaction; sign a checkpoint when one is due."""
    size, _ = audit.lock_head()
    entry = seal_entry(size + 1, at, event)
    audit.append(entry)
    audit.nodes.put_nodes(nodes_for_append(audit.nodes, size, [bytes.fromhex(entry.leaf_hash)]))
    root = root_at(audit.nodes, entry.seq)
    audit.set_head(entry.seq, root.hex())
    if signer is not None and _due(audit.latest_checkpoint_mark(), entry.seq, at, signer):
        _sign(audit, signer, entry.seq, root, at)
    return entry


def checkpoint_now(audit: AuditRepository, signer: LogSigner, *, at: str) -> StoredCheckpoint:
    """A checkpoint of the log as it is now (the latest one if nothing was added since)."""
    size, root_hex = audit.lock_head()
    latest = audit.latest_checkpoint()
    if latest is not None and latest.size == size:
        return latest
    return _sign(audit, signer, size, bytes.fromhex(root_hex), at)


def _due(latest: tuple[int, str] | None, size: int, at: str, signer: LogSigner) -> bool:
    if latest is None:
        return True
    signed_size, signed_at = latest
    if size - signed_size >= signer.every_entries:
        return True
    elapsed = datetime.fromisoformat(at) - datetime.fromisoformat(signed_at)
    return elapsed.total_seconds() >= signer.every_seconds


def _sign(
    audit: AuditRepository, signer: LogSigner, size: int, root: bytes, at: str
) -> StoredCheckpoint:
    note = notes.sign(
        notes.Checkpoint(signer.origin, size, root), signer.origin, signer.private_key
    )
    stored = StoredCheckpoint(size=size, root_hash=root.hex(), note=note, created_at=at)
    audit.add_checkpoint(stored)
    return stored
