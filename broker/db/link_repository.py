"""SQL storage for the linkage engine: record encodings, token index, possible-match queue.

Works on a connection inside a transaction it does not own: nothing here commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import Connection, RowMapping, func, insert, select, update

from broker.db.handles import LINK_BLOCK, POSSIBLE_MATCH, RECORD, RECORD_ENCODING, TOKEN
from broker.interfaces import chunked
from broker.link.types import EncodedRecord
from broker.possible_matches import QueuedPair, decode_levels, encode_levels


def _blooms_text(blooms: Mapping[str, int]) -> str:
    return json.dumps({k: format(v, "x") for k, v in sorted(blooms.items())})


def _blooms_from(text: str) -> dict[str, int]:
    return {k: int(v, 16) for k, v in json.loads(text).items()}


class SqlLinkStore:
    """Encodings and the queue of one database; ``EncodedRecord.ref`` is the broker's record id."""

    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def add_encodings(
        self,
        agreement_id: str,
        key_version: int,
        encoded: Sequence[EncodedRecord],
        blocks: Mapping[str, Sequence[str]],
    ) -> None:
        """Store each record's encodings and index its block keys (``blocks[ref]``)."""
        if not encoded:
            return
        self._c.execute(
            insert(RECORD_ENCODING),
            [
                {
                    "record_id": e.ref,
                    "agreement_id": agreement_id,
                    "tokens": json.dumps(dict(sorted(e.tokens.items()))),
                    "blooms": _blooms_text(e.blooms),
                    "key_version": key_version,
                }
                for e in encoded
            ],
        )
        rows = [
            {"agreement_id": agreement_id, "token": key, "record_id": e.ref}
            for e in encoded
            for key in sorted(set(blocks.get(e.ref, ())))
        ]
        if rows:
            self._c.execute(insert(LINK_BLOCK), rows)

    def candidates(self, agreement_id: str, tokens: Iterable[str]) -> set[str]:
        """Record ids sharing at least one block key with ``tokens`` (block keys)."""
        found: set[str] = set()
        for part in chunked(sorted(set(tokens))):
            rows = self._c.execute(
                select(LINK_BLOCK.c.record_id).where(
                    LINK_BLOCK.c.agreement_id == agreement_id, LINK_BLOCK.c.token.in_(part)
                )
            )
            found.update(r[0] for r in rows)
        return found

    def encodings(self, agreement_id: str, record_ids: Iterable[str]) -> list[EncodedRecord]:
        """The stored encodings of ``record_ids``, with ``source`` the holding agency."""
        out: list[EncodedRecord] = []
        for part in chunked(sorted(set(record_ids))):
            rows = self._c.execute(
                select(
                    RECORD_ENCODING.c.record_id,
                    RECORD.c.agency_id,
                    RECORD_ENCODING.c.tokens,
                    RECORD_ENCODING.c.blooms,
                )
                .join(RECORD, RECORD.c.id == RECORD_ENCODING.c.record_id)
                .where(
                    RECORD_ENCODING.c.agreement_id == agreement_id,
                    RECORD_ENCODING.c.record_id.in_(part),
                )
            )
            out.extend(
                EncodedRecord(r[0], r[1], json.loads(r[2]), _blooms_from(r[3])) for r in rows
            )
        return sorted(out, key=lambda e: e.ref)

    def all_encodings(self, agreement_id: str) -> list[EncodedRecord]:
        """Every stored encoding of the agreement, by record id."""
        rows = self._c.execute(
            select(
                RECORD_ENCODING.c.record_id,
                RECORD.c.agency_id,
                RECORD_ENCODING.c.tokens,
                RECORD_ENCODING.c.blooms,
            )
            .join(RECORD, RECORD.c.id == RECORD_ENCODING.c.record_id)
            .where(RECORD_ENCODING.c.agreement_id == agreement_id)
            .order_by(RECORD_ENCODING.c.record_id)
        )
        return [EncodedRecord(r[0], r[1], json.loads(r[2]), _blooms_from(r[3])) for r in rows]

    def merge_subjects(self, agreement_id: str, *, keep: str, drop: str) -> None:
        """Move every record and match token of subject ``drop`` to ``keep``."""
        for table in (RECORD, TOKEN):
            self._c.execute(
                update(table)
                .where(table.c.agreement_id == agreement_id, table.c.subject_id == drop)
                .values(subject_id=keep)
            )

    def subjects_of(self, record_ids: Iterable[str]) -> dict[str, str]:
        """Record id to its subject id."""
        out: dict[str, str] = {}
        for part in chunked(sorted(set(record_ids))):
            rows = self._c.execute(
                select(RECORD.c.id, RECORD.c.subject_id).where(RECORD.c.id.in_(part))
            )
            out.update((r[0], r[1]) for r in rows)
        return out

    def source_refs(self, record_ids: Iterable[str]) -> dict[str, str]:
        """Record id to the provider's own record reference."""
        out: dict[str, str] = {}
        for part in chunked(sorted(set(record_ids))):
            rows = self._c.execute(
                select(RECORD.c.id, RECORD.c.source_ref).where(RECORD.c.id.in_(part))
            )
            out.update((r[0], r[1]) for r in rows)
        return out

    def enqueue(self, pairs: Sequence[QueuedPair]) -> None:
        """Add possible matches to the queue."""
        if pairs:
            self._c.execute(insert(POSSIBLE_MATCH), [_row(p) for p in pairs])

    def queued(self, agreement_id: str, agency: str | None = None) -> list[QueuedPair]:
        """The queued pairs (all states); with ``agency``, only those it holds a side of."""
        query = select(POSSIBLE_MATCH).where(POSSIBLE_MATCH.c.agreement_id == agreement_id)
        if agency is not None:
            query = query.where(
                (POSSIBLE_MATCH.c.left_agency == agency) | (POSSIBLE_MATCH.c.right_agency == agency)
            )
        rows = self._c.execute(query.order_by(POSSIBLE_MATCH.c.created_at, POSSIBLE_MATCH.c.id))
        return [_pair(r._mapping) for r in rows]

    def pair(self, agreement_id: str, pair_id: str) -> QueuedPair | None:
        """One queued pair, or None."""
        row = self._c.execute(
            select(POSSIBLE_MATCH).where(
                POSSIBLE_MATCH.c.agreement_id == agreement_id, POSSIBLE_MATCH.c.id == pair_id
            )
        ).first()
        return _pair(row._mapping) if row is not None else None

    def save_decision(self, pair: QueuedPair) -> None:
        """Store a pair's decisions and state."""
        self._c.execute(
            update(POSSIBLE_MATCH)
            .where(POSSIBLE_MATCH.c.id == pair.id)
            .values(
                state=pair.state,
                left_decision=pair.left_decision,
                right_decision=pair.right_decision,
                resolved_at=pair.resolved_at,
            )
        )

    def queue_counts(self, agreement_id: str) -> dict[str, int]:
        """Queued pairs per state."""
        rows = self._c.execute(
            select(POSSIBLE_MATCH.c.state, func.count())
            .where(POSSIBLE_MATCH.c.agreement_id == agreement_id)
            .group_by(POSSIBLE_MATCH.c.state)
        )
        return {r[0]: int(r[1]) for r in rows}


