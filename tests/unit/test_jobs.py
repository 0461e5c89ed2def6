"""The job schedule's arithmetic and the runner's refusals, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from broker.errors import ConfigError, StorageError
from broker.jobs import Job, JobRunner, error_name, next_due, stamp

DUE = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (DUE, DUE + MINUTE),  # on time: the next slot
        (DUE + timedelta(seconds=59), DUE + MINUTE),
        (DUE + MINUTE, DUE + 2 * MINUTE),  # a slot that is due now has passed
        (DUE + timedelta(minutes=59, seconds=30), DUE + 60 * MINUTE),  # missed ones skipped
    ],
)
def test_the_next_due_time_is_the_first_slot_after_now(now: datetime, expected: datetime) -> None:
    assert next_due(DUE, now, MINUTE) == expected


def test_stored_times_sort_as_text() -> None:
    times = [DUE + timedelta(microseconds=n) for n in (0, 1, 999_999, 1_000_000)]
    assert sorted(stamp(t) for t in times) == [stamp(t) for t in times]
    assert stamp(DUE) == "2026-11-26T12:00:00.000000+00:00"


def test_failures_are_named_by_code_or_type_never_message() -> None:
    assert error_name(StorageError("the database refused")) == "storage_failed"
    assert error_name(RuntimeError("Amira Okafor")) == "RuntimeError"


def test_a_job_needs_a_positive_interval() -> None:
    with pytest.raises(ConfigError):
        Job("tick", timedelta(0), dict)


def test_job_names_are_unique() -> None:
    tick = Job("tick", MINUTE, dict)
    with pytest.raises(ConfigError, match="unique"):
        JobRunner(units=_no_units, jobs=[tick, tick], clock=_NoClock())


def _no_units() -> object:
    raise AssertionError("no database here")


class _NoClock:
    def now(self) -> datetime:
        return DUE
