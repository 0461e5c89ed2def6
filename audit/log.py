"""Appending to and verifying the audit log through the storage the core was given."""

from __future__ import annotations

from audit.chain import Verified, seal_entry, verify_chain
from audit.events import AuditEvent, LoggedEntry
from broker.interfaces import AuditRepository


def append(audit: AuditRepository, event: AuditEvent, *, at: str) -> LoggedEntry:
    """Append ``event`` in the caller's transaction: it commits with the action or not at all."""
    size, head_hash = audit.lock_head()
    entry = seal_entry(size + 1, at, event, head_hash)
    audit.append(entry)
    audit.set_head(entry.seq, entry.entry_hash)
    return entry


def verify(audit: AuditRepository) -> Verified:
    """Recompute the whole chain; raises AuditIntegrityError naming the first bad entry."""
    size, head_hash = audit.head()
    return verify_chain(audit.iter_all(), head_size=size, head_hash=head_hash)
