"""Audit entries as Merkle leaves: their canonical bytes and leaf hashes. Pure, no storage.

An entry's leaf hash is RFC 9162's ``SHA-256(0x00 || canonical bytes)``, where
the canonical bytes are the entry as JSON with sorted keys and no insignificant
whitespace, including its format version, position and time. The log is the
Merkle tree over these leaves in order, so a signed root commits to every
entry and to their order.
"""

from __future__ import annotations

import json
from typing import Any

from audit.events import AuditEvent, LoggedEntry
from audit.merkle import hash_leaf

# 2: entries became Merkle leaves (1 was the hash chain of the first release).
FORMAT_VERSION = 2


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


def leaf_hash(seq: int, at: str, event: AuditEvent) -> bytes:
    """The Merkle leaf hash of an entry at position ``seq`` (1-based; leaf index seq - 1)."""
    return hash_leaf(canonical_entry(seq, at, event))


def seal_entry(seq: int, at: str, event: AuditEvent) -> LoggedEntry:
    """Place an event at position ``seq`` with its leaf hash."""
    return LoggedEntry(seq=seq, at=at, event=event, leaf_hash=leaf_hash(seq, at, event).hex())
