"""Starting a server: wait for the database, build the runtime, and wire its background jobs.

``broker.bootstrap`` builds a runtime once and fails at once, which is right
for CLI commands. A server started beside its database (compose, Kubernetes)
may come up first, so ``build_runtime_with_retry`` waits for the database with
exponential backoff, within a bound, before it gives up with one clear line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from audit import log as audit_log
from audit.events import AuditEvent
from broker.bootstrap import Runtime, build_runtime
from broker.clock import Clock, SystemClock
from broker.config import Settings
from broker.db.engine import create_database_engine, database_kind
from broker.db.migrate import current_revision, head_revision, known_revisions
from broker.db.uow import SqlUnitOfWorkFactory
from broker.errors import StorageError
from broker.job_ports import JobUnitOfWork
from broker.jobs import JobRunner, RetentionPurge, checkpoint_job, retention_job, stamp
from broker.notify import RetrySchedule, WebhookPolicy
from broker.service_notify import NotificationDelivery, notification_job
from broker.webhook_sender import HttpxWebhookSender

# Failures that waiting will not mend: the server answered and refused.
_REFUSALS = ("does not exist", "password authentication failed", "no pg_hba.conf entry")


def wait_for_database(
    url: str,
    *,
    max_wait_seconds: float = 30.0,
    first_delay_seconds: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    """Return once the database at ``url`` accepts a connection; how many attempts it took.

    Waits 0.5 s, 1 s, 2 s ... (capped at 8 s) between attempts, for at most
    ``max_wait_seconds`` in all, then raises StorageError. A server that
    answers but refuses (unknown database or role, wrong password) is not
    waited for. SQLite needs no wait: the file is local.
    """
    if database_kind(url) == "sqlite":
        return 1
    engine = create_database_engine(url)
    deadline = monotonic() + max_wait_seconds
    delay = first_delay_seconds
    attempts = 0
    try:
        while True:
            attempts += 1
            try:
                with engine.connect():
                    return attempts
            except SQLAlchemyError as exc:
                reason = _reason(exc)
                if reason is not None:
                    raise StorageError(
                        f"the database server refused the connection ({reason}); "
                        "check BROKER_DATABASE_URL"
                    ) from exc
                left = deadline - monotonic()
                if left <= 0:
                    raise StorageError(
                        f"the database did not answer after {attempts} attempts in "
                        f"{max_wait_seconds:g} s; check BROKER_DATABASE_URL and that the "
                        "server is running"
                    ) from exc
                sleep(min(delay, left))
                delay = min(delay * 2, 8.0)
    finally:
        engine.dispose()


def _reason(exc: SQLAlchemyError) -> str | None:
    # libpq reports a refusal as text only (no SQLSTATE on connection errors); the
    # reason is named from a fixed list, so no part of the server's message is repeated.
    text = str(getattr(exc, "orig", exc))
    return next((r for r in _REFUSALS if r in text), None)


def build_runtime_with_retry(
    settings: Settings,
    *,
    max_wait_seconds: float = 30.0,
    first_delay_seconds: float = 0.5,
    clock: Clock | None = None,
) -> Runtime:
    """``build_runtime`` once the database answers (see ``wait_for_database``)."""
    wait_for_database(
        settings.database_url,
        max_wait_seconds=max_wait_seconds,
        first_delay_seconds=first_delay_seconds,
    )
    return build_runtime(settings, clock=clock)


class SchemaWatch:
    """Whether the database schema is at this code's migration head, for readiness."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._head = head_revision()
        self._known = known_revisions()

    def require_current(self) -> None:
        """Raise StorageError (``migrations_pending``) while the database is behind the code.

        A database ahead of the code is not refused here: migrations are
        additive, so workers of the previous version keep serving while the
        next version's migration runs (start-up refuses such a database).
        """
        try:
            current = current_revision(self._engine)
        except SQLAlchemyError as exc:
            raise StorageError("the database does not answer; try again shortly") from exc
        if current == self._head or (current is not None and current not in self._known):
            return
        raise StorageError(
            f"database migrations are pending (at {current or 'none'}, code needs "
            f"{self._head}); run 'broker db upgrade'",
            code="migrations_pending",
        )


