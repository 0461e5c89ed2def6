"""SQL implementations of the repositories the core declares in ``broker.interfaces``.

Each works on a connection inside a transaction it does not own: none commits.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table, func, insert, select, text, update

from audit.events import AuditEvent, LoggedEntry, StoredCheckpoint
from audit.tree import NodeKey
from broker.db import tables
from broker.interfaces import AgreementRow, RecordRow, TokenRow, chunked


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


CREDENTIAL = _table(tables.AgencyCredential)
SUBJECT = _table(tables.Subject)
BATCH = _table(tables.Batch)
RECORD = _table(tables.StoredRecord)
TOKEN = _table(tables.MatchToken)
AUDIT = _table(tables.AuditEntry)
AUDIT_HEAD = _table(tables.AuditHead)
KEY_CHECK = _table(tables.KeyCheck)
NODE = _table(tables.MerkleNode)
CHECKPOINT = _table(tables.AuditCheckpoint)
COSIGNATURE = _table(tables.Cosignature)
WITNESS_KEY = _table(tables.WitnessKey)
AGREEMENT = _table(tables.AgreementDocument)
GENERATION = _table(tables.AgreementGeneration)
APPROVER_KEY = _table(tables.ApproverKey)


class SqlCredentials:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def add(self, agency_id: str, key_digest: str, created_at: str, role: str = "system") -> None:
        self._c.execute(
            insert(CREDENTIAL).values(
                agency_id=agency_id, key_digest=key_digest, created_at=created_at, role=role
            )
        )

    def revoke_all(self, agency_id: str, at: str) -> int:
        result = self._c.execute(
            update(CREDENTIAL)
            .where(CREDENTIAL.c.agency_id == agency_id, CREDENTIAL.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return int(result.rowcount)

    def agency_for(self, key_digest: str) -> tuple[str, str] | None:
        row = self._c.execute(
            select(CREDENTIAL.c.agency_id, CREDENTIAL.c.role).where(
                CREDENTIAL.c.key_digest == key_digest, CREDENTIAL.c.revoked_at.is_(None)
            )
        ).first()
        return None if row is None else (str(row[0]), str(row[1]))


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
                    }
                    for t in tokens
                ],
            )

    def subjects_for_tokens(
        self, agreement_id: str, match_key: str, tokens: Sequence[str]
    ) -> Mapping[str, set[str]]:
        found: dict[str, set[str]] = defaultdict(set)
        for piece in chunked(sorted(set(tokens))):
            rows = self._c.execute(
                select(TOKEN.c.token, TOKEN.c.subject_id).where(
                    TOKEN.c.agreement_id == agreement_id,
                    TOKEN.c.match_key == match_key,
                    TOKEN.c.token.in_(piece),
                )
            )
            for token, subject_id in rows:
                found[token].add(subject_id)
        return found

    def tokens_of_subjects(
        self, agreement_id: str, match_key: str, subject_ids: Sequence[str]
    ) -> Mapping[str, set[str]]:
        found: dict[str, set[str]] = defaultdict(set)
        for piece in chunked(sorted(set(subject_ids))):
            rows = self._c.execute(
                select(TOKEN.c.subject_id, TOKEN.c.token).where(
                    TOKEN.c.agreement_id == agreement_id,
                    TOKEN.c.match_key == match_key,
                    TOKEN.c.subject_id.in_(piece),
                )
            )
            for subject_id, token in rows:
                found[subject_id].add(token)
        return found


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


def _entry_from_row(row: Any) -> LoggedEntry:
    event = AuditEvent(
        actor=row.actor,
        action=row.action,
        outcome=row.outcome,
        reason_code=row.reason_code,
        agreement_id=row.agreement_id,
        agreement_version=row.agreement_version,
        purpose=row.purpose,
        dataset_id=row.dataset_id,
        request_id=row.request_id,
        detail=json.loads(row.detail),
    )
    return LoggedEntry(seq=row.seq, at=row.at, event=event, leaf_hash=row.leaf_hash)


class SqlNodes:
    """The log's Merkle nodes; one query per read, whatever the number of keys."""

    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def get_nodes(self, keys: Collection[NodeKey]) -> Mapping[NodeKey, bytes]:
        if not keys:
            return {}
        # An OR of key pairs uses the primary key on both databases; a row-value IN
        # list makes SQLite scan the table. Plain SQL text: this runs on every append,
        # and building the same query as expression objects cost more than running it.
        pairs = sorted(keys)
        where = " OR ".join(f"(level = :l{n} AND idx = :i{n})" for n in range(len(pairs)))
        params: dict[str, int] = {}
        for n, (level, index) in enumerate(pairs):
            params[f"l{n}"] = level
            params[f"i{n}"] = index
        rows = self._c.execute(
            text(f"SELECT level, idx, hash FROM merkle_node WHERE {where}"),  # noqa: S608
            params,
        )
        return {(int(lv), int(ix)): bytes(h) for lv, ix, h in rows}

    def put_nodes(self, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        if nodes:
            self._c.execute(
                insert(NODE), [{"level": lv, "idx": ix, "hash": h} for lv, ix, h in nodes]
            )

    def level_range(self, level: int, first: int, last: int) -> dict[int, bytes]:
        """Stored nodes of one level with index in [first, last], for full verification."""
        rows = self._c.execute(
            select(NODE.c.idx, NODE.c.hash).where(
                NODE.c.level == level, NODE.c.idx >= first, NODE.c.idx <= last
            )
        )
        return {int(ix): bytes(h) for ix, h in rows}

    def count(self) -> int:
        """How many nodes are stored."""
        return int(self._c.execute(select(func.count()).select_from(NODE)).scalar_one())


class SqlAudit:
    def __init__(self, connection: Connection) -> None:
        self._c = connection
        self.nodes = SqlNodes(connection)

    def lock_head(self) -> tuple[int, str]:
        # FOR UPDATE serialises appends across PostgreSQL workers; on SQLite the
        # engine's BEGIN IMMEDIATE already serialises writers and this is a plain read.
        row = self._c.execute(
            select(AUDIT_HEAD.c.size, AUDIT_HEAD.c.head_hash)
            .where(AUDIT_HEAD.c.id == 1)
            .with_for_update()
        ).one()
        return int(row.size), str(row.head_hash)

    def head(self) -> tuple[int, str]:
        row = self._c.execute(
            select(AUDIT_HEAD.c.size, AUDIT_HEAD.c.head_hash).where(AUDIT_HEAD.c.id == 1)
        ).one()
        return int(row.size), str(row.head_hash)

    def append(self, entry: LoggedEntry) -> None:
        e = entry.event
        subject = e.detail.get("subject")
        self._c.execute(
            insert(AUDIT).values(
                seq=entry.seq,
                at=entry.at,
                actor=e.actor,
                action=e.action,
                outcome=e.outcome,
                reason_code=e.reason_code,
                agreement_id=e.agreement_id,
                agreement_version=e.agreement_version,
                purpose=e.purpose,
                dataset_id=e.dataset_id,
                request_id=e.request_id,
                subject_id=subject if isinstance(subject, str) else None,
                detail=json.dumps(e.detail, sort_keys=True, separators=(",", ":")),
                leaf_hash=entry.leaf_hash,
            )
        )

    def set_head(self, size: int, head_hash: str) -> None:
        self._c.execute(
            update(AUDIT_HEAD).where(AUDIT_HEAD.c.id == 1).values(size=size, head_hash=head_hash)
        )

    def iter_all(self) -> Iterator[LoggedEntry]:
        result = self._c.execution_options(yield_per=2000).execute(
            select(AUDIT).order_by(AUDIT.c.seq)
        )
        for row in result:
            yield _entry_from_row(row)

    def entry(self, seq: int) -> LoggedEntry | None:
        row = self._c.execute(select(AUDIT).where(AUDIT.c.seq == seq)).first()
        return None if row is None else _entry_from_row(row)

    def page(self, *, actor: str | None, after: int, limit: int) -> list[LoggedEntry]:
        query = select(AUDIT).where(AUDIT.c.seq > after)
        if actor is not None:
            query = query.where(AUDIT.c.actor == actor)
        rows = self._c.execute(query.order_by(AUDIT.c.seq).limit(limit))
        return [_entry_from_row(row) for row in rows]

    # -- checkpoints and witnesses -------------------------------------------

    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        self._c.execute(
            insert(CHECKPOINT).values(
                size=checkpoint.size,
                root_hash=checkpoint.root_hash,
                note=checkpoint.note,
                created_at=checkpoint.created_at,
            )
        )

    def _checkpoints(self, where: Any = None, *, latest: bool = False) -> list[StoredCheckpoint]:
        query = select(CHECKPOINT)
        if where is not None:
            query = query.where(where)
        query = query.order_by(CHECKPOINT.c.size.desc() if latest else CHECKPOINT.c.size)
        if latest:
            query = query.limit(1)
        found = list(self._c.execute(query))
        if not found:
            return []
        sizes = [int(r.size) for r in found]
        lines: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for piece in range(0, len(sizes), 500):
            for row in self._c.execute(
                select(COSIGNATURE)
                .where(COSIGNATURE.c.checkpoint_size.in_(sizes[piece : piece + 500]))
                .order_by(COSIGNATURE.c.witness)
            ):
                lines[int(row.checkpoint_size)].append((str(row.witness), str(row.line)))
        return [
            StoredCheckpoint(
                size=int(r.size),
                root_hash=str(r.root_hash),
                note=str(r.note),
                created_at=str(r.created_at),
                cosignatures=tuple(lines.get(int(r.size), ())),
            )
            for r in found
        ]

    def latest_checkpoint_mark(self) -> tuple[int, str] | None:
        """Size and time of the newest checkpoint: all an append needs to know."""
        row = self._c.execute(
            select(CHECKPOINT.c.size, CHECKPOINT.c.created_at)
            .order_by(CHECKPOINT.c.size.desc())
            .limit(1)
        ).first()
        return None if row is None else (int(row[0]), str(row[1]))

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        found = self._checkpoints(latest=True)
        return found[0] if found else None

    def checkpoint(self, size: int) -> StoredCheckpoint | None:
        found = self._checkpoints(CHECKPOINT.c.size == size)
        return found[0] if found else None

    def checkpoint_covering(self, size: int) -> StoredCheckpoint | None:
        row = self._c.execute(
            select(CHECKPOINT.c.size).where(CHECKPOINT.c.size >= size).order_by(CHECKPOINT.c.size)
        ).first()
        return None if row is None else self.checkpoint(int(row[0]))

    def checkpoints(self) -> list[StoredCheckpoint]:
        return self._checkpoints()

    def add_cosignature(self, size: int, witness: str, line: str, at: str) -> None:
        self._c.execute(
            insert(COSIGNATURE).values(
                checkpoint_size=size, witness=witness, line=line, created_at=at
            )
        )

    def witness_keys(self) -> dict[str, str]:
        rows = self._c.execute(select(WITNESS_KEY.c.name, WITNESS_KEY.c.public_key))
        return {str(name): str(key) for name, key in rows}

    def add_witness_key(self, name: str, public_key: str, at: str) -> None:
        self._c.execute(insert(WITNESS_KEY).values(name=name, public_key=public_key, added_at=at))


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


class SqlAgreements:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def add(self, row: AgreementRow) -> None:
        self._c.execute(insert(AGREEMENT).values(**row.__dict__))

    def get(self, agreement_id: str, version: int) -> AgreementRow | None:
        row = self._c.execute(
            select(AGREEMENT).where(
                AGREEMENT.c.agreement_id == agreement_id, AGREEMENT.c.version == version
            )
        ).first()
        return None if row is None else AgreementRow(**row._mapping)

    def all(self) -> list[AgreementRow]:
        rows = self._c.execute(
            select(AGREEMENT).order_by(AGREEMENT.c.agreement_id, AGREEMENT.c.version)
        )
        return [AgreementRow(**row._mapping) for row in rows]

    def set_status(
        self, agreement_id: str, version: int, status: str, reason: str | None, at: str
    ) -> None:
        self._c.execute(
            update(AGREEMENT)
            .where(AGREEMENT.c.agreement_id == agreement_id, AGREEMENT.c.version == version)
            .values(status=status, status_reason=reason, updated_at=at)
        )

    def set_document(
        self, agreement_id: str, version: int, document: str, digest: str, at: str
    ) -> None:
        self._c.execute(
            update(AGREEMENT)
            .where(AGREEMENT.c.agreement_id == agreement_id, AGREEMENT.c.version == version)
            .values(document=document, digest=digest, updated_at=at)
        )

    def generation(self) -> int:
        row = self._c.execute(select(GENERATION.c.generation).where(GENERATION.c.id == 1)).one()
        return int(row[0])

    def bump_generation(self) -> int:
        # An UPDATE takes the row lock, so concurrent lifecycle changes serialise here.
        self._c.execute(
            update(GENERATION)
            .where(GENERATION.c.id == 1)
            .values(generation=GENERATION.c.generation + 1)
        )
        return self.generation()

    def approver_keys(self) -> dict[str, set[str]]:
        rows = self._c.execute(
            select(APPROVER_KEY.c.agency_id, APPROVER_KEY.c.public_key).where(
                APPROVER_KEY.c.revoked_at.is_(None)
            )
        )
        found: dict[str, set[str]] = defaultdict(set)
        for agency_id, public_key in rows:
            found[str(agency_id)].add(str(public_key))
        return dict(found)

    def add_approver_key(self, agency_id: str, public_key: str, at: str) -> None:
        self._c.execute(
            insert(APPROVER_KEY).values(agency_id=agency_id, public_key=public_key, added_at=at)
        )

    def revoke_approver_key(self, agency_id: str, public_key: str, at: str) -> bool:
        result = self._c.execute(
            update(APPROVER_KEY)
            .where(
                APPROVER_KEY.c.agency_id == agency_id,
                APPROVER_KEY.c.public_key == public_key,
                APPROVER_KEY.c.revoked_at.is_(None),
            )
            .values(revoked_at=at)
        )
        return bool(result.rowcount)