def _row(p: QueuedPair) -> dict[str, object]:
    return {
        "id": p.id,
        "agreement_id": p.agreement_id,
        "left_record_id": p.left_record_id,
        "right_record_id": p.right_record_id,
        "left_agency": p.left_agency,
        "right_agency": p.right_agency,
        "levels": encode_levels(p.levels),
        "probability": p.probability,
        "state": p.state,
        "left_decision": p.left_decision,
        "right_decision": p.right_decision,
        "created_at": p.created_at,
        "resolved_at": p.resolved_at,
    }


def _pair(m: RowMapping) -> QueuedPair:
    return QueuedPair(
        id=str(m["id"]),
        agreement_id=str(m["agreement_id"]),
        left_record_id=str(m["left_record_id"]),
        right_record_id=str(m["right_record_id"]),
        left_agency=str(m["left_agency"]),
        right_agency=str(m["right_agency"]),
        levels=decode_levels(str(m["levels"])),
        probability=float(m["probability"]),
        state=str(m["state"]),
        left_decision=m["left_decision"] if isinstance(m["left_decision"], str) else None,
        right_decision=m["right_decision"] if isinstance(m["right_decision"], str) else None,
        created_at=str(m["created_at"]),
        resolved_at=m["resolved_at"] if isinstance(m["resolved_at"], str) else None,
    )