@dataclass(frozen=True)
class JobOptions:
    """How this worker runs background jobs (candidates for ``BROKER_JOB_*`` settings).

    ``checkpoint_every_seconds`` None means the log's own
    ``BROKER_CHECKPOINT_EVERY_SECONDS``, so an entry of a quiet log waits at
    most about twice that for a checkpoint.
    """

    enabled: bool = True
    poll_seconds: float = 5.0
    checkpoint_every_seconds: float | None = None
    retention_every_seconds: float = 3600.0
    lease_seconds: float = 600.0
    # None: this worker pushes no webhooks (notifications still queue and can be polled).
    notification_every_seconds: float | None = None
    notification_retry: RetrySchedule = field(default_factory=RetrySchedule)
    notification_timeout_seconds: float = 10.0


def job_runner_for(
    runtime: Runtime,
    options: JobOptions | None = None,
    *,
    clock: Clock | None = None,
    worker: str | None = None,
) -> JobRunner:
    """The background jobs of one worker: due checkpoints, retention, and notification delivery.

    ``clock`` must be the broker's (tests give both the same fixed clock).
    Webhooks may go to loopback http only in the development environment.
    """
    options = options or JobOptions()
    clock = clock or SystemClock()
    broker = runtime.broker
    signer = broker.log_signer
    units = SqlUnitOfWorkFactory(runtime.engine)

    def append_audit(uow: JobUnitOfWork, event: AuditEvent) -> object:
        return audit_log.append(uow.audit, event, at=stamp(clock.now()), signer=signer)

    purge = RetentionPurge(
        units=units,
        registry=lambda: broker.registry,
        audit=append_audit,
        clock=clock,
        idempotency_keys=timedelta(days=runtime.settings.idempotency_key_days),
    )
    checkpoint_every = options.checkpoint_every_seconds or signer.every_seconds
    jobs = [
        checkpoint_job(broker.audit.latest_checkpoint, timedelta(seconds=checkpoint_every)),
        retention_job(purge, timedelta(seconds=options.retention_every_seconds)),
    ]
    if options.notification_every_seconds is not None:
        delivery = NotificationDelivery(
            broker=broker,
            sender=HttpxWebhookSender(timeout_seconds=options.notification_timeout_seconds),
            policy=WebhookPolicy(allow_loopback_http=runtime.settings.environment == "development"),
            retry=options.notification_retry,
        )
        jobs.append(
            notification_job(delivery, timedelta(seconds=options.notification_every_seconds))
        )
    return JobRunner(
        units=units,
        jobs=jobs,
        clock=clock,
        worker=worker,
        poll_seconds=options.poll_seconds,
        lease_seconds=options.lease_seconds,
    )


def run_server(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    jobs: JobOptions | None = None,
    max_wait_seconds: float | None = None,
) -> None:
    """Run the HTTP API under uvicorn until stopped, with this worker's background jobs.

    Jobs and the database wait come from the settings unless given here.

    Waits for the database first (``build_runtime_with_retry``); every worker
    may run the jobs, since each scheduled run is claimed by one worker only.
    """
    import uvicorn  # noqa: PLC0415 - only a server needs it

    from broker.log_format import json_log_config  # noqa: PLC0415 - as above
    from broker.web.app import create_app  # noqa: PLC0415 - the web layer imports this module

    options = jobs or JobOptions(
        enabled=settings.jobs_enabled,
        poll_seconds=settings.job_poll_seconds,
        retention_every_seconds=settings.retention_every_seconds,
        # Due at every poll: a notification waits at most about one poll to be pushed.
        notification_every_seconds=settings.job_poll_seconds,
    )
    wait = settings.database_wait_seconds if max_wait_seconds is None else max_wait_seconds
    runtime = build_runtime_with_retry(settings, max_wait_seconds=wait)
    runner = job_runner_for(runtime, options) if options.enabled else None
    uvicorn.run(
        create_app(runtime, jobs=runner),
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level.lower(),
        # JSON lines with request and trace ids; uvicorn's own access log (raw paths) is off.
        log_config=json_log_config(settings.log_level),
    )
