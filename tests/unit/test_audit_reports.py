"""Reports over audit entries: releases about a subject, a recipient's period, refusals, volume."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from audit.events import AuditEvent, LoggedEntry
from audit.reports import (
    recipient_report,
    refusals_by_reason,
    subject_report,
    volume_by_recipient_per_day,
)

AGREEMENT = "sv-early-identification"
DAY0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def _at(days: float) -> str:
    return (DAY0 + timedelta(days=days)).isoformat(timespec="microseconds")


def _lookup(seq: int, actor: str, subject: str | None, days: float = 0, **more: Any) -> LoggedEntry:
    detail: dict[str, Any] = {
        "matched": subject is not None,
        "subject": subject,
        "rule": "nhs_number" if subject else None,
        "released": [{"field": "school-attendance.excluded", "form": "as_supplied"}]
        if subject
        else [],
        "providers": ["school"] if subject else [],
        "warnings": [],
    }
    fields: dict[str, Any] = {
        "actor": actor,
        "action": "lookup",
        "outcome": "permitted",
        "agreement_id": AGREEMENT,
        "agreement_version": 1,
        "purpose": "safeguarding-triage",
        "detail": detail,
    }
    fields.update(more)
    return LoggedEntry(seq=seq, at=_at(days), event=AuditEvent(**fields), leaf_hash="00" * 32)


def _refusal(seq: int, actor: str, code: str, agreement: str | None = AGREEMENT) -> LoggedEntry:
    event = AuditEvent(
        actor=actor, action="lookup", outcome="refused", reason_code=code, agreement_id=agreement
    )
    return LoggedEntry(seq=seq, at=_at(seq / 100), event=event, leaf_hash="00" * 32)


def test_subject_report_lists_every_release_about_the_subject() -> None:
    entries = [
        _lookup(3, "police", "sub_a", purpose="violence-reduction"),
        _lookup(1, "social-care", "sub_a"),
        _lookup(2, "school", "sub_b"),
        _lookup(4, "school", None),  # no match: nothing released
        _refusal(5, "ed", "agency_not_recipient"),
    ]
    releases = subject_report(entries, ["sub_a"])
    assert [(r.seq, r.recipient, r.purpose) for r in releases] == [
        (1, "social-care", "safeguarding-triage"),
        (3, "police", "violence-reduction"),
    ]
    first = releases[0]
    assert first.agreement_id == AGREEMENT
    assert first.agreement_version == 1
    assert first.fields == (("school-attendance.excluded", "as_supplied"),)
    assert first.providers == ("school",)
    assert first.as_dict()["fields"] == [
        {"field": "school-attendance.excluded", "form": "as_supplied"}
    ]
    assert [r.seq for r in subject_report(entries)] == [1, 2, 3]


def test_recipient_report_covers_one_agency_in_the_period() -> None:
    entries = [
        _lookup(1, "police", "sub_a", days=0),
        _lookup(2, "police", None, days=1),
        _refusal(3, "police", "purpose_unknown"),
        _lookup(4, "police", "sub_b", days=5),
        _lookup(5, "school", "sub_a", days=1),
    ]
    report = recipient_report(entries, "police", since=_at(-1), until=_at(4))
    assert report.lookups == 3
    assert report.matched == 1
    assert report.refused == 1
    assert report.refusals_by_reason == {"purpose_unknown": 1}
    assert report.fields_released == {"school-attendance.excluded": 1}
    assert [r.seq for r in report.releases] == [1]
    assert report.as_dict()["agency"] == "police"


def test_refusals_are_counted_by_reason_agency_and_agreement() -> None:
    entries = [
        _refusal(1, "police", "purpose_unknown"),
        _refusal(2, "police", "purpose_unknown"),
        _refusal(3, "ed", "agency_not_recipient"),
        _refusal(4, "police", "purpose_unknown", agreement="other"),
        _lookup(5, "police", "sub_a"),
    ]
    counts = [
        (c.reason_code, c.agency, c.agreement_id, c.count) for c in refusals_by_reason(entries)
    ]
    assert counts == [
        ("purpose_unknown", "police", AGREEMENT, 2),
        ("agency_not_recipient", "ed", AGREEMENT, 1),
        ("purpose_unknown", "police", "other", 1),
    ]


def _days(per_day: list[int], actor: str = "police") -> list[LoggedEntry]:
    entries: list[LoggedEntry] = []
    for day, count in enumerate(per_day):
        for n in range(count):
            entries.append(_lookup(len(entries) + 1, actor, f"sub_{day}_{n % 3}", days=day))
    return entries


def test_a_spike_needs_seven_previous_days() -> None:
    quiet = _days([2, 3, 2, 3, 2, 3, 2, 12])
    flagged = {d.day: d.flags for d in volume_by_recipient_per_day(quiet)}
    assert flagged[date(2026, 11, 8)] == ("volume_spike",)
    assert all(not flags for day, flags in flagged.items() if day != date(2026, 11, 8))
    # Only six previous days: the same jump is not judged.
    short = {d.day: d.flags for d in volume_by_recipient_per_day(_days([2, 3, 2, 3, 2, 3, 12]))}
    assert short[date(2026, 11, 7)] == ()


def test_the_threshold_is_mean_plus_three_standard_deviations() -> None:
    # Previous days 1,5,1,5,1,5,1: mean 2.71, population sd 1.98, threshold 8.65.
    within = volume_by_recipient_per_day(_days([1, 5, 1, 5, 1, 5, 1, 8]))
    assert within[-1].lookups == 8
    assert within[-1].flags == ()
    above = volume_by_recipient_per_day(_days([1, 5, 1, 5, 1, 5, 1, 9]))
    assert above[-1].flags == ("volume_spike",)


def test_days_without_lookups_count_as_zero_history() -> None:
    entries = [*_days([1]), *(_lookup(100 + n, "police", "sub_x", days=8) for n in range(2))]
    days = volume_by_recipient_per_day(entries)
    # History 1,0,0,0,0,0,0,0 (the quiet days count): mean 0.125, sd 0.33, threshold 1.12.
    assert [(d.day, d.lookups) for d in days] == [(date(2026, 11, 1), 1), (date(2026, 11, 9), 2)]
    assert days[1].flags == ("volume_spike",)


def test_more_than_twenty_distinct_subjects_in_a_day_is_flagged() -> None:
    many = [_lookup(i, "school", f"sub_{i}") for i in range(1, 22)]
    (day,) = volume_by_recipient_per_day(many)
    assert day.distinct_subjects == 21
    assert day.flags == ("many_subjects",)
    (fewer,) = volume_by_recipient_per_day(many[:20])
    assert fewer.flags == ()


def test_volume_is_per_recipient() -> None:
    entries = _days([2] * 8, actor="police") + _days([1] * 7 + [30], actor="school")
    flags = {(d.agency, d.day): d.flags for d in volume_by_recipient_per_day(entries)}
    assert flags[("police", date(2026, 11, 8))] == ()
    assert "volume_spike" in flags[("school", date(2026, 11, 8))]
