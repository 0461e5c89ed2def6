"""Background jobs that run once across all workers: due checkpoints, and retention.

Every worker runs a ``JobRunner``. Each job has one row in the database saying
when it is next due; a worker claims a due row (PostgreSQL: ``SELECT ... FOR
UPDATE SKIP LOCKED``; SQLite: ``BEGIN IMMEDIATE`` serialises the claim), moves
it on to its next due time, takes a lease and records the run, all in one
transaction. Only then does it do the work, and it records the outcome after.
So each scheduled time is run by one worker only (the database's unique
constraint on job and due time backs this up), and the lease keeps a second
worker from starting the same job while the first still runs it; a worker that
dies mid-run loses its lease when it expires, and the job runs at its next time.

A slot that passes while no worker runs (all stopped, or a run that overran)
is skipped rather than run late: each job here catches up in one run.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from agreements.models import Agreement, Dataset
from agreements.registry import AgreementRegistry
from audit.events import AuditEvent, StoredCheckpoint
from broker.clock import Clock
from broker.errors import AccordError, ConfigError, Conflict
from broker.idempotency import DEFAULT_RETENTION as IDEMPOTENCY_RETENTION
from broker.job_ports import JobAuditAppender, JobUnitOfWorkFactory

log = logging.getLogger("broker.jobs")

CHECKPOINT: Final = "checkpoint"
RETENTION: Final = "retention"
# Who background work is audited as; the colon keeps it apart from every agency id.
JOBS_ACTOR: Final = "broker:jobs"

JobWork = Callable[[], Mapping[str, int]]


@dataclass(frozen=True)
class Job:
    """A named piece of work, how often it is due, and the work (which returns counts)."""

    name: str
    every: timedelta
    work: JobWork

    def __post_init__(self) -> None:
        if self.every <= timedelta(0):
            raise ConfigError(f"job '{self.name}' must be due at a positive interval")


def next_due(due: datetime, now: datetime, every: timedelta) -> datetime:
    """The first time after ``now`` on ``due``'s grid (``due + k * every``, k >= 1)."""
    steps = max(0, (now - due) // every) + 1
    return due + steps * every


def stamp(at: datetime) -> str:
    """A time as stored: ISO 8601 to the microsecond, so stored times sort as text."""
    return at.isoformat(timespec="microseconds")


def error_name(exc: BaseException) -> str:
    """What a failure may be recorded as: its stable code, or its type; never its message."""
    return exc.code if isinstance(exc, AccordError) else type(exc).__name__


def default_worker_id() -> str:
    """Host, process and a random suffix: unique among workers, and no personal data."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True)
class _Claim:
    run_id: int
    job: Job


class JobRunner:
    """Runs the jobs that are due, once across all workers sharing the database.

    ``run_due`` does one round in the caller's thread (tests use it directly);
    ``start`` runs rounds every ``poll_seconds`` (give or take a tenth, so
    workers started together do not poll in step) on a thread until ``stop``.
    A failing job is recorded as failed and logged by its error type; nothing
    a job raises stops the loop.
    """

    def __init__(
        self,
        *,
        units: JobUnitOfWorkFactory,
        jobs: Sequence[Job],
        clock: Clock,
        worker: str | None = None,
        poll_seconds: float = 5.0,
        lease_seconds: float = 600.0,
        keep_runs: timedelta = timedelta(days=7),
    ) -> None:
        names = [job.name for job in jobs]
        if len(set(names)) != len(names):
            raise ConfigError("job names must be unique")
        if poll_seconds <= 0 or lease_seconds <= 0:
            raise ConfigError("the job poll and lease times must be positive")
        self._units = units
        self._jobs = {job.name: job for job in jobs}
        self._clock = clock
        self.worker = worker or default_worker_id()
        self._poll = poll_seconds
        self._lease = timedelta(seconds=lease_seconds)
        self._keep_runs = keep_runs
        self._registered = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the background thread is polling."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def names(self) -> list[str]:
        """The jobs this runner knows, by name."""
        return sorted(self._jobs)

    def register(self) -> None:
        """Add a row, due now, for every job the database does not hold yet."""
        for attempt in (1, 2):
            try:
                with self._units() as uow:
                    uow.jobs.add_missing(self.names, stamp(self._clock.now()))
                    uow.commit()
                break
            except Conflict:
                # Another worker added the same rows at the same moment: read them next time.
                if attempt == 2:
                    raise
        self._registered = True

    def overdue(self) -> int:
        """How many jobs are due and not yet claimed: the queue depth monitoring watches."""
        now = stamp(self._clock.now())
        with self._units() as uow:
            return sum(1 for due in uow.jobs.schedule().values() if due <= now)

    def run_due(self) -> int:
        """Claim and run every job that is due now and not running elsewhere; how many ran."""
        if not self._registered:
            self.register()
        ran = 0
        while not self._stopping.is_set():
            claim = self._claim()
            if claim is None:
                break
            self._run(claim)
            ran += 1
        return ran

    def start(self) -> None:
        """Run rounds on a background thread until ``stop``."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="accord-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the job under way (if any) finishes; wait up to ``timeout`` seconds."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.run_due()
            except Exception as exc:  # the loop outlives any failure; the next round retries
                log.error("background jobs could not run: %s", error_name(exc))
            # Jitter spreads workers' polls; it is not a secret.
            self._stopping.wait(self._poll * random.uniform(0.9, 1.1))  # noqa: S311

    def _claim(self) -> _Claim | None:
        now = self._clock.now()
        with self._units() as uow:
            found = uow.jobs.claim_due(self.names, stamp(now))
            if found is None:
                return None
            name, due_text = found
            job = self._jobs[name]
            run_id = uow.jobs.start(
                name,
                due_at=due_text,
                next_due_at=stamp(next_due(datetime.fromisoformat(due_text), now, job.every)),
                worker=self.worker,
                now=stamp(now),
                lease_until=stamp(now + self._lease),
            )
            uow.jobs.forget_runs(name, stamp(now - self._keep_runs))
            uow.commit()
        return _Claim(run_id, job)

    def _run(self, claim: _Claim) -> None:
        error: str | None = None
        counts: Mapping[str, int] = {}
        try:
            counts = claim.job.work()
        except Exception as exc:  # recorded and logged by type; the other jobs still run
            error = error_name(exc)
            log.error("background job %s failed: %s", claim.job.name, error)
        with self._units() as uow:
            uow.jobs.finish(
                claim.run_id,
                claim.job.name,
                worker=self.worker,
                at=stamp(self._clock.now()),
                outcome="failed" if error else "succeeded",
                error=error,
                counts=counts,
            )
            uow.commit()


def checkpoint_job(latest_checkpoint: Callable[[], StoredCheckpoint], every: timedelta) -> Job:
    """Sign a checkpoint when entries have waited for one (``AuditTrail.latest_checkpoint``).

    Appends sign every N entries themselves; this covers a quiet log, whose
    last entries would otherwise wait for the next append.
    """

    def work() -> Mapping[str, int]:
        return {"checkpoint_size": latest_checkpoint().size}

    return Job(CHECKPOINT, every, work)


class RetentionPurge:
    """Delete records kept past their dataset's retention period, their tokens and empty subjects.

    A record is governed by the agreement version it was received under, so the
    retention period is that version's. Each batch is deleted in one transaction
    with an audit entry counting it (agreement, version, dataset, how many
    records, tokens and subjects); no entry names a record or a subject.
    """

    def __init__(
        self,
        *,
        units: JobUnitOfWorkFactory,
        registry: Callable[[], AgreementRegistry],
        audit: JobAuditAppender,
        clock: Clock,
        batch_size: int = 1000,
        idempotency_keys: timedelta = IDEMPOTENCY_RETENTION,
    ) -> None:
        if batch_size < 1:
            raise ConfigError("the retention batch size must be at least 1")
        self._units = units
        self._registry = registry
        self._audit = audit
        self._clock = clock
        self._batch = batch_size
        self._keys_kept = idempotency_keys

    def __call__(self) -> Mapping[str, int]:
        """Purge every dataset that states a retention period; returns the totals deleted."""
        now = self._clock.now()
        totals: Counter[str] = Counter(records=0, tokens=0, subjects=0)
        for agreement in self._registry().all_versions():
            for dataset in agreement.datasets:
                if dataset.retention is None:
                    continue
                cutoff = stamp(now - timedelta(days=dataset.retention.period_days))
                while True:
                    deleted = self._purge_batch(agreement, dataset, cutoff)
                    totals.update(deleted)
                    if deleted["records"] < self._batch:
                        break
        totals["idempotency_keys"] = self._forget_keys(stamp(now - self._keys_kept))
        return dict(totals)

    def _forget_keys(self, cutoff: str) -> int:
        """Forget ingest idempotency keys stored before the cut-off (``broker.idempotency``).

        Not audited: a key's row holds digests and the broker's own counts, nothing
        about a person, and a retry after this is simply processed afresh.
        """
        with self._units() as uow:
            forgotten = uow.idempotency.purge(cutoff)
            uow.commit()
        return forgotten

    def _purge_batch(self, agreement: Agreement, dataset: Dataset, cutoff: str) -> Counter[str]:
        assert dataset.retention is not None  # checked by the caller
        with self._units() as uow:
            expired = uow.retention.expired(
                agreement.id, agreement.version, dataset.id, cutoff, self._batch
            )
            if not expired:
                return Counter(records=0)
            records, tokens = uow.retention.delete_records(agreement.id, expired)
            subjects = uow.retention.delete_empty_subjects(agreement.id, list(expired.values()))
            counts = Counter(records=records, tokens=tokens, subjects=subjects)
            self._audit(
                uow,
                AuditEvent(
                    actor=JOBS_ACTOR,
                    action="retention_purge",
                    outcome="permitted",
                    agreement_id=agreement.id,
                    agreement_version=agreement.version,
                    dataset_id=dataset.id,
                    detail={
                        **counts,
                        "period_days": dataset.retention.period_days,
                        "received_before": cutoff,
                    },
                ),
            )
            uow.commit()
        return counts


def retention_job(purge: RetentionPurge, every: timedelta) -> Job:
    """Delete expired records every ``every``."""
    return Job(RETENTION, every, purge)
