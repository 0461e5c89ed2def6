"""Token-bucket arithmetic: within capacity, within the rate, and Retry-After exact."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broker.rate_limit import (
    COST,
    MICROSECONDS,
    Bucket,
    Rate,
    refill,
    retry_after_seconds,
    take,
)

rates = st.builds(Rate, per_minute=st.integers(1, 100_000), burst=st.integers(1, 1_000))
gaps = st.lists(st.integers(0, 120 * MICROSECONDS), min_size=1, max_size=200)


@given(rates, st.integers(0, 10**9), st.integers(-(10**9), 10**12))
def test_refill_stays_between_what_was_held_and_capacity(
    rate: Rate, held: int, elapsed: int
) -> None:
    credits = min(held, rate.capacity)
    after = refill(credits, rate, elapsed)
    assert credits <= after <= rate.capacity
    if elapsed <= 0:
        assert after == credits


@given(rates, st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**9))
def test_refill_is_monotone_and_composes(rate: Rate, held: int, first: int, second: int) -> None:
    credits = min(held, rate.capacity)
    once = refill(credits, rate, first + second)
    twice = refill(refill(credits, rate, first), rate, second)
    assert once == twice
    assert refill(credits, rate, first) <= once


@given(rates)
def test_a_full_bucket_allows_exactly_burst_at_once(rate: Rate) -> None:
    bucket: Bucket | None = None
    allowed = 0
    for _ in range(rate.burst + 1):
        bucket, wait = take(bucket, rate, 0)
        allowed += wait == 0
    assert allowed == rate.burst
    assert bucket is not None
    assert bucket.credits < COST


@given(rates, gaps)
def test_never_more_than_burst_plus_rate_over_time(rate: Rate, intervals: list[int]) -> None:
    bucket: Bucket | None = None
    now = 0
    allowed = 0
    for gap in intervals:
        now += gap
        bucket, wait = take(bucket, rate, now)
        allowed += wait == 0
        assert 0 <= bucket.credits <= rate.capacity
    # Exact bound in credits: capacity at the start plus the refill over the whole time.
    assert allowed * COST <= rate.capacity + now * rate.per_minute


@given(rates, gaps)
def test_waiting_the_advertised_time_always_suffices_and_no_less(
    rate: Rate, intervals: list[int]
) -> None:
    bucket: Bucket | None = None
    now = 0
    for gap in intervals:
        now += gap
        bucket, wait = take(bucket, rate, now)
        if wait:
            _, sooner = take(bucket, rate, now + wait - 1)
            assert sooner > 0
            _, then = take(bucket, rate, now + wait)
            assert then == 0
            # Retry-After is whole seconds, rounded up: retrying then succeeds too.
            _, header = take(bucket, rate, now + retry_after_seconds(wait) * MICROSECONDS)
            assert header == 0


@given(st.integers(1, 10**12))
def test_retry_after_rounds_up_to_whole_seconds(wait: int) -> None:
    seconds = retry_after_seconds(wait)
    assert seconds >= 1
    assert (seconds - 1) * MICROSECONDS < wait <= seconds * MICROSECONDS


@given(rates, st.integers(1, 64))
def test_a_workers_share_never_exceeds_the_whole(rate: Rate, workers: int) -> None:
    share = rate.per_worker(workers)
    assert share.per_minute >= 1
    assert share.burst >= 1
    if rate.per_minute >= workers:
        assert share.per_minute * workers <= rate.per_minute
    if rate.burst >= workers:
        assert share.burst * workers <= rate.burst
