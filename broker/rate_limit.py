"""Per-agency token buckets: how many requests of one kind an agency may make, and how fast.

A bucket holds up to ``burst`` requests and refills at ``per_minute`` requests a
minute. Arithmetic is in whole numbers so that it is exact (a property test
checks that waiting the advertised ``Retry-After`` always suffices): time is in
microseconds and a bucket holds *credits*, where one minute of refill at one
request a minute is one request's worth, ``COST`` credits.

Buckets live in the memory of one worker process. With several workers behind
a load balancer (``BROKER_WORKERS``), each worker enforces its share of the
agreement's limit (``per_worker``), so the partnership-wide rate stays within
the agreement whichever way requests are spread; see ``docs/security.md``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from broker.clock import Clock
from broker.errors import RateLimited

MICROSECONDS = 1_000_000
# One request's worth of credits: a minute in microseconds, so that a refill of
# ``per_minute`` credits per microsecond is exactly ``per_minute`` requests a minute.
COST = 60 * MICROSECONDS
# Refusals are counted per agency, agreement and kind in windows this long, and
# audited at most twice per window (see ``RefusalTally``).
TALLY_WINDOW_US = 60 * MICROSECONDS
# Beyond this many buckets, full ones are forgotten (a full bucket is the same as none).
MAX_BUCKETS = 10_000

BucketKey = tuple[str, str, str]  # (agency, agreement, kind)


@dataclass(frozen=True)
class Rate:
    """A limit: ``per_minute`` requests a minute on average, ``burst`` at once."""

    per_minute: int
    burst: int

    def __post_init__(self) -> None:
        if self.per_minute < 1 or self.burst < 1:
            raise ValueError("a rate needs per_minute and burst of at least 1")

    @property
    def capacity(self) -> int:
        """The most credits the bucket holds."""
        return self.burst * COST

    def per_worker(self, workers: int) -> Rate:
        """This worker's share when ``workers`` processes each keep their own buckets.

        Rounded down but never below one request, so a limit smaller than the
        number of workers is still served (and may then be exceeded by rounding).
        """
        if workers < 1:
            raise ValueError("workers must be at least 1")
        return Rate(max(1, self.per_minute // workers), max(1, self.burst // workers))


@dataclass(frozen=True)
class Bucket:
    """A bucket's credits as of ``at`` (microseconds)."""

    credits: int
    at: int


def refill(credits: int, rate: Rate, elapsed_us: int) -> int:
    """The credits after ``elapsed_us`` microseconds of refill, never above capacity.

    Time that runs backwards (a clock stepped back) refills nothing.
    """
    return min(rate.capacity, credits + max(0, elapsed_us) * rate.per_minute)


