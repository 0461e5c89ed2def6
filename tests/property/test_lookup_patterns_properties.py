"""The sliding-hour peak of distinct subjects agrees with counting every window by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from broker.lookup_patterns import WINDOW, peak_distinct_in_window

T0 = datetime(2026, 11, 26, tzinfo=UTC)
lookups = st.lists(
    st.tuples(
        st.integers(0, 4 * 3600).map(lambda s: T0 + timedelta(seconds=s)),
        st.sampled_from([f"sub_{n:032x}" for n in range(12)]),
    ),
    max_size=60,
)


def _by_hand(matched: list[tuple[datetime, str]]) -> int:
    """Distinct subjects in (t - 1 hour, t] for every lookup time t; the most of them."""
    return max(
        (len({s for at, s in matched if end - WINDOW < at <= end}) for end, _ in matched),
        default=0,
    )


@given(lookups)
def test_peak_matches_a_brute_force_count(matched: list[tuple[datetime, str]]) -> None:
    peak, start = peak_distinct_in_window(matched)
    assert peak == _by_hand(matched)
    if peak:
        assert start is not None
        in_window = {s for at, s in matched if start <= at < start + WINDOW}
        assert len(in_window) >= peak
    else:
        assert start is None
