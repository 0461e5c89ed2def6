"""Background jobs against a real database, on SQLite and PostgreSQL: once per scheduled time."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from broker.bootstrap import Runtime
from broker.clock import FixedClock, SystemClock
from broker.db.handles import JOB_RUN, LINK_BLOCK, RECORD, RECORD_ENCODING, SUBJECT, TOKEN
from broker.db.uow import SqlUnitOfWorkFactory
from broker.errors import NotFound, StorageError
from broker.jobs import CHECKPOINT, JOBS_ACTOR, RETENTION, Job, JobRunner
from broker.startup import JobOptions, job_runner_for
from broker.web.app import create_app
from tests.helpers import AGREEMENT, IDENTIFIERS, ed_record, school_record
from tests.job_checks import assert_each_scheduled_run_once, recorded_runs


def _count(runtime: Runtime, table: object) -> int:
    with runtime.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def _ingest(runtime: Runtime) -> None:
    broker = runtime.broker
    broker.ingest_batch(
        agency="school",
        agreement_id=AGREEMENT,
        dataset_id="school-attendance",
        records=[school_record("SCH-1"), school_record("SCH-2", given="Bilal", family="Hussain")],
    )
    broker.ingest_batch(
        agency="ed",
        agreement_id=AGREEMENT,
        dataset_id="ed-attendances",
        records=[ed_record("ED-1")],
    )


def _purges(runtime: Runtime) -> list[dict[str, object]]:
    entries = runtime.broker.audit_page(actor=JOBS_ACTOR, after=0, limit=100)
    return [
        {"dataset": e.event.dataset_id, **e.event.detail}
        for e in entries
        if e.event.action == "retention_purge"
    ]


def test_retention_deletes_expired_records_their_tokens_and_emptied_subjects(
    runtime: Runtime, clock: FixedClock
) -> None:
    _ingest(runtime)
    runner = job_runner_for(runtime, clock=clock)
    assert runner.run_due() == 2  # both jobs are due as soon as they are registered
    assert _count(runtime, RECORD) == 3
    assert _count(runtime, RECORD_ENCODING) == 3
    assert _purges(runtime) == []

    # School attendance is kept 120 days and ED attendances 182 (the example agreement).
    clock.advance(timedelta(days=121))
    assert runner.run_due() == 2
    assert _count(runtime, RECORD) == 1
    # Bilal had only a school record, so his subject goes; Amira keeps hers through ED-1.
    assert _count(runtime, SUBJECT) == 1
    with runtime.engine.connect() as connection:
        kept = {str(r) for (r,) in connection.execute(select(TOKEN.c.record_id).distinct())}
        (ed_id,) = [str(r) for (r,) in connection.execute(select(RECORD.c.id))]
    assert kept == {ed_id}
    # The linkage engine's encodings and blocking keys of the purged records go with them.
    with runtime.engine.connect() as connection:
        encoded = {str(r) for (r,) in connection.execute(select(RECORD_ENCODING.c.record_id))}
        blocked = {str(r) for (r,) in connection.execute(select(LINK_BLOCK.c.record_id))}
    assert encoded == {ed_id}
    assert blocked <= {ed_id}
    (purge,) = _purges(runtime)
    assert purge["dataset"] == "school-attendance"
    assert purge["records"] == 2
    assert purge["subjects"] == 1
    assert purge["period_days"] == 120
    assert int(str(purge["tokens"])) > 0
    found = runtime.broker.lookup(
        agency="social-care",
        agreement_id=AGREEMENT,
        purpose="safeguarding-triage",
        identifiers=IDENTIFIERS,
    )
    assert found.matched
    assert {h.dataset for h in found.holdings} == {"ed-attendances"}

    clock.advance(timedelta(days=62))
    assert runner.run_due() == 2
    assert _count(runtime, RECORD) == 0
    assert _count(runtime, SUBJECT) == 0
    assert _count(runtime, TOKEN) == 0
    assert [p["dataset"] for p in _purges(runtime)] == ["school-attendance", "ed-attendances"]
    runtime.broker.verify_audit()

    runs, schedule = recorded_runs(runtime.engine)
    chains = assert_each_scheduled_run_once(runs, schedule)
    # Runs more than a week old are forgotten as new ones start.
    (last,) = chains[RETENTION]
    assert (last.counts["records"], last.counts["subjects"]) == (1, 1)
    assert len(chains[CHECKPOINT]) == 1


def test_retention_keeps_records_inside_their_period_and_audits_nothing(
    runtime: Runtime, clock: FixedClock
) -> None:
    _ingest(runtime)
    runner = job_runner_for(runtime, clock=clock)
    size, _ = runtime.broker.audit_head()
    clock.advance(timedelta(days=119))
    runner.run_due()
    assert _count(runtime, RECORD) == 3
    assert runtime.broker.audit_head()[0] == size


def test_a_job_is_not_run_again_before_its_next_due_time(
    runtime: Runtime, clock: FixedClock
) -> None:
    options = JobOptions(checkpoint_every_seconds=300, retention_every_seconds=60)
    runner = job_runner_for(runtime, options, clock=clock)
    assert runner.run_due() == 2
    assert runner.run_due() == 0
    clock.advance(timedelta(seconds=59))
    assert runner.run_due() == 0
    clock.advance(timedelta(seconds=1))
    assert runner.run_due() == 1
    clock.advance(timedelta(seconds=3600))
    assert runner.run_due() == 2  # late, the 12:02 run stands for the 59 missed after it
    runs, schedule = recorded_runs(runtime.engine)
    chains = assert_each_scheduled_run_once(runs, schedule)
    assert [r.due_at[11:19] for r in chains[RETENTION]] == ["12:00:00", "12:01:00", "12:02:00"]
    assert chains[RETENTION][-1].next_due_at[11:19] == "13:02:00"
    assert [r.due_at[11:19] for r in chains[CHECKPOINT]] == ["12:00:00", "12:05:00"]
    assert schedule[CHECKPOINT][11:19] == "13:05:00"


def test_the_checkpoint_job_signs_a_checkpoint_for_a_quiet_log(
    runtime: Runtime, clock: FixedClock
) -> None:
    runner = job_runner_for(runtime, clock=clock)
    runner.run_due()
    _ingest(runtime)  # a few entries, fewer than the 100 that sign a checkpoint themselves
    size, _ = runtime.broker.audit_head()
    with pytest.raises(NotFound):
        runtime.broker.audit.checkpoint(size)
    clock.advance(timedelta(seconds=60))
    runner.run_due()
    assert runtime.broker.audit.checkpoint(size).size == size
    runs, _ = recorded_runs(runtime.engine)
    assert [r.counts for r in runs if r.job == CHECKPOINT][-1] == {"checkpoint_size": size}


def test_two_runners_on_one_database_run_each_scheduled_time_once(runtime: Runtime) -> None:
    """Two workers' runners polling fast, against jobs due every 0.2 s, for about 2 s."""
    units = SqlUnitOfWorkFactory(runtime.engine)
    active = {"now": 0, "most": 0}
    lock = threading.Lock()

    def work() -> Mapping[str, int]:
        with lock:
            active["now"] += 1
            active["most"] = max(active["most"], active["now"])
        time.sleep(0.03)  # long enough for the other runner to try the same job meanwhile
        with lock:
            active["now"] -= 1
        return {"done": 1}

    runners = [
        JobRunner(
            units=units,
            jobs=[Job("tick", timedelta(seconds=0.2), work)],
            clock=SystemClock(),
            worker=name,
            poll_seconds=0.02,
        )
        for name in ("worker-a", "worker-b")
    ]
    for runner in runners:
        runner.start()
    time.sleep(2.0)
    for runner in runners:
        runner.stop()
    runs, schedule = recorded_runs(runtime.engine)
    chains = assert_each_scheduled_run_once(runs, schedule)
    assert len(chains["tick"]) >= 5
    assert active["most"] == 1
    assert {r.worker for r in runs} == {"worker-a", "worker-b"}