def take(bucket: Bucket | None, rate: Rate, now_us: int) -> tuple[Bucket, int]:
    """Take one request from the bucket: (the bucket after, microseconds to wait).

    A wait of 0 means the request is allowed and its credits were taken. Otherwise
    the bucket is only refilled, and the wait is the least time after which the
    same request would be allowed. A missing bucket is a full one.
    """
    if bucket is None:
        credits = rate.capacity
    else:
        credits = refill(bucket.credits, rate, now_us - bucket.at)
        # A clock stepped back keeps the later time, so credits are never counted twice.
        now_us = max(now_us, bucket.at)
    if credits >= COST:
        return Bucket(credits - COST, now_us), 0
    missing = COST - credits
    wait = -(-missing // rate.per_minute)  # ceiling division
    return Bucket(credits, now_us), wait


def retry_after_seconds(wait_us: int) -> int:
    """Whole seconds for ``Retry-After``: rounded up, so retrying then always succeeds."""
    return max(1, -(-wait_us // MICROSECONDS))


def microseconds(at: datetime) -> int:
    """A clock reading as whole microseconds since the epoch."""
    return int(at.timestamp()) * MICROSECONDS + at.microsecond


@dataclass(frozen=True)
class RefusalReport:
    """Refusals to audit for one bucket: ``refused`` so far in the window from ``window_start``.

    ``final`` is False for the report of the window's first refusal and True for
    the count once the window is over.
    """

    key: BucketKey
    window_start: int
    refused: int
    final: bool


class RefusalTally:
    """Counts refusals per bucket so that a flood cannot flood the audit log.

    The first refusal in a window is reported at once (the IG lead sees limiting
    begin); the window's total is reported when the next request for the same
    bucket arrives after the window, if there was more than one refusal. So a
    bucket adds at most two audit entries a minute however hard it is pushed.
    """

    def __init__(self) -> None:
        self._open: dict[BucketKey, tuple[int, int]] = {}

    def refused(self, key: BucketKey, now_us: int) -> list[RefusalReport]:
        """Count one refusal; returns the reports to audit now."""
        reports = self.settle(key, now_us)
        if key in self._open:
            start, count = self._open[key]
            self._open[key] = (start, count + 1)
            return reports
        self._open[key] = (now_us, 1)
        return [*reports, RefusalReport(key, now_us, 1, final=False)]

    def settle(self, key: BucketKey, now_us: int) -> list[RefusalReport]:
        """Close the bucket's window if it is over; returns its total if it needs one."""
        opened = self._open.get(key)
        if opened is None or now_us < opened[0] + TALLY_WINDOW_US:
            return []
        del self._open[key]
        start, count = opened
        return [RefusalReport(key, start, count, final=True)] if count > 1 else []

    def settle_all(self, now_us: int) -> list[RefusalReport]:
        """Close every window that is over (for a periodic flush or shutdown)."""
        reports: list[RefusalReport] = []
        for key in list(self._open):
            reports += self.settle(key, now_us)
        return reports


class RateLimiter:
    """Token buckets keyed by agency, agreement and kind, in this process's memory.

    Thread-safe: the web server runs synchronous routes on a thread pool.
    ``workers`` is how many processes share the load (each enforces its share).
    """

    def __init__(self, clock: Clock, *, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[BucketKey, tuple[Bucket, Rate]] = {}
        self._tally = RefusalTally()
        # Any request closes every refusal window that has ended, at most once a window,
        # so a flood's total is audited even if that agency never calls again.
        self._swept = 0

    def admit(
        self,
        key: BucketKey,
        rate: Rate,
        *,
        report: Callable[[list[RefusalReport]], None],
    ) -> None:
        """Let one request through, or raise RateLimited saying when to retry.

        ``report`` receives refusal counts to audit (outside the lock, and only
        when there are some); it is called before RateLimited is raised.
        """
        share = rate.per_worker(self.workers)
        now = microseconds(self._clock.now())
        with self._lock:
            held = self._buckets.get(key)
            bucket, wait = take(None if held is None else held[0], share, now)
            self._buckets[key] = (bucket, share)
            reports = self._tally.refused(key, now) if wait else self._tally.settle(key, now)
            if now - self._swept >= TALLY_WINDOW_US:
                self._swept = now
                reports += self._tally.settle_all(now)
            if len(self._buckets) > MAX_BUCKETS:
                self._forget_full(now)
        if reports:
            report(reports)
        if wait:
            seconds = retry_after_seconds(wait)
            raise RateLimited(
                f"too many {key[2]} requests for this agreement; retry after {seconds} "
                f"second{'s' if seconds != 1 else ''}, or ask your DPO whether the "
                "agreement's limits suit your use",
                retry_after=seconds,
            )

    @property
    def bucket_count(self) -> int:
        """How many buckets are held (bounded by forgetting full ones)."""
        return len(self._buckets)

    def settle(self, *, final: bool = False) -> list[RefusalReport]:
        """Totals of refusal windows that are over, for buckets no request has touched since.

        ``final`` closes every window now, over or not (the process is stopping).
        """
        now = microseconds(self._clock.now())
        with self._lock:
            return self._tally.settle_all(now + TALLY_WINDOW_US if final else now)

    def _forget_full(self, now_us: int) -> None:
        # Caller holds the lock. Only full buckets go: forgetting one changes nothing.
        for key, (bucket, rate) in list(self._buckets.items()):
            if refill(bucket.credits, rate, now_us - bucket.at) == rate.capacity:
                del self._buckets[key]
