"""What every test of background jobs checks: each scheduled run ran exactly once."""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise

from sqlalchemy import Engine

from broker.db.uow import SqlUnitOfWorkFactory
from broker.job_ports import JobRunRow


def recorded_runs(engine: Engine) -> tuple[list[JobRunRow], dict[str, str]]:
    """Every recorded run, and when each job is next due."""
    with SqlUnitOfWorkFactory(engine)() as uow:
        return uow.jobs.runs(), uow.jobs.schedule()


def assert_each_scheduled_run_once(
    runs: list[JobRunRow], schedule: dict[str, str]
) -> dict[str, list[JobRunRow]]:
    """Each job's runs form one chain of scheduled times, each run once, none overlapping.

    A run records the time it answered and the time it set for the next; so a
    chain from the first run to the job row's next due time, with no gap and
    no repeat, shows that every time ever scheduled ran exactly once.
    """
    by_job: dict[str, list[JobRunRow]] = defaultdict(list)
    for run in runs:
        by_job[run.job].append(run)
    assert set(by_job) <= set(schedule)
    for job, chain in by_job.items():
        chain.sort(key=lambda r: r.due_at)
        dues = [r.due_at for r in chain]
        assert len(set(dues)) == len(dues), f"{job}: a scheduled time ran twice"
        for run in chain:
            assert run.outcome == "succeeded", f"{job} at {run.due_at}: {run.outcome} {run.error}"
            assert run.finished_at is not None
            assert run.due_at <= run.started_at <= run.finished_at
            assert run.next_due_at > run.due_at
        for before, after in pairwise(chain):
            assert before.next_due_at == after.due_at, f"{job}: scheduled {before.next_due_at} lost"
            assert before.finished_at is not None
            assert before.finished_at <= after.started_at, f"{job}: two runs overlapped"
        assert chain[-1].next_due_at == schedule[job], f"{job}: the last run is not the latest"
    return dict(by_job)
