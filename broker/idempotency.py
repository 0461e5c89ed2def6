"""Idempotent ingest: a retried batch answers with its first result and stores nothing twice.

The client names each batch with an ``Idempotency-Key`` header (IETF draft
``httpapi-idempotency-key-header``). The key is required: a key the server
made up could not match a retry, so without one a client that lost a
response could not tell whether its batch was stored. The broker keeps, per
(agency, agreement, dataset, key), a digest of the request body and the first
successful result, written in the batch's own transaction, so that:

- the same key and the same body again returns the stored result (a replay);
- the same key with another body is refused (``idempotency_key_reused``);
- of two concurrent requests with one key only one commits: the unique
  constraint makes the second wait for the first and then replay its result.

A request that fails stores nothing and records no key, so sending it again is
simply a new attempt. Keys and bodies are kept only as SHA-256 digests: a key
is a random label, not an identifier, so an unkeyed hash is enough to keep it
out of the database without any secret to manage. The retention job forgets
keys after ``BROKER_IDEMPOTENCY_KEY_DAYS`` (7 by default).

The rekey endpoint takes no key: it replaces a record's tokens under the new
linkage key, so a retry leaves the same stored state (and one more audit entry).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from broker.errors import Conflict, Location, ValidationError

HEADER = "Idempotency-Key"
# Sent on a response that replays a stored result instead of processing the request.
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# How long a key is remembered; a retry after this is processed afresh.
DEFAULT_RETENTION = timedelta(days=7)


class IdempotencyKeyMissing(ValidationError):
    """The request carried no usable ``Idempotency-Key`` header."""

    code = "idempotency_key_missing"


class IdempotencyKeyReused(ValidationError):
    """The key was used before for a request with a different body."""

    code = "idempotency_key_reused"


class IdempotencyKeyInFlight(Conflict):
    """Another request with the same key is being processed and has no result yet."""

    code = "idempotency_key_in_flight"


@dataclass(frozen=True)
class IdempotencyScope:
    """Where one key applies and what was asked under it, as digests only."""

    agency_id: str
    agreement_id: str
    dataset_id: str
    operation: str
    key_digest: str
    request_digest: str


@dataclass(frozen=True)
class StoredOutcome:
    """The first result stored under a key."""

    request_digest: str
    status_code: int
    response: Mapping[str, Any]
    batch_id: str | None
    created_at: str


class IdempotencyRepository(Protocol):
    """Storage for keys' first results (``broker.db.idempotency_repository``); never commits."""

    def find(self, scope: IdempotencyScope) -> StoredOutcome | None:
        """The outcome stored under the scope's key, whatever body it was for."""
        ...

    def claim(self, scope: IdempotencyScope, at: str) -> None:
        """Insert the key's row; raises ``IdempotencyKeyInFlight`` if another holds the key.

        On PostgreSQL the insert waits for a concurrent holder's transaction to end.
        """
        ...

    def complete(
        self, scope: IdempotencyScope, status_code: int, response: str, batch_id: str | None
    ) -> None:
        """Store the result on the row ``claim`` inserted in this transaction."""
        ...

    def purge(self, created_before: str) -> int:
        """Forget keys stored before the cut-off; returns how many."""
        ...


def parse_key(value: str | None) -> str:
    """The key from the header: a structured-field string (quoted) or a bare token.

    Raises ``IdempotencyKeyMissing`` (HTTP 400) if absent, empty, too long or not
    visible ASCII. The message never repeats the value.
    """
    if value is None or not value.strip():
        raise IdempotencyKeyMissing(
            f"send an {HEADER} header with a unique value per batch (a UUID will do), "
            "and the same value when you retry that batch",
            location=Location(field=HEADER),
        )
    key = value.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not key or len(key) > MAX_KEY_LENGTH or any(not 0x21 <= ord(c) <= 0x7E for c in key):
        raise IdempotencyKeyMissing(
            f"the {HEADER} header must be 1 to {MAX_KEY_LENGTH} visible ASCII characters "
            "(a UUID will do); send the batch again with such a key",
            location=Location(field=HEADER),
        )
    return key


def scope_for(
    *,
    agency_id: str,
    agreement_id: str,
    dataset_id: str,
    operation: str,
    key: str | None,
    body: Any,
) -> IdempotencyScope:
    """The scope of one request: its key and body reduced to digests.

    ``body`` is the parsed JSON body; it is serialised canonically (sorted keys,
    no spaces), so a retry that re-encodes the same content still matches.
    """
    canonical = json.dumps(
        {"operation": operation, "body": body},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return IdempotencyScope(
        agency_id=agency_id,
        agreement_id=agreement_id,
        dataset_id=dataset_id,
        operation=operation,
        key_digest=hashlib.sha256(parse_key(key).encode("ascii")).hexdigest(),
        request_digest=hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
    )


def replay(repository: IdempotencyRepository, scope: IdempotencyScope) -> StoredOutcome | None:
    """The stored outcome for a retry of the same request, or None if the key is new.

    Raises ``IdempotencyKeyReused`` (422) if the key was used for another body
    or another operation.
    """
    found = repository.find(scope)
    if found is None:
        return None
    if found.request_digest != scope.request_digest:
        raise IdempotencyKeyReused(
            f"this {HEADER} was already used for a different request; "
            "use a new key for a new batch, and the same body when retrying",
            location=Location(field=HEADER),
        )
    return found


def encode_response(response: Mapping[str, Any]) -> str:
    """The stored form of a result (JSON)."""
    return json.dumps(response, sort_keys=True, separators=(",", ":"))
