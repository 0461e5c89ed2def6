"""SQL implementations of the repositories the core declares in ``broker.interfaces``.

Each works on a connection inside a transaction it does not own: none commits.
The audit log's and the agreement register's live in their own modules and
are re-exported here, with the table handles, for callers that import them
from this one place.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from sqlalchemy import Connection, delete, func, insert, select, update

from broker.db.agreement_repository import SqlAgreements
from broker.db.audit_repository import SqlAudit, SqlNodes, entry_from_row
from broker.db.handles import (
    AGREEMENT,
    APPROVER_KEY,
    AUDIT,
    AUDIT_HEAD,
    BATCH,
    CHECKPOINT,
    COSIGNATURE,
    GENERATION,
    KEY_CHECK,
    NODE,
    RECORD,
    SUBJECT,
    TOKEN,
    WITNESS_KEY,
)
from broker.db.key_repository import SqlKeys
from broker.interfaces import RecordKeyCount, RecordRow, TokenRow, chunked

__all__ = [
    "AGREEMENT",
    "APPROVER_KEY",
    "AUDIT",
    "AUDIT_HEAD",
    "BATCH",
    "CHECKPOINT",
    "COSIGNATURE",
    "GENERATION",
    "KEY_CHECK",
    "NODE",
    "RECORD",
    "SUBJECT",
    "TOKEN",
    "WITNESS_KEY",
    "SqlAgreements",
    "SqlAudit",
    "SqlKeys",
    "SqlLinkage",
    "SqlMeta",
    "SqlNodes",
    "SqlRecords",
    "entry_from_row",
]


class SqlLinkage:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def add_subjects(self, agreement_id: str, subject_ids: Sequence[str], at: str) -> None:
        if subject_ids:
            self._c.execute(
                insert(SUBJECT),
                [{"id": s, "agreement_id": agreement_id, "created_at": at} for s in subject_ids],
            )

    def add_tokens(self, agreement_id: str, tokens: Sequence[TokenRow]) -> None:
        if tokens:
            self._c.execute(
                insert(TOKEN),
                [
                    {
                        "agreement_id": agreement_id,
                        "match_key": t.match_key,
                        "token": t.token,
                        "subject_id": t.subject_id,
                        "record_id": t.record_id,
                        "key_version": t.key_version,
                    }
                    for t in tokens
                ],
            )

    def subjects_for_tokens(
        self, agreement_id: str, key_version: int, match_key: str, tokens: Sequence[str]
    ) -> Mapping[str, set[str]]:
        found: dict[str, set[str]] = defaultdict(set)
        for piece in chunked(sorted(set(tokens))):
            rows = self._c.execute(
                select(TOKEN.c.token, TOKEN.c.subject_id).where(
                    TOKEN.c.agreement_id == agreement_id,
                    TOKEN.c.key_version == key_version,
                    TOKEN.c.match_key == match_key,
                    TOKEN.c.token.in_(piece),
                )
            )
            for token, subject_id in rows:
                found[token].add(subject_id)
        return found

    def tokens_of_subjects(
        self, agreement_id: str, key_version: int, match_key: str, subject_ids: Sequence[str]
    ) -> Mapping[str, set[str]]:
        found: dict[str, set[str]] = defaultdict(set)
        for piece in chunked(sorted(set(subject_ids))):
            rows = self._c.execute(
                select(TOKEN.c.subject_id, TOKEN.c.token).where(
                    TOKEN.c.agreement_id == agreement_id,
                    TOKEN.c.key_version == key_version,
                    TOKEN.c.match_key == match_key,
                    TOKEN.c.subject_id.in_(piece),
                )
            )
            for subject_id, token in rows:
                found[subject_id].add(token)
        return found

    def tokens_of_records(
        self, agreement_id: str, key_version: int, records: Mapping[str, str]
    ) -> Mapping[str, dict[str, str]]:
        """Tokens per record id; ``records`` maps record id to subject id (for the index)."""
        found: dict[str, dict[str, str]] = defaultdict(dict)
        subjects = sorted(set(records.values()))
        for piece in chunked(subjects):
            rows = self._c.execute(
                select(TOKEN.c.record_id, TOKEN.c.match_key, TOKEN.c.token).where(
                    TOKEN.c.agreement_id == agreement_id,
                    TOKEN.c.key_version == key_version,
                    TOKEN.c.subject_id.in_(piece),
                )
            )
            for record_id, match_key, token in rows:
                if record_id in records:
                    found[record_id][match_key] = token
        return found

    def delete_record_tokens(
        self, agreement_id: str, key_version: int, records: Mapping[str, str]
    ) -> None:
        ids = sorted(records)
        for piece in chunked(ids):
            subjects = sorted({records[r] for r in piece})
            # The subject filter lets the database use ix_match_token_subject.
            self._c.execute(
                delete(TOKEN).where(
                    TOKEN.c.agreement_id == agreement_id,
                    TOKEN.c.key_version == key_version,
                    TOKEN.c.subject_id.in_(subjects),
                    TOKEN.c.record_id.in_(piece),
                )
            )

    def delete_version(self, agreement_id: str, key_version: int) -> int:
        result = self._c.execute(
            delete(TOKEN).where(
                TOKEN.c.agreement_id == agreement_id, TOKEN.c.key_version == key_version
            )
        )
        return int(result.rowcount)

    def records_lacking_version(
        self, agreement_id: str, have: int, lack: int
    ) -> list[RecordKeyCount]:
        newer = (
            select(TOKEN.c.record_id)
            .where(TOKEN.c.agreement_id == agreement_id, TOKEN.c.key_version == lack)
            .scalar_subquery()
        )
        older = (
            select(TOKEN.c.record_id)
            .where(TOKEN.c.agreement_id == agreement_id, TOKEN.c.key_version == have)
            .scalar_subquery()
        )
        rows = self._c.execute(
            select(RECORD.c.agency_id, RECORD.c.dataset_id, func.count())
            .where(
                RECORD.c.agreement_id == agreement_id,
                RECORD.c.id.in_(older),
                RECORD.c.id.not_in(newer),
            )
            .group_by(RECORD.c.agency_id, RECORD.c.dataset_id)
            .order_by(RECORD.c.agency_id, RECORD.c.dataset_id)
        )
        return [RecordKeyCount(str(a), str(d), int(n)) for a, d, n in rows]


class SqlRecords:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def add_batch(
        self,
        *,
        batch_id: str,
        agreement_id: str,
        dataset_id: str,
        agency_id: str,
        at: str,
        count: int,
    ) -> None:
        self._c.execute(
            insert(BATCH).values(
                id=batch_id,
                agreement_id=agreement_id,
                dataset_id=dataset_id,
                agency_id=agency_id,
                received_at=at,
                record_count=count,
            )
        )

    def add_records(self, records: Sequence[RecordRow]) -> None:
        if records:
            self._c.execute(insert(RECORD), [r.__dict__ for r in records])

    def existing_refs(self, agreement_id: str, dataset_id: str, refs: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for piece in chunked(list(refs)):
            rows = self._c.execute(
                select(RECORD.c.source_ref).where(
                    RECORD.c.agreement_id == agreement_id,
                    RECORD.c.dataset_id == dataset_id,
                    RECORD.c.source_ref.in_(piece),
                )
            )
            found.update(str(r[0]) for r in rows)
        return found

    def of_subject(self, agreement_id: str, subject_id: str) -> list[RecordRow]:
        # Sorted here, not in SQL: an ORDER BY matching the unique index leads SQLite to
        # scan the whole agreement through that index instead of using ix_record_subject.
        rows = self._c.execute(
            select(RECORD).where(
                RECORD.c.agreement_id == agreement_id, RECORD.c.subject_id == subject_id
            )
        )
        found = [RecordRow(**row._mapping) for row in rows]
        return sorted(found, key=lambda r: (r.dataset_id, r.source_ref))

    def by_refs(
        self, agreement_id: str, dataset_id: str, refs: Sequence[str]
    ) -> dict[str, RecordRow]:
        found: dict[str, RecordRow] = {}
        for piece in chunked(list(refs)):
            rows = self._c.execute(
                select(RECORD).where(
                    RECORD.c.agreement_id == agreement_id,
                    RECORD.c.dataset_id == dataset_id,
                    RECORD.c.source_ref.in_(piece),
                )
            )
            for row in rows:
                record = RecordRow(**row._mapping)
                found[record.source_ref] = record
        return found

    def sealed_under(
        self, agreement_id: str, key_version: int, limit: int
    ) -> list[tuple[str, bytes]]:
        rows = self._c.execute(
            select(RECORD.c.id, RECORD.c.payload)
            .where(RECORD.c.agreement_id == agreement_id, RECORD.c.key_version == key_version)
            .order_by(RECORD.c.id)
            .limit(limit)
        )
        return [(str(i), bytes(p)) for i, p in rows]

    def reseal(self, record_id: str, key_version: int, payload: bytes) -> None:
        self._c.execute(
            update(RECORD)
            .where(RECORD.c.id == record_id)
            .values(key_version=key_version, payload=payload)
        )

    def count_by_key_version(self, agreement_id: str) -> dict[int, int]:
        rows = self._c.execute(
            select(RECORD.c.key_version, func.count())
            .where(RECORD.c.agreement_id == agreement_id)
            .group_by(RECORD.c.key_version)
        )
        return {int(v): int(n) for v, n in rows}


class SqlMeta:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def key_check(self) -> str | None:
        row = self._c.execute(select(KEY_CHECK.c.check_value).where(KEY_CHECK.c.id == 1)).first()
        return None if row is None else str(row[0])

    def set_key_check(self, value: str, at: str) -> None:
        self._c.execute(insert(KEY_CHECK).values(id=1, check_value=value, created_at=at))

    def has_data(self) -> bool:
        return self._c.execute(select(RECORD.c.id).limit(1)).first() is not None

    def agreements_with_data(self) -> list[str]:
        rows = self._c.execute(select(SUBJECT.c.agreement_id).distinct())
        return sorted(str(r[0]) for r in rows)
