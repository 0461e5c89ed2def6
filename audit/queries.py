"""What an IG lead (or the operator) asks of the audit trail: one frozen query, validated.

Times are compared as the log stores them: UTC ISO 8601 with microseconds. ``since``
is inclusive and ``until`` exclusive; a bare date as ``until`` means the end of that
day, so ``since=2026-11-01, until=2026-11-30`` covers the whole of November's 1st-30th.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from broker.errors import Location, ValidationError

MAX_LIMIT = 1000
MAX_SUBJECTS = 100
MAX_FILTER_LENGTH = 64


@dataclass(frozen=True)
class AuditQuery:
    """Filters over audit entries; None means "any". Entries come in ``seq`` order.

    ``subject_ids`` of None means any subject; an empty tuple matches nothing (a search
    by identifiers that found nobody). ``scope_agreement_ids``/``scope_actor``, when
    either is set, keep only entries under those agreements or made by that actor: the
    IG lead's scope, set by the service and never by the caller.
    """

    agency: str | None = None
    agreement_id: str | None = None
    purpose: str | None = None
    action: str | None = None
    outcome: str | None = None
    reason_code: str | None = None
    subject_ids: tuple[str, ...] | None = None
    since: str | None = None
    until: str | None = None
    after: int = 0
    limit: int = 100
    scope_agreement_ids: tuple[str, ...] | None = None
    scope_actor: str | None = None

    def validate(self) -> AuditQuery:
        """The query with its times normalised to the log's form; ValidationError if wrong.

        Codes: ``time_range_invalid`` (an unparsable time, or since after until),
        ``page_size_invalid`` (limit outside 1..1000), ``page_invalid`` (after < 0),
        ``filter_invalid`` (an over-long filter or too many subject ids).
        """
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValidationError(
                f"limit must be between 1 and {MAX_LIMIT}",
                code="page_size_invalid",
                location=Location(field="limit"),
            )
        if self.after < 0:
            raise ValidationError(
                "after must not be negative", code="page_invalid", location=Location(field="after")
            )
        for name in ("agency", "agreement_id", "purpose", "action", "outcome", "reason_code"):
            value = getattr(self, name)
            if value is not None and not 0 < len(value) <= MAX_FILTER_LENGTH:
                raise ValidationError(
                    f"{name} must be 1 to {MAX_FILTER_LENGTH} characters",
                    code="filter_invalid",
                    location=Location(field=name),
                )
        if self.subject_ids is not None and (
            len(self.subject_ids) > MAX_SUBJECTS
            or any(not 0 < len(s) <= MAX_FILTER_LENGTH for s in self.subject_ids)
        ):
            raise ValidationError(
                f"subject_ids takes at most {MAX_SUBJECTS} subject ids",
                code="filter_invalid",
                location=Location(field="subject_ids"),
            )
        since = normalise_time(self.since, "since", end_of_day=False)
        until = normalise_time(self.until, "until", end_of_day=True)
        if since is not None and until is not None and since > until:
            raise ValidationError(
                "since is after until; swap them",
                code="time_range_invalid",
                location=Location(field="since"),
            )
        return replace(self, since=since, until=until)


def normalise_time(value: str | None, name: str, *, end_of_day: bool) -> str | None:
    """An ISO date or date-time as the log writes times (UTC, microseconds), or None.

    A date-time without an offset is taken as UTC. A bare date is its start of day, or
    with ``end_of_day`` the start of the next day (for an exclusive upper bound).
    """
    if value is None:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            moment = start + timedelta(days=1) if end_of_day else start
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="microseconds")
    except (ValueError, OverflowError):
        raise ValidationError(
            f"{name} must be an ISO 8601 date or date-time, e.g. 2026-11-26T09:00:00Z",
            code="time_range_invalid",
            location=Location(field=name),
        ) from None