def test_a_failing_job_is_recorded_and_logged_by_type_and_the_loop_goes_on(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def fail() -> Mapping[str, int]:
        calls.append(1)
        raise StorageError("the database refused the change; nothing was stored")

    def boom() -> Mapping[str, int]:
        raise RuntimeError("Amira Okafor 2011-03-14")  # a message a bug might carry

    runner = JobRunner(
        units=SqlUnitOfWorkFactory(runtime.engine),
        jobs=[
            Job("fails", timedelta(seconds=0.1), fail),
            Job("boom", timedelta(seconds=0.1), boom),
        ],
        clock=SystemClock(),
        poll_seconds=0.02,
    )
    with caplog.at_level(logging.ERROR, logger="broker.jobs"):
        runner.start()
        time.sleep(0.6)
        runner.stop()
    assert len(calls) >= 3
    runs, _ = recorded_runs(runtime.engine)
    assert {(r.job, r.outcome, r.error) for r in runs} == {
        ("fails", "failed", "storage_failed"),
        ("boom", "failed", "RuntimeError"),
    }
    assert "background job boom failed: RuntimeError" in caplog.text
    assert "Amira" not in caplog.text
    assert all(record.exc_info is None for record in caplog.records)


def test_a_stopped_runner_leaves_no_run_unfinished(runtime: Runtime) -> None:
    runner = job_runner_for(runtime, JobOptions(poll_seconds=0.05, checkpoint_every_seconds=0.1))
    runner.start()
    time.sleep(0.5)
    runner.stop()
    runs, schedule = recorded_runs(runtime.engine)
    assert_each_scheduled_run_once(runs, schedule)
    assert _count(runtime, JOB_RUN) >= 2


def test_the_app_runs_its_jobs_from_start_up_to_shutdown(
    runtime: Runtime, clock: FixedClock
) -> None:
    runner = job_runner_for(runtime, JobOptions(poll_seconds=0.05), clock=clock)
    with TestClient(create_app(runtime, jobs=runner)) as client:
        assert runner.running
        deadline = time.monotonic() + 10
        while len(recorded_runs(runtime.engine)[0]) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/ready").status_code == 200
    assert not runner.running
    runs, schedule = recorded_runs(runtime.engine)
    assert {r.job for r in runs} == {CHECKPOINT, RETENTION}
    assert_each_scheduled_run_once(runs, schedule)
