"""The hash chain over audit entries: pure functions, no storage.

``entry_hash = SHA-256("accord.audit.v1" || 0x00 || prev_hash || canonical JSON of the entry)``
where the canonical JSON has sorted keys and no insignificant whitespace, and
includes the entry's position and time. Changing, removing, reordering or
inserting any entry changes every hash after it, so recomputing the chain from
the first entry finds the first entry that is not what was written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from audit.events import AuditEvent, LoggedEntry
from broker.errors import AuditIntegrityError, Location

FORMAT_VERSION = 1
GENESIS_HASH = "0" * 64
_DOMAIN = b"accord.audit.v1\x00"


def canonical_entry(seq: int, at: str, event: AuditEvent) -> bytes:
    """The exact bytes that are hashed for an entry."""
    body: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "seq": seq,
        "at": at,
        "actor": event.actor,
        "action": event.action,
        "outcome": event.outcome,
        "reason_code": event.reason_code,
        "agreement_id": event.agreement_id,
        "agreement_version": event.agreement_version,
        "purpose": event.purpose,
        "dataset_id": event.dataset_id,
        "request_id": event.request_id,
        "detail": event.detail,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    """The hash of an entry given the hash of the one before it."""
    return hashlib.sha256(_DOMAIN + bytes.fromhex(prev_hash) + canonical).hexdigest()


def seal_entry(seq: int, at: str, event: AuditEvent, prev_hash: str) -> LoggedEntry:
    """Place an event at position ``seq`` after ``prev_hash``."""
    return LoggedEntry(
        seq=seq,
        at=at,
        event=event,
        prev_hash=prev_hash,
        entry_hash=chain_hash(prev_hash, canonical_entry(seq, at, event)),
    )


@dataclass(frozen=True)
class Verified:
    """A log that verified: how many entries and the hash of the last."""

    size: int
    head_hash: str


def verify_chain(entries: Iterable[LoggedEntry], *, head_size: int, head_hash: str) -> Verified:
    """Recompute the chain from the first entry; raise AuditIntegrityError at the first bad one.

    ``head_size`` and ``head_hash`` are what the log's head says it holds, so
    that entries removed from the end are detected too.
    """
    expected_prev = GENESIS_HASH
    count = 0
    for entry in entries:
        count += 1
        if entry.seq != count:
            raise AuditIntegrityError(
                f"audit entry {count} is missing or out of order (found position {entry.seq})",
                location=Location(record=count),
            )
        if entry.prev_hash != expected_prev:
            raise AuditIntegrityError(
                f"audit entry {entry.seq} does not follow the entry before it",
                location=Location(record=entry.seq),
            )
        recomputed = chain_hash(expected_prev, canonical_entry(entry.seq, entry.at, entry.event))
        if recomputed != entry.entry_hash:
            raise AuditIntegrityError(
                f"audit entry {entry.seq} has been changed since it was written",
                location=Location(record=entry.seq),
            )
        expected_prev = entry.entry_hash
    if count == head_size and count > 0 and expected_prev != head_hash:
        raise AuditIntegrityError(
            f"audit entry {count}, the last, does not match the hash the log's head records",
            location=Location(record=count),
        )
    if count != head_size or expected_prev != head_hash:
        first_bad = min(count, head_size) + 1
        raise AuditIntegrityError(
            f"audit log holds {count} entries but its head records {head_size}: "
            f"entries from {first_bad} have been removed or added",
            location=Location(record=first_bad),
        )
    return Verified(size=count, head_hash=expected_prev)
