"""Storage for background jobs: the job rows workers claim, their runs, and retention deletes.

Implements ``broker.job_ports``. Like every repository here, none commits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from sqlalchemy import Connection, delete, exists, insert, or_, select, update

from broker.db.handles import (
    JOB,
    JOB_RUN,
    LINK_BLOCK,
    POSSIBLE_MATCH,
    RECORD,
    RECORD_ENCODING,
    SUBJECT,
    TOKEN,
)
from broker.interfaces import chunked
from broker.job_ports import JobRunRow


class SqlJobs:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def add_missing(self, names: Sequence[str], first_due_at: str) -> list[str]:
        """Add a row for each job not yet held; returns the names added."""
        held = {str(n) for (n,) in self._c.execute(select(JOB.c.name))}
        missing = [name for name in names if name not in held]
        if missing:
            self._c.execute(
                insert(JOB), [{"name": name, "next_due_at": first_due_at} for name in missing]
            )
        return missing

    def claim_due(self, names: Sequence[str], now: str) -> tuple[str, str] | None:
        """Lock one due job that no live lease holds, skipping rows another worker has locked.

        On SQLite the locking clause compiles to nothing: ``BEGIN IMMEDIATE``
        has already given this transaction the only write lock.
        """
        row = self._c.execute(
            select(JOB.c.name, JOB.c.next_due_at)
            .where(
                JOB.c.name.in_(list(names)),
                JOB.c.next_due_at <= now,
                or_(JOB.c.lease_until.is_(None), JOB.c.lease_until <= now),
            )
            .order_by(JOB.c.next_due_at, JOB.c.name)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        return None if row is None else (str(row[0]), str(row[1]))

    def start(
        self, job: str, *, due_at: str, next_due_at: str, worker: str, now: str, lease_until: str
    ) -> int:
        """Move the job on to its next due time under this worker's lease, and record the run."""
        self._c.execute(
            update(JOB)
            .where(JOB.c.name == job)
            .values(next_due_at=next_due_at, lease_owner=worker, lease_until=lease_until)
        )
        run_id = self._c.execute(
            insert(JOB_RUN)
            .values(
                job=job,
                due_at=due_at,
                next_due_at=next_due_at,
                worker=worker,
                started_at=now,
                outcome="running",
                counts="{}",
            )
            .returning(JOB_RUN.c.id)
        ).scalar_one()
        return int(run_id)

    def finish(
        self,
        run_id: int,
        job: str,
        *,
        worker: str,
        at: str,
        outcome: str,
        error: str | None,
        counts: Mapping[str, int],
    ) -> None:
        """Record how the run ended and give up the lease, if this worker still holds it."""
        self._c.execute(
            update(JOB_RUN)
            .where(JOB_RUN.c.id == run_id)
            .values(
                finished_at=at,
                outcome=outcome,
                error=error,
                counts=json.dumps(dict(counts), sort_keys=True),
            )
        )
        self._c.execute(
            update(JOB)
            .where(JOB.c.name == job, JOB.c.lease_owner == worker)
            .values(lease_owner=None, lease_until=None)
        )

    def forget_runs(self, job: str, due_before: str) -> int:
        """Delete the finished runs of ``job`` scheduled before ``due_before``."""
        result = self._c.execute(
            delete(JOB_RUN).where(
                JOB_RUN.c.job == job,
                JOB_RUN.c.due_at < due_before,
                JOB_RUN.c.finished_at.is_not(None),
            )
        )
        return int(result.rowcount)

    def runs(self) -> list[JobRunRow]:
        """Every recorded run, by job and scheduled time."""
        rows = self._c.execute(select(JOB_RUN).order_by(JOB_RUN.c.job, JOB_RUN.c.due_at))
        found: list[JobRunRow] = []
        for row in rows:
            values = dict(row._mapping)
            values.pop("id")
            values["counts"] = json.loads(values["counts"])
            found.append(JobRunRow(**values))
        return found

    def schedule(self) -> dict[str, str]:
        """When each held job is next due."""
        return {str(n): str(d) for n, d in self._c.execute(select(JOB.c.name, JOB.c.next_due_at))}


class SqlRetention:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def expired(
        self,
        agreement_id: str,
        agreement_version: int,
        dataset_id: str,
        received_before: str,
        limit: int,
    ) -> dict[str, str]:
        """Up to ``limit`` records of one dataset received before the cut-off: id to subject id."""
        rows = self._c.execute(
            select(RECORD.c.id, RECORD.c.subject_id)
            .where(
                RECORD.c.agreement_id == agreement_id,
                RECORD.c.dataset_id == dataset_id,
                RECORD.c.agreement_version == agreement_version,
                RECORD.c.received_at < received_before,
            )
            .order_by(RECORD.c.received_at, RECORD.c.id)
            .limit(limit)
        )
        return {str(r): str(s) for r, s in rows}

    def delete_records(self, agreement_id: str, records: Mapping[str, str]) -> tuple[int, int]:
        """Delete records and every token made from them (any key version): (records, tokens).

        The linkage engine's rows about them go too (encodings, blocking keys and any
        queued possible match naming one of them), in the same transaction.
        """
        deleted_records = deleted_tokens = 0
        for piece in chunked(sorted(records)):
            subjects = sorted({records[r] for r in piece})
            self._c.execute(
                delete(POSSIBLE_MATCH).where(
                    POSSIBLE_MATCH.c.left_record_id.in_(piece)
                    | POSSIBLE_MATCH.c.right_record_id.in_(piece)
                )
            )
            self._c.execute(delete(LINK_BLOCK).where(LINK_BLOCK.c.record_id.in_(piece)))
            self._c.execute(delete(RECORD_ENCODING).where(RECORD_ENCODING.c.record_id.in_(piece)))
            # The subject filter lets the database use ix_match_token_subject.
            tokens = self._c.execute(
                delete(TOKEN).where(
                    TOKEN.c.agreement_id == agreement_id,
                    TOKEN.c.subject_id.in_(subjects),
                    TOKEN.c.record_id.in_(piece),
                )
            )
            deleted_tokens += int(tokens.rowcount)
            gone = self._c.execute(
                delete(RECORD).where(RECORD.c.agreement_id == agreement_id, RECORD.c.id.in_(piece))
            )
            deleted_records += int(gone.rowcount)
        return deleted_records, deleted_tokens

    def delete_empty_subjects(self, agreement_id: str, subject_ids: Sequence[str]) -> int:
        """Delete those of ``subject_ids`` that no record belongs to any more."""
        deleted = 0
        for piece in chunked(sorted(set(subject_ids))):
            result = self._c.execute(
                delete(SUBJECT).where(
                    SUBJECT.c.agreement_id == agreement_id,
                    SUBJECT.c.id.in_(piece),
                    ~exists().where(RECORD.c.subject_id == SUBJECT.c.id),
                    ~exists().where(TOKEN.c.subject_id == SUBJECT.c.id),
                )
            )
            deleted += int(result.rowcount)
        return deleted
