"""The in-process rate limiter: buckets per agency, agreement and kind; refusals tallied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from broker.clock import FixedClock
from broker.errors import RateLimited
from broker.rate_limit import (
    MAX_BUCKETS,
    Rate,
    RateLimiter,
    RefusalReport,
    RefusalTally,
    microseconds,
)

START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
KEY = ("police", "sv-early-identification", "lookup")


class Reports:
    """Collects what the limiter asks to audit."""

    def __init__(self) -> None:
        self.seen: list[RefusalReport] = []

    def __call__(self, reports: list[RefusalReport]) -> None:
        assert reports, "report is called only with something to audit"
        self.seen.extend(reports)


def _admitted(limiter: RateLimiter, key: tuple[str, str, str], rate: Rate, reports: Reports) -> int:
    try:
        limiter.admit(key, rate, report=reports)
    except RateLimited as exc:
        return -exc.retry_after
    return 0


def test_burst_then_refusal_with_retry_after_then_refill() -> None:
    clock = FixedClock(START)
    limiter = RateLimiter(clock)
    reports = Reports()
    rate = Rate(per_minute=6, burst=3)  # one request every ten seconds
    for _ in range(3):
        limiter.admit(KEY, rate, report=reports)
    with pytest.raises(RateLimited) as refused:
        limiter.admit(KEY, rate, report=reports)
    assert refused.value.code == "rate_limited"
    assert refused.value.retry_after == 10
    assert "retry after 10 seconds" in refused.value.message
    clock.advance(timedelta(seconds=9, microseconds=999_999))
    with pytest.raises(RateLimited) as still:
        limiter.admit(KEY, rate, report=reports)
    assert still.value.retry_after == 1
    clock.advance(timedelta(microseconds=1))
    limiter.admit(KEY, rate, report=reports)  # exactly one request's worth has refilled
    with pytest.raises(RateLimited):
        limiter.admit(KEY, rate, report=reports)


def test_buckets_are_separate_per_agency_agreement_and_kind() -> None:
    limiter = RateLimiter(FixedClock(START))
    reports = Reports()
    rate = Rate(per_minute=1, burst=1)
    limiter.admit(KEY, rate, report=reports)
    with pytest.raises(RateLimited):
        limiter.admit(KEY, rate, report=reports)
    for other in (
        ("school", KEY[1], KEY[2]),
        (KEY[0], "ed-sharps-notification", KEY[2]),
        (KEY[0], KEY[1], "aggregate"),
    ):
        limiter.admit(other, rate, report=reports)


def test_each_worker_enforces_its_share() -> None:
    limiter = RateLimiter(FixedClock(START), workers=4)
    reports = Reports()
    outcomes = [_admitted(limiter, KEY, Rate(per_minute=40, burst=8), reports) for _ in range(3)]
    assert outcomes[:2] == [0, 0]
    assert outcomes[2] == -6  # 10 a minute for this worker: one every six seconds


def test_a_flood_is_audited_twice_a_minute_at_most_with_its_count() -> None:
    clock = FixedClock(START)
    limiter = RateLimiter(clock)
    reports = Reports()
    rate = Rate(per_minute=1, burst=1)
    limiter.admit(KEY, rate, report=reports)
    for _ in range(500):
        with pytest.raises(RateLimited):
            limiter.admit(KEY, rate, report=reports)
    start = microseconds(START)
    assert reports.seen == [RefusalReport(KEY, start, 1, final=False)]
    clock.advance(timedelta(seconds=61))
    limiter.admit(KEY, rate, report=reports)  # refilled; closes the window
    assert reports.seen[1:] == [RefusalReport(KEY, start, 500, final=True)]
    assert limiter.settle() == []


def test_a_single_refusal_is_reported_once() -> None:
    tally = RefusalTally()
    first = tally.refused(KEY, 0)
    assert first == [RefusalReport(KEY, 0, 1, final=False)]
    assert tally.settle(KEY, 59_999_999) == []
    assert tally.settle(KEY, 60_000_000) == []  # one refusal: already audited, nothing to add
    assert tally.refused(KEY, 60_000_001) == [RefusalReport(KEY, 60_000_001, 1, final=False)]


def test_settle_all_closes_windows_no_request_returned_to() -> None:
    clock = FixedClock(START)
    limiter = RateLimiter(clock)
    reports = Reports()
    rate = Rate(per_minute=1, burst=1)
    limiter.admit(KEY, rate, report=reports)
    for _ in range(3):
        with pytest.raises(RateLimited):
            limiter.admit(KEY, rate, report=reports)
    assert limiter.settle() == []
    clock.advance(timedelta(minutes=1))
    assert limiter.settle() == [RefusalReport(KEY, microseconds(START), 3, final=True)]
    assert limiter.settle() == []


def test_a_clock_stepped_back_refills_nothing() -> None:
    limiter = RateLimiter(FixedClock(START))
    reports = Reports()
    rate = Rate(per_minute=60, burst=1)
    limiter.admit(KEY, rate, report=reports)
    # The same buckets read by a clock an hour behind (as after an NTP step back).
    limiter._clock = FixedClock(START - timedelta(hours=1))
    with pytest.raises(RateLimited) as refused:
        limiter.admit(KEY, rate, report=reports)
    assert refused.value.retry_after == 1


def test_full_buckets_are_forgotten_beyond_the_cap() -> None:
    clock = FixedClock(START)
    limiter = RateLimiter(clock)
    reports = Reports()
    rate = Rate(per_minute=60, burst=1)
    for index in range(MAX_BUCKETS + 1):
        limiter.admit((f"agency-{index}", "a", "lookup"), rate, report=reports)
    clock.advance(timedelta(seconds=2))
    limiter.admit(KEY, rate, report=reports)
    assert limiter.bucket_count == 1
    limiter.admit(("agency-0", "a", "lookup"), rate, report=reports)  # forgotten means full


@pytest.mark.parametrize(("per_minute", "burst"), [(0, 1), (1, 0), (-1, 5)])
def test_nonsense_rates_are_refused(per_minute: int, burst: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Rate(per_minute=per_minute, burst=burst)


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RateLimiter(FixedClock(START), workers=0)


def test_another_agencys_request_closes_a_finished_window() -> None:
    clock = FixedClock(START)
    limiter = RateLimiter(clock)
    reports = Reports()
    rate = Rate(per_minute=1, burst=1)
    limiter.admit(KEY, rate, report=reports)
    for _ in range(4):
        with pytest.raises(RateLimited):
            limiter.admit(KEY, rate, report=reports)
    clock.advance(timedelta(seconds=61))
    limiter.admit(("school", KEY[1], KEY[2]), rate, report=reports)  # police never returns
    assert reports.seen[-1] == RefusalReport(KEY, microseconds(START), 4, final=True)
    assert limiter.settle() == []


def test_final_settle_closes_windows_that_are_still_open() -> None:
    limiter = RateLimiter(FixedClock(START))
    reports = Reports()
    rate = Rate(per_minute=1, burst=1)
    limiter.admit(KEY, rate, report=reports)
    for _ in range(3):
        with pytest.raises(RateLimited):
            limiter.admit(KEY, rate, report=reports)
    assert limiter.settle() == []
    assert limiter.settle(final=True) == [RefusalReport(KEY, microseconds(START), 3, final=True)]
    assert limiter.settle(final=True) == []
