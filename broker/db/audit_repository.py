"""The audit log's storage: entries, the Merkle tree's nodes, checkpoints and witnesses."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, func, insert, select, text, update

from audit.events import AuditEvent, LoggedEntry, StoredCheckpoint
from audit.tree import NodeKey
from broker.db.handles import (
    AUDIT,
    AUDIT_HEAD,
    CHECKPOINT,
    COSIGNATURE,
    NODE,
    WITNESS_KEY,
)


def entry_from_row(row: Any) -> LoggedEntry:
    """A stored audit row as the core's LoggedEntry."""
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
            yield entry_from_row(row)

    def entry(self, seq: int) -> LoggedEntry | None:
        row = self._c.execute(select(AUDIT).where(AUDIT.c.seq == seq)).first()
        return None if row is None else entry_from_row(row)

    def page(self, *, actor: str | None, after: int, limit: int) -> list[LoggedEntry]:
        query = select(AUDIT).where(AUDIT.c.seq > after)
        if actor is not None:
            query = query.where(AUDIT.c.actor == actor)
        rows = self._c.execute(query.order_by(AUDIT.c.seq).limit(limit))
        return [entry_from_row(row) for row in rows]

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
