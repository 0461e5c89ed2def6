"""Reports an IG lead reads: pure functions over audit entries, no storage, no clock.

Every report takes entries already chosen (by scope and period) and only summarises
them. Days are UTC calendar days.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from audit.events import LoggedEntry

SPIKE_SIGMAS = 3.0
SPIKE_MIN_HISTORY = 7
MAX_DAILY_SUBJECTS = 20


@dataclass(frozen=True)
class Release:
    """One release of data about a subject to a recipient, from a lookup entry."""

    seq: int
    at: str
    recipient: str
    agreement_id: str | None
    agreement_version: int | None
    purpose: str | None
    subject_id: str | None
    fields: tuple[tuple[str, str], ...]  # (dataset.field, form)
    providers: tuple[str, ...]  # agencies whose records were released, where recorded

    def as_dict(self) -> dict[str, Any]:
        """The release as JSON-ready data."""
        return {
            "seq": self.seq,
            "at": self.at,
            "recipient": self.recipient,
            "agreement_id": self.agreement_id,
            "agreement_version": self.agreement_version,
            "purpose": self.purpose,
            "subject_id": self.subject_id,
            "fields": [{"field": f, "form": form} for f, form in self.fields],
            "providers": list(self.providers),
        }


@dataclass(frozen=True)
class RecipientReport:
    """What one recipient asked for and received in a period."""

    agency: str
    lookups: int
    matched: int
    refused: int
    refusals_by_reason: dict[str, int]
    fields_released: dict[str, int]  # dataset.field -> how many releases included it
    releases: tuple[Release, ...]

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "agency": self.agency,
            "lookups": self.lookups,
            "matched": self.matched,
            "refused": self.refused,
            "refusals_by_reason": dict(self.refusals_by_reason),
            "fields_released": dict(self.fields_released),
            "releases": [r.as_dict() for r in self.releases],
        }


@dataclass(frozen=True)
class RefusalCount:
    """How many refusals share one reason code, agency and agreement."""

    reason_code: str
    agency: str
    agreement_id: str | None
    count: int


@dataclass(frozen=True)
class DayVolume:
    """One recipient's lookups on one day, with any flags raised.

    Flags: ``volume_spike`` (lookups above mean + 3 standard deviations of the
    recipient's previous days, given at least 7 of them) and ``many_subjects`` (more
    than 20 distinct subjects looked up in the day).
    """

    agency: str
    day: date
    lookups: int
    distinct_subjects: int
    flags: tuple[str, ...]


def release_of(entry: LoggedEntry) -> Release | None:
    """The release an entry records, or None if it released nothing."""
    event = entry.event
    if event.action != "lookup" or event.outcome != "permitted":
        return None
    released = event.detail.get("released")
    if not isinstance(released, list) or not released:
        return None
    fields = tuple(
        (str(item.get("field")), str(item.get("form")))
        for item in released
        if isinstance(item, dict)
    )
    providers = event.detail.get("providers")
    subject = event.detail.get("subject")
    return Release(
        seq=entry.seq,
        at=entry.at,
        recipient=event.actor,
        agreement_id=event.agreement_id,
        agreement_version=event.agreement_version,
        purpose=event.purpose,
        subject_id=subject if isinstance(subject, str) else None,
        fields=fields,
        providers=tuple(str(p) for p in providers) if isinstance(providers, list) else (),
    )


def subject_report(
    entries: Iterable[LoggedEntry], subject_ids: Iterable[str] | None = None
) -> list[Release]:
    """Every release about the subject(s), oldest first.

    ``subject_ids`` None keeps every release in ``entries`` (they were already
    chosen by subject); otherwise only releases about those subject ids.
    """
    wanted = None if subject_ids is None else set(subject_ids)
    found = [r for r in map(release_of, entries) if r is not None]
    if wanted is not None:
        found = [r for r in found if r.subject_id in wanted]
    return sorted(found, key=lambda r: r.seq)


def recipient_report(
    entries: Iterable[LoggedEntry],
    agency: str,
    since: str | None = None,
    until: str | None = None,
) -> RecipientReport:
    """Everything ``agency`` looked up and received in [since, until).

    ``since`` and ``until`` must be in the log's own form (see ``audit.queries``).
    """
    mine = [
        e
        for e in entries
        if e.event.actor == agency
        and e.event.action == "lookup"
        and (since is None or e.at >= since)
        and (until is None or e.at < until)
    ]
    releases = subject_report(mine)
    reasons = Counter(e.event.reason_code or "" for e in mine if e.event.outcome == "refused")
    fields = Counter(name for r in releases for name, _ in r.fields)
    return RecipientReport(
        agency=agency,
        lookups=len(mine),
        matched=sum(1 for e in mine if e.event.detail.get("matched") is True),
        refused=sum(reasons.values()),
        refusals_by_reason=dict(sorted(reasons.items())),
        fields_released=dict(sorted(fields.items())),
        releases=tuple(releases),
    )


def refusals_by_reason(entries: Iterable[LoggedEntry]) -> list[RefusalCount]:
    """Refusals counted by (reason code, agency, agreement), most frequent first."""
    counts = Counter(
        (e.event.reason_code or "", e.event.actor, e.event.agreement_id)
        for e in entries
        if e.event.outcome == "refused"
    )
    return [
        RefusalCount(reason_code=code, agency=agency, agreement_id=agreement, count=n)
        for (code, agency, agreement), n in sorted(
            counts.items(), key=lambda item: (-item[1], item[0][0], item[0][1], item[0][2] or "")
        )
    ]


def day_of(at: str) -> date:
    """The UTC calendar day of a logged time."""
    return datetime.fromisoformat(at).astimezone(UTC).date()


def volume_by_recipient_per_day(
    entries: Iterable[LoggedEntry],
    *,
    sigmas: float = SPIKE_SIGMAS,
    min_history: int = SPIKE_MIN_HISTORY,
    max_subjects: int = MAX_DAILY_SUBJECTS,
) -> list[DayVolume]:
    """Lookups per recipient per day (refused ones included), with unusual days flagged.

    A recipient's previous days are every calendar day from its first lookup in
    ``entries`` up to the day before, days without lookups counting as zero. Pass the
    history to be compared against: a day is judged only on the entries given.
    """
    lookups: dict[str, Counter[date]] = defaultdict(Counter)
    subjects: dict[tuple[str, date], set[str]] = defaultdict(set)
    for entry in entries:
        if entry.event.action != "lookup":
            continue
        day = day_of(entry.at)
        lookups[entry.event.actor][day] += 1
        subject = entry.event.detail.get("subject")
        if isinstance(subject, str):
            subjects[(entry.event.actor, day)].add(subject)
    out: list[DayVolume] = []
    for agency in sorted(lookups):
        per_day = lookups[agency]
        first = min(per_day)
        for day in sorted(per_day):
            history = [per_day.get(first + timedelta(days=n), 0) for n in range((day - first).days)]
            distinct = len(subjects.get((agency, day), ()))
            flags: list[str] = []
            if _spike(per_day[day], history, sigmas, min_history):
                flags.append("volume_spike")
            if distinct > max_subjects:
                flags.append("many_subjects")
            out.append(DayVolume(agency, day, per_day[day], distinct, tuple(flags)))
    return out


def _spike(count: int, history: Sequence[int], sigmas: float, min_history: int) -> bool:
    if len(history) < min_history:
        return False
    return count > statistics.fmean(history) + sigmas * statistics.pstdev(history)
