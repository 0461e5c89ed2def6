"""What an audit entry records. Never an identity or a payload: ids, codes, names of fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# A refusal is recorded under the action that was refused, with outcome "refused".
Action = Literal[
    "ingest",
    "link",
    "lookup",
    "key_operation",
    "credential_issued",
    "credential_revoked",
    "client_registered",
    "client_key_rotated",
    "client_disabled",
    "account_created",
    "account_password_set",
    "account_disabled",
    "sign_in",
    "token_issued",
    "agreement_change",
    "audit_search",
    "rekey",
    "retention_purge",
    "subscription",
    "subscription_cancelled",
    "notification",
    "notification_delivery",
    "notification_poll",
    "notification_ack",
    "aggregate",
]
Outcome = Literal["permitted", "refused"]


@dataclass(frozen=True)
class AuditEvent:
    """One thing that happened, before it is placed in the log.

    ``detail`` holds counts, field names and forms, subject ids (random, broker
    internal) and reason codes. It must never hold an identifier or a field value.
    """

    actor: str
    action: Action
    outcome: Outcome
    reason_code: str | None = None
    agreement_id: str | None = None
    agreement_version: int | None = None
    purpose: str | None = None
    dataset_id: str | None = None
    request_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoggedEntry:
    """An audit event as stored: its position (1-based), time and Merkle leaf hash (hex)."""

    seq: int
    at: str
    event: AuditEvent
    leaf_hash: str


@dataclass(frozen=True)
class StoredCheckpoint:
    """A signed checkpoint as kept by the broker, with any witnesses' cosignature lines."""

    size: int
    root_hash: str
    note: str
    created_at: str
    cosignatures: tuple[tuple[str, str], ...] = ()  # (witness name, signature line)

    def cosigned_note(self) -> str:
        """The note with every stored witness signature line appended."""
        return self.note + "".join(line + "\n" for _, line in self.cosignatures)
