"""Properties of notification signing, retry times and rule matching."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from broker.notify import (
    Condition,
    RetrySchedule,
    Rule,
    SignatureInvalid,
    matches,
    signed_headers,
    verify,
)
from broker.release import AGE_BANDS, REDACTED

SECRETS = st.binary(min_size=1, max_size=64)
IDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=40)
STAMPS = st.integers(min_value=0, max_value=4_000_000_000)
BODIES = st.binary(max_size=400)


@settings(max_examples=150, deadline=None)
@given(secret=SECRETS, message_id=IDS, stamp=STAMPS, body=BODIES, skew=st.integers(-300, 300))
def test_every_signed_delivery_verifies_within_the_tolerance(
    secret: bytes, message_id: str, stamp: int, body: bytes, skew: int
) -> None:
    headers = signed_headers(secret, message_id, stamp, body)
    assert verify(secret, headers, body, now=stamp + skew) == message_id


@settings(max_examples=150, deadline=None)
@given(
    secret=SECRETS,
    message_id=IDS,
    stamp=STAMPS,
    body=BODIES.filter(bool),
    position=st.integers(0, 10_000),
    bit=st.integers(0, 7),
)
def test_any_flipped_bit_of_the_body_fails(
    *, secret: bytes, message_id: str, stamp: int, body: bytes, position: int, bit: int
) -> None:
    headers = signed_headers(secret, message_id, stamp, body)
    changed = bytearray(body)
    changed[position % len(changed)] ^= 1 << bit
    with pytest.raises(SignatureInvalid):
        verify(secret, headers, bytes(changed), now=stamp)


@settings(max_examples=150, deadline=None)
@given(secret=SECRETS, message_id=IDS, stamp=STAMPS, body=BODIES, other=STAMPS, extra=BODIES)
def test_another_timestamp_or_more_body_fails(
    *, secret: bytes, message_id: str, stamp: int, body: bytes, other: int, extra: bytes
) -> None:
    assume(other != stamp)
    headers = signed_headers(secret, message_id, stamp, body)
    moved = {**headers, "webhook-timestamp": str(other)}
    with pytest.raises(SignatureInvalid):
        verify(secret, moved, body, now=other)
    if extra:
        with pytest.raises(SignatureInvalid):
            verify(secret, headers, body + extra, now=stamp)


@settings(max_examples=200, deadline=None)
@given(
    first=st.floats(min_value=0.01, max_value=600),
    factor=st.floats(min_value=1, max_value=1000),
    attempts=st.integers(1, 60),
)
def test_retry_delays_never_shrink_stay_capped_and_end(
    first: float, factor: float, attempts: int
) -> None:
    schedule = RetrySchedule(
        first_delay_seconds=first, max_delay_seconds=first * factor, max_attempts=attempts
    )
    delays = [schedule.delay_after(n) for n in range(1, attempts + 5)]
    given_delays = [d.total_seconds() for d in delays if d is not None]
    assert len(given_delays) == attempts - 1
    assert all(d is None for d in delays[attempts - 1 :])
    assert given_delays == sorted(given_delays)
    assert all(first * 0.999 <= d <= first * factor * 1.001 for d in given_delays)


_BANDS = [label for _, _, label in AGE_BANDS]
_CODES = ["stab_wound", "incised_wound", "puncture_wound", "other_sharps"]
RELEASED = st.fixed_dictionaries(
    {},
    optional={
        "injury_type": st.sampled_from([*_CODES, REDACTED, None]),
        "date_of_birth": st.sampled_from([*_BANDS, REDACTED, None]),
        "age": st.one_of(st.integers(-1, 120), st.none(), st.just(True)),
        "admitted": st.one_of(st.booleans(), st.none(), st.integers(0, 1)),
    },
)
CONDITIONS = st.one_of(
    st.builds(
        Condition,
        field=st.just("injury_type"),
        op=st.just("in"),
        values=st.lists(st.sampled_from(_CODES), min_size=1, unique=True).map(tuple),
    ),
    st.builds(
        Condition,
        field=st.just("date_of_birth"),
        op=st.just("age_under"),
        values=st.sampled_from([10, 14, 16, 18, 25]).map(lambda n: (n,)),
    ),
    st.builds(
        Condition,
        field=st.just("age"),
        op=st.just("age_under"),
        values=st.integers(1, 150).map(lambda n: (n,)),
    ),
    st.builds(
        Condition,
        field=st.just("admitted"),
        op=st.just("equals"),
        values=st.booleans().map(lambda b: (b,)),
    ),
)


def _reference(condition: Condition, value: Any) -> bool:
    """The meaning of each condition, written out the long way."""
    if value is None or value == REDACTED:
        return False
    limit = condition.values[0]
    if condition.field == "date_of_birth":
        highest = {"0-9": 9, "10-13": 13, "14-15": 15, "16-17": 17, "18-24": 24}.get(value)
        return highest is not None and highest < int(limit)
    if condition.field == "age":
        return not isinstance(value, bool) and value < int(limit)
    if condition.field == "admitted":
        return isinstance(value, bool) and value is limit
    return value in condition.values


@settings(max_examples=300, deadline=None)
@given(released=RELEASED, conditions=st.lists(CONDITIONS, min_size=1, max_size=4))
def test_a_rule_matches_exactly_when_every_condition_holds(
    released: dict[str, Any], conditions: list[Condition]
) -> None:
    expected = all(_reference(c, released.get(c.field)) for c in conditions)
    assert matches(Rule("ed-sharps-attendances", tuple(conditions)), released) is expected
