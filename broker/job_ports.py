"""What background jobs need from storage, declared here and implemented in ``broker.db``.

As in ``broker.interfaces``, repositories never commit: the job's unit of work
owns the transaction, so a purge and its audit entry commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from audit.events import AuditEvent
from broker.idempotency import IdempotencyRepository
from broker.interfaces import AuditRepository


@dataclass(frozen=True)
class JobRunRow:
    """One recorded run of a job: which scheduled time it answered, where and how it went."""

    job: str
    due_at: str
    next_due_at: str
    worker: str
    started_at: str
    finished_at: str | None
    outcome: str
    error: str | None
    counts: Mapping[str, int]


class JobRepository(Protocol):
    def add_missing(self, names: Sequence[str], first_due_at: str) -> list[str]: ...

    def claim_due(self, names: Sequence[str], now: str) -> tuple[str, str] | None: ...

    def start(
        self, job: str, *, due_at: str, next_due_at: str, worker: str, now: str, lease_until: str
    ) -> int: ...

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
    ) -> None: ...

    def forget_runs(self, job: str, due_before: str) -> int: ...

    def runs(self) -> list[JobRunRow]: ...

    def schedule(self) -> dict[str, str]: ...


class RetentionRepository(Protocol):
    def expired(
        self,
        agreement_id: str,
        agreement_version: int,
        dataset_id: str,
        received_before: str,
        limit: int,
    ) -> dict[str, str]: ...

    def delete_records(self, agreement_id: str, records: Mapping[str, str]) -> tuple[int, int]: ...

    def delete_empty_subjects(self, agreement_id: str, subject_ids: Sequence[str]) -> int: ...


class JobUnitOfWork(Protocol):
    """One transaction of a background job; commit explicitly, roll back on any exception."""

    @property
    def jobs(self) -> JobRepository: ...

    @property
    def retention(self) -> RetentionRepository: ...

    @property
    def idempotency(self) -> IdempotencyRepository: ...

    @property
    def audit(self) -> AuditRepository: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...


class JobUnitOfWorkFactory(Protocol):
    def __call__(self) -> JobUnitOfWork: ...


# Appends an audit entry in the job's transaction, as the broker appends its own.
JobAuditAppender = Callable[[JobUnitOfWork, AuditEvent], object]
