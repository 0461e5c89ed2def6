"""Storage for idempotency keys' first results; implements ``broker.idempotency``.

Like every repository here, none commits: the key's row is inserted in the
batch's own transaction, so the key and the batch are stored together or not
at all.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, Table, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from broker.db.tables import IngestIdempotency
from broker.idempotency import (
    HEADER,
    IdempotencyKeyInFlight,
    IdempotencyScope,
    StoredOutcome,
)


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


IDEMPOTENCY = _table(IngestIdempotency)


def _of(scope: IdempotencyScope) -> Any:
    c = IDEMPOTENCY.c
    return and_(
        c.agency_id == scope.agency_id,
        c.agreement_id == scope.agreement_id,
        c.dataset_id == scope.dataset_id,
        c.key_digest == scope.key_digest,
    )


class SqlIdempotency:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def find(self, scope: IdempotencyScope) -> StoredOutcome | None:
        """The outcome stored under the scope's key, whatever body it was for."""
        c = IDEMPOTENCY.c
        row = self._c.execute(
            select(c.request_digest, c.status_code, c.response, c.batch_id, c.created_at).where(
                _of(scope)
            )
        ).first()
        if row is None:
            return None
        return StoredOutcome(
            request_digest=str(row.request_digest),
            status_code=int(row.status_code),
            response=json.loads(row.response),
            batch_id=None if row.batch_id is None else str(row.batch_id),
            created_at=str(row.created_at),
        )

    def claim(self, scope: IdempotencyScope, at: str) -> None:
        """Insert the key's row with no result yet; another holder raises ``in flight``.

        On PostgreSQL a concurrent holder's uncommitted row makes this insert wait
        until that transaction ends; it then fails here if the holder committed.
        The transaction is unusable after the failure: the caller rolls it back.
        """
        try:
            self._c.execute(
                insert(IDEMPOTENCY).values(
                    agency_id=scope.agency_id,
                    agreement_id=scope.agreement_id,
                    dataset_id=scope.dataset_id,
                    key_digest=scope.key_digest,
                    operation=scope.operation,
                    request_digest=scope.request_digest,
                    status_code=0,
                    response="{}",
                    batch_id=None,
                    created_at=at,
                )
            )
        except IntegrityError as exc:
            raise IdempotencyKeyInFlight(
                f"another request with this {HEADER} is being processed; "
                "send this one again shortly to receive its result"
            ) from exc

    def complete(
        self, scope: IdempotencyScope, status_code: int, response: str, batch_id: str | None
    ) -> None:
        """Store the result on the row ``claim`` inserted in this transaction."""
        self._c.execute(
            update(IDEMPOTENCY)
            .where(_of(scope))
            .values(status_code=status_code, response=response, batch_id=batch_id)
        )

    def purge(self, created_before: str) -> int:
        """Forget keys stored before the cut-off; returns how many."""
        result = self._c.execute(
            delete(IDEMPOTENCY).where(IDEMPOTENCY.c.created_at < created_before)
        )
        return int(result.rowcount)
