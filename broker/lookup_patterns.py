"""Unusual lookup patterns, for the IG lead: sweeps that miss, and harvests of many subjects.

Two signs that someone is using lookups to probe rather than to safeguard, judged
per recipient agency and purpose over the period asked about:

- **many misses** (``many_misses``): a sweep of guessed identities matches almost
  nothing. Flagged when at least ``min_lookups`` lookups were made and the share
  that matched no one is ``miss_ratio`` or more.
- **many subjects** (``many_subjects``): one caller pulls what partners hold about
  many different young people in a short time. Flagged when more than
  ``subjects_per_hour`` distinct subjects were matched within any 60 minutes (a
  sliding window, so a burst across the turn of an hour is not halved).

Each flag carries the figures that raised it and the thresholds it was judged
against. Only counts leave this module: never a subject id or an identifier.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from audit.events import LoggedEntry
from broker.errors import Location, ValidationError

WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class PatternThresholds:
    """When a pattern is unusual. The defaults suit a partnership's daily work.

    ``miss_ratio`` 0.8 and ``min_lookups`` 20: a practitioner checking real
    referrals finds some unknown, rarely four in five over twenty or more; a sweep
    of guessed names misses nearly always. ``subjects_per_hour`` 30: a busy
    front door handles a few referrals an hour, not thirty.
    """

    miss_ratio: float = 0.8
    min_lookups: int = 20
    subjects_per_hour: int = 30

    def checked(self) -> PatternThresholds:
        """These thresholds, or ValidationError naming the one that makes no sense."""
        if not 0.0 < self.miss_ratio <= 1.0:
            raise ValidationError(
                "miss_ratio must be more than 0 and at most 1",
                code="threshold_invalid",
                location=Location(field="miss_ratio"),
            )
        if not 1 <= self.min_lookups <= 1_000_000:
            raise ValidationError(
                "min_lookups must be between 1 and 1000000",
                code="threshold_invalid",
                location=Location(field="min_lookups"),
            )
        if not 1 <= self.subjects_per_hour <= 1_000_000:
            raise ValidationError(
                "subjects_per_hour must be between 1 and 1000000",
                code="threshold_invalid",
                location=Location(field="subjects_per_hour"),
            )
        return self


@dataclass(frozen=True)
class Flag:
    """One unusual pattern and the figures that raised it."""

    code: str
    figures: Mapping[str, Any]


@dataclass(frozen=True)
class LookupPattern:
    """One recipient's lookups for one purpose in the period, with any flags raised."""

    agency: str
    purpose: str
    lookups: int
    misses: int
    peak_subjects_per_hour: int
    flags: tuple[Flag, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, flags with their figures."""
        return {
            "agency": self.agency,
            "purpose": self.purpose,
            "lookups": self.lookups,
            "misses": self.misses,
            "peak_subjects_per_hour": self.peak_subjects_per_hour,
            "flags": [{"code": f.code, "figures": dict(f.figures)} for f in self.flags],
        }


def peak_distinct_in_window(
    matched: Iterable[tuple[datetime, str]], window: timedelta = WINDOW
) -> tuple[int, datetime | None]:
    """Most distinct subjects within any ``window``, and when that window began.

    Two pointers over the lookups in time order: each subject's count in the
    window is kept, so the work is linear in the number of lookups.
    """
    ordered = sorted(matched)
    in_window: Counter[str] = Counter()
    peak, peak_start = 0, None
    start = 0
    for at, subject in ordered:
        in_window[subject] += 1
        while ordered[start][0] <= at - window:
            old = ordered[start][1]
            in_window[old] -= 1
            if in_window[old] == 0:
                del in_window[old]
            start += 1
        if len(in_window) > peak:
            peak, peak_start = len(in_window), ordered[start][0]
    return peak, peak_start


def lookup_patterns(
    entries: Iterable[LoggedEntry], thresholds: PatternThresholds | None = None
) -> list[LookupPattern]:
    """Per recipient agency and purpose, the figures of its permitted lookups and any flags.

    Entries other than permitted lookups are ignored, so the caller may pass any
    selection of the log; the result is ordered by agency, then purpose.
    """
    limits = (thresholds or PatternThresholds()).checked()
    totals: Counter[tuple[str, str]] = Counter()
    misses: Counter[tuple[str, str]] = Counter()
    matched: dict[tuple[str, str], list[tuple[datetime, str]]] = defaultdict(list)
    for entry in entries:
        event = entry.event
        if event.action != "lookup" or event.outcome != "permitted":
            continue
        key = (event.actor, event.purpose or "")
        totals[key] += 1
        subject = event.detail.get("subject")
        if event.detail.get("matched") is True and isinstance(subject, str):
            matched[key].append((datetime.fromisoformat(entry.at), subject))
        else:
            misses[key] += 1
    out: list[LookupPattern] = []
    for key in sorted(totals):
        lookups, missed = totals[key], misses[key]
        peak, peak_start = peak_distinct_in_window(matched.get(key, ()))
        flags: list[Flag] = []
        if lookups >= limits.min_lookups and missed / lookups >= limits.miss_ratio:
            flags.append(
                Flag(
                    "many_misses",
                    {
                        "lookups": lookups,
                        "misses": missed,
                        "miss_ratio": round(missed / lookups, 3),
                        "threshold_ratio": limits.miss_ratio,
                        "threshold_min_lookups": limits.min_lookups,
                    },
                )
            )
        if peak > limits.subjects_per_hour:
            assert peak_start is not None
            flags.append(
                Flag(
                    "many_subjects",
                    {
                        "distinct_subjects": peak,
                        "window_start": peak_start.isoformat(timespec="seconds"),
                        "window_minutes": int(WINDOW.total_seconds() // 60),
                        "threshold_per_hour": limits.subjects_per_hour,
                    },
                )
            )
        out.append(LookupPattern(key[0], key[1], lookups, missed, peak, tuple(flags)))
    return out
