"""Reading a whole dataset's stored records, page by page, for aggregates."""

from __future__ import annotations

from sqlalchemy import Connection, select

from broker.db.handles import RECORD
from broker.interfaces import RecordRow


class SqlDatasetRecords:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def page(
        self, agreement_id: str, dataset_id: str, *, after: str | None, limit: int
    ) -> list[RecordRow]:
        # Keyset pages in source_ref order walk the unique index on (agreement, dataset,
        # source_ref), so each page costs the same however deep into the dataset it is.
        query = select(RECORD).where(
            RECORD.c.agreement_id == agreement_id, RECORD.c.dataset_id == dataset_id
        )
        if after is not None:
            query = query.where(RECORD.c.source_ref > after)
        rows = self._c.execute(query.order_by(RECORD.c.source_ref).limit(limit))
        return [RecordRow(**row._mapping) for row in rows]
