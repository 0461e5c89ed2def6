"""The key store's storage: wrapped working keys, one row per version."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update

from broker.db.handles import WRAPPED_KEY
from broker.interfaces import StoredKey


def _stored(row: object) -> StoredKey:
    mapping = dict(row._mapping)  # type: ignore[attr-defined]
    return StoredKey(**mapping)


class SqlKeys:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def versions(self, kind: str, agreement_id: str, recipient: str) -> list[StoredKey]:
        rows = self._c.execute(
            select(WRAPPED_KEY).where(
                WRAPPED_KEY.c.kind == kind,
                WRAPPED_KEY.c.agreement_id == agreement_id,
                WRAPPED_KEY.c.recipient == recipient,
            )
        )
        return [_stored(row) for row in rows]

    def all(self) -> list[StoredKey]:
        rows = self._c.execute(
            select(WRAPPED_KEY).order_by(
                WRAPPED_KEY.c.kind,
                WRAPPED_KEY.c.agreement_id,
                WRAPPED_KEY.c.recipient,
                WRAPPED_KEY.c.version,
            )
        )
        return [_stored(row) for row in rows]

    def add(self, key: StoredKey) -> None:
        self._c.execute(insert(WRAPPED_KEY).values(**key.__dict__))

    def set_state(
        self, kind: str, agreement_id: str, recipient: str, version: int, *, state: str, at: str
    ) -> None:
        self._c.execute(
            update(WRAPPED_KEY)
            .where(
                WRAPPED_KEY.c.kind == kind,
                WRAPPED_KEY.c.agreement_id == agreement_id,
                WRAPPED_KEY.c.recipient == recipient,
                WRAPPED_KEY.c.version == version,
            )
            .values(state=state, changed_at=at)
        )

    def destroy(self, kind: str, agreement_id: str, recipient: str, version: int, at: str) -> None:
        self._c.execute(
            update(WRAPPED_KEY)
            .where(
                WRAPPED_KEY.c.kind == kind,
                WRAPPED_KEY.c.agreement_id == agreement_id,
                WRAPPED_KEY.c.recipient == recipient,
                WRAPPED_KEY.c.version == version,
            )
            .values(state="destroyed", wrapped=None, changed_at=at)
        )
