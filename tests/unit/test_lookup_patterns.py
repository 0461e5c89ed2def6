"""Unusual lookup patterns from audit entries: many misses, many subjects in an hour."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from audit.events import AuditEvent, LoggedEntry
from broker.errors import ValidationError
from broker.lookup_patterns import (
    PatternThresholds,
    lookup_patterns,
    peak_distinct_in_window,
)

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


class Log:
    """Builds lookup entries as the broker logs them."""

    def __init__(self) -> None:
        self.entries: list[LoggedEntry] = []

    def lookup(
        self,
        at: datetime,
        *,
        agency: str = "police",
        purpose: str = "violence-reduction",
        subject: str | None = None,
        outcome: str = "permitted",
    ) -> None:
        detail: dict[str, object] = {"matched": subject is not None, "subject": subject}
        event = AuditEvent(
            actor=agency,
            action="lookup",
            outcome=outcome,  # type: ignore[arg-type]
            agreement_id="sv-early-identification",
            agreement_version=1,
            purpose=purpose,
            detail=detail if outcome == "permitted" else {},
        )
        seq = len(self.entries) + 1
        self.entries.append(LoggedEntry(seq, at.isoformat(), event, f"{seq:064x}"))


def _subject(n: int) -> str:
    return f"sub_{n:032x}"


def test_a_miss_storm_is_flagged_with_its_figures() -> None:
    log = Log()
    for minute in range(25):
        log.lookup(T0 + timedelta(minutes=minute))
    log.lookup(T0, subject=_subject(1))
    (pattern,) = lookup_patterns(log.entries)
    assert (pattern.agency, pattern.purpose, pattern.lookups, pattern.misses) == (
        "police",
        "violence-reduction",
        26,
        25,
    )
    (flag,) = pattern.flags
    assert flag.code == "many_misses"
    assert dict(flag.figures) == {
        "lookups": 26,
        "misses": 25,
        "miss_ratio": 0.962,
        "threshold_ratio": 0.8,
        "threshold_min_lookups": 20,
    }


@pytest.mark.parametrize(
    ("lookups", "misses", "flagged"),
    [(19, 19, False), (20, 16, True), (20, 15, False), (100, 80, True), (100, 79, False)],
)
def test_misses_need_the_floor_and_the_ratio(lookups: int, misses: int, flagged: bool) -> None:
    log = Log()
    for n in range(lookups):
        log.lookup(T0 + timedelta(hours=n), subject=None if n < misses else _subject(n))
    (pattern,) = lookup_patterns(log.entries)
    assert [f.code for f in pattern.flags] == (["many_misses"] if flagged else [])


def test_many_subjects_within_any_hour_even_across_the_turn_of_the_hour() -> None:
    log = Log()
    # 31 subjects from 09:40 to 10:10: no clock hour holds more than 20 of them.
    for n in range(31):
        log.lookup(T0 + timedelta(minutes=40 + n), subject=_subject(n))
    (pattern,) = lookup_patterns(log.entries)
    assert pattern.peak_subjects_per_hour == 31
    (flag,) = pattern.flags
    assert flag.code == "many_subjects"
    assert dict(flag.figures) == {
        "distinct_subjects": 31,
        "window_start": (T0 + timedelta(minutes=40)).isoformat(timespec="seconds"),
        "window_minutes": 60,
        "threshold_per_hour": 30,
    }


def test_the_same_subjects_looked_up_again_and_again_are_not_many() -> None:
    log = Log()
    for n in range(200):
        log.lookup(T0 + timedelta(seconds=n), subject=_subject(n % 5))
    (pattern,) = lookup_patterns(log.entries)
    assert pattern.peak_subjects_per_hour == 5
    assert pattern.flags == ()


def test_many_subjects_spread_over_a_day_are_normal() -> None:
    log = Log()
    for n in range(200):  # one new subject every seven minutes: about nine an hour
        log.lookup(T0 + timedelta(minutes=7 * n), subject=_subject(n))
    (pattern,) = lookup_patterns(log.entries)
    assert pattern.peak_subjects_per_hour == 9
    assert pattern.flags == ()


def test_grouped_by_agency_and_purpose_and_only_permitted_lookups_count() -> None:
    log = Log()
    for n in range(30):
        log.lookup(T0, agency="school", purpose="safeguarding-triage")
        log.lookup(T0, agency="police", subject=_subject(n % 3))
        log.lookup(T0, agency="police", outcome="refused")
    patterns = lookup_patterns(log.entries)
    assert [(p.agency, p.purpose, p.lookups, p.misses) for p in patterns] == [
        ("police", "violence-reduction", 30, 0),
        ("school", "safeguarding-triage", 30, 30),
    ]
    assert [[f.code for f in p.flags] for p in patterns] == [[], ["many_misses"]]


def test_thresholds_are_options() -> None:
    log = Log()
    for n in range(6):
        log.lookup(T0 + timedelta(minutes=n), subject=_subject(n))
        log.lookup(T0 + timedelta(minutes=n))
    strict = PatternThresholds(miss_ratio=0.5, min_lookups=10, subjects_per_hour=5)
    (pattern,) = lookup_patterns(log.entries, strict)
    assert [f.code for f in pattern.flags] == ["many_misses", "many_subjects"]
    (quiet,) = lookup_patterns(log.entries)
    assert quiet.flags == ()


def test_no_subject_id_ever_leaves_the_report() -> None:
    log = Log()
    for n in range(40):
        log.lookup(T0, subject=_subject(n))
        log.lookup(T0)
    text = json.dumps([p.as_dict() for p in lookup_patterns(log.entries)])
    assert "sub_" not in text
    assert "many_subjects" in text


@pytest.mark.parametrize(
    ("thresholds", "field"),
    [
        (PatternThresholds(miss_ratio=0), "miss_ratio"),
        (PatternThresholds(miss_ratio=1.5), "miss_ratio"),
        (PatternThresholds(min_lookups=0), "min_lookups"),
        (PatternThresholds(subjects_per_hour=0), "subjects_per_hour"),
    ],
)
def test_nonsense_thresholds_are_refused(thresholds: PatternThresholds, field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        lookup_patterns([], thresholds)
    assert refused.value.code == "threshold_invalid"
    assert refused.value.location.field == field


def test_peak_window_is_the_sixty_minutes_before_each_lookup() -> None:
    times = [
        (T0, "a"),
        (T0 + timedelta(minutes=59, seconds=59), "b"),
        (T0 + timedelta(minutes=60), "c"),
    ]
    assert peak_distinct_in_window(times) == (2, T0)
    assert peak_distinct_in_window([]) == (0, None)
