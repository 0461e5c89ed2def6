"""Audit search and reports for IG leads and the operator, each search itself audited.

Scope: an IG lead of agency A sees entries under agreements A is a party to (in any
version) and entries A itself made; the operator (``viewer=None``) sees everything.
A search by a young person's identifiers finds the broker's subject ids through
``subjects_for`` (the identifiers are tokenised, never stored or logged) and then
the entries about those subjects. Every search and report appends an ``audit_search``
entry naming the filters, the identifier *names* used, the subject ids found and the
number of results; a refused one is audited with its reason code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from agreements.registry import AgreementRegistry
from audit import reports
from audit.events import AuditEvent, LoggedEntry
from audit.queries import MAX_LIMIT, AuditQuery, normalise_time
from broker.errors import ValidationError
from broker.interfaces import UnitOfWork, UnitOfWorkFactory
from broker.lookup_patterns import LookupPattern, PatternThresholds, lookup_patterns
from broker.principal import Principal

AuditAppender = Callable[[UnitOfWork, AuditEvent], LoggedEntry]
SubjectFinder = Callable[[Mapping[str, str], Sequence[str] | None], dict[str, str]]
MAX_REPORT_ENTRIES = 200_000
OPERATOR = "operator"
T = TypeVar("T")
_FILTERS = ("agency", "agreement_id", "purpose", "action", "outcome", "reason_code")
# Filter values are recorded only when they look like the codes they should be, so a
# name typed into the wrong box never reaches the log.
_CODE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
_SUBJECT_ID = re.compile(r"^sub_[0-9a-f]{32}$")


@dataclass(frozen=True)
class SearchResult:
    """One page of matching entries; ``next_after`` is None on the last page."""

    entries: tuple[LoggedEntry, ...]
    next_after: int | None
    subjects_found: int | None  # with identifiers: how many subject ids they led to


class AuditSearch:
    """The IG lead's (and the operator's) questions of the audit trail."""

    def __init__(
        self,
        *,
        units: UnitOfWorkFactory,
        audit: AuditAppender,
        registry: Callable[[], AgreementRegistry],
        subjects_for: SubjectFinder,
    ) -> None:
        self._units = units
        self._audit = audit
        self._registry = registry
        self._subjects_for = subjects_for

    def scope_of(self, viewer: str | None) -> tuple[str, ...] | None:
        """The agreements whose entries ``viewer`` may see; None means all (the operator)."""
        if viewer is None:
            return None
        return tuple(
            sorted({a.id for a in self._registry().all_versions() if a.party(viewer) is not None})
        )

    def search(
        self,
        query: AuditQuery,
        *,
        viewer: str | None,
        identifiers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        by: Principal | None = None,
    ) -> SearchResult:
        """One page of entries matching ``query`` within the viewer's scope.

        ValidationError (time_range_invalid, page_size_invalid, page_invalid,
        filter_invalid, identifiers_insufficient, identifier_unknown,
        identifier_invalid); each refusal is audited before it is raised.
        """
        base = self._event(viewer, query, identifiers, request_id, kind="search", by=by)
        with self._refusals_audited(base):
            scoped, found = self._prepare(query, viewer, identifiers)
        with self._units() as uow:
            entries = uow.audit_queries.search(scoped)
            self._record(uow, base, found, len(entries))
            uow.commit()
        return SearchResult(
            entries=tuple(entries),
            next_after=entries[-1].seq if len(entries) == scoped.limit else None,
            subjects_found=None if found is None else len(found),
        )

    def subject_report(
        self,
        *,
        viewer: str | None,
        identifiers: Mapping[str, str] | None = None,
        subject_ids: Sequence[str] | None = None,
        since: str | None = None,
        until: str | None = None,
        request_id: str | None = None,
        by: Principal | None = None,
    ) -> list[reports.Release]:
        """Every release about one young person (by identifiers or subject ids), oldest first."""
        query = AuditQuery(
            action="lookup",
            outcome="permitted",
            subject_ids=None if subject_ids is None else tuple(subject_ids),
            since=since,
            until=until,
        )
        if identifiers is None and subject_ids is None:
            raise ValidationError(
                "give the young person's identifiers or subject ids", code="subject_missing"
            )
        base = self._event(viewer, query, identifiers, request_id, kind="subject", by=by)
        with self._refusals_audited(base):
            scoped, found = self._prepare(query, viewer, identifiers)
        with self._units() as uow:
            entries = list(self._all(uow, scoped))
            released = reports.subject_report(entries, scoped.subject_ids)
            self._record(uow, base, found, len(released))
            uow.commit()
        return released

    def recipient_report(
        self,
        agency: str,
        *,
        viewer: str | None,
        since: str | None = None,
        until: str | None = None,
        request_id: str | None = None,
        by: Principal | None = None,
    ) -> reports.RecipientReport:
        """Everything ``agency`` looked up and received in the period, within scope."""
        query = AuditQuery(agency=agency, action="lookup", since=since, until=until)
        return self._report(
            "recipient",
            query,
            viewer,
            request_id,
            lambda entries, q: reports.recipient_report(entries, agency, q.since, q.until),
            by=by,
        )

    def refusals(
        self,
        *,
        viewer: str | None,
        since: str | None = None,
        until: str | None = None,
        request_id: str | None = None,
        by: Principal | None = None,
    ) -> list[reports.RefusalCount]:
        """Refusals in the period counted by reason code, agency and agreement."""
        query = AuditQuery(outcome="refused", since=since, until=until)
        return self._report(
            "refusals",
            query,
            viewer,
            request_id,
            lambda e, _q: reports.refusals_by_reason(e),
            by=by,
        )

    def volume(
        self,
        *,
        viewer: str | None,
        agency: str | None = None,
        since: str | None = None,
        until: str | None = None,
        request_id: str | None = None,
        by: Principal | None = None,
    ) -> list[reports.DayVolume]:
        """Lookups per recipient per day in the period, unusual days flagged.

        Spikes are judged against the earlier days of the same period, so give a
        period with history (at least seven days before the days of interest).
        """
        query = AuditQuery(agency=agency, action="lookup", since=since, until=until)
        return self._report(
            "volume",
            query,
            viewer,
            request_id,
            lambda e, _q: reports.volume_by_recipient_per_day(e),
            by=by,
        )

    def patterns(
        self,
        *,
        viewer: str | None,
        agency: str | None = None,
        since: str | None = None,
        until: str | None = None,
        thresholds: PatternThresholds | None = None,
        request_id: str | None = None,
        by: Principal | None = None,
    ) -> list[LookupPattern]:
        """Per recipient and purpose, lookups that miss and subjects matched per hour, flagged.

        ``thresholds`` (see ``broker.lookup_patterns``) say what is unusual; nonsense
        ones are refused (``threshold_invalid``) and audited like any refusal.
        """
        query = AuditQuery(
            agency=agency, action="lookup", outcome="permitted", since=since, until=until
        )
        given = thresholds or PatternThresholds()
        base = self._event(viewer, query, None, request_id, kind="patterns", by=by)
        with self._refusals_audited(base):
            given.checked()
        return self._report(
            "patterns",
            query,
            viewer,
            request_id,
            lambda e, _q: lookup_patterns(e, given),
            by=by,
        )

    # -- helpers --------------------------------------------------------------

    def _report(
        self,
        kind: str,
        query: AuditQuery,
        viewer: str | None,
        request_id: str | None,
        summarise: Callable[[list[LoggedEntry], AuditQuery], T],
        *,
        by: Principal | None = None,
    ) -> T:
        base = self._event(viewer, query, None, request_id, kind=kind, by=by)
        with self._refusals_audited(base):
            scoped, _ = self._prepare(query, viewer, None)
        with self._units() as uow:
            entries = list(self._all(uow, scoped))
            result = summarise(entries, scoped)
            self._record(uow, base, None, len(entries))
            uow.commit()
        return result

    def _prepare(
        self, query: AuditQuery, viewer: str | None, identifiers: Mapping[str, str] | None
    ) -> tuple[AuditQuery, list[str] | None]:
        """The validated query with the viewer's scope and the identifiers' subjects applied."""
        scope = self.scope_of(viewer)
        checked = query.validate()
        if scope is not None:
            checked = replace(checked, scope_agreement_ids=scope, scope_actor=viewer)
        if identifiers is None:
            return checked, None
        searched: Sequence[str] | None = scope
        if checked.agreement_id is not None:
            candidates = [checked.agreement_id] if scope is None else scope
            searched = [a for a in candidates if a == checked.agreement_id]
        found: list[str] = []
        if searched is None or searched:
            found = sorted(set(self._subjects_for(identifiers, searched).values()))
        if checked.subject_ids is not None:
            found = [s for s in found if s in set(checked.subject_ids)]
        return replace(checked, subject_ids=tuple(found)), found

    def _all(self, uow: UnitOfWork, query: AuditQuery) -> Iterator[LoggedEntry]:
        """Every matching entry, page by page; refuses a report over MAX_REPORT_ENTRIES."""
        after, seen = query.after, 0
        while True:
            page = uow.audit_queries.search(replace(query, after=after, limit=MAX_LIMIT))
            seen += len(page)
            if seen > MAX_REPORT_ENTRIES:
                raise ValidationError(
                    f"the report would cover more than {MAX_REPORT_ENTRIES} entries; "
                    "give a shorter period",
                    code="report_too_large",
                )
            yield from page
            if len(page) < MAX_LIMIT:
                return
            after = page[-1].seq

    def _event(
        self,
        viewer: str | None,
        query: AuditQuery,
        identifiers: Mapping[str, str] | None,
        request_id: str | None,
        *,
        kind: str,
        by: Principal | None = None,
    ) -> AuditEvent:
        """The search's audit entry: filters and identifier names, never identifier values.

        ``by`` is the signed-in person (an IG lead or an administrator over HTTP): the
        entry names their account, so a search is traced to a person, not only an agency.
        """
        filters: dict[str, Any] = {
            name: _code_or_marker(getattr(query, name))
            for name in _FILTERS
            if getattr(query, name) is not None
        }
        for name in ("since", "until"):
            value = getattr(query, name)
            if value is not None:
                filters[name] = _time_or_marker(value, name)
        if query.subject_ids is not None:
            filters["subject_ids"] = sorted(
                s if _SUBJECT_ID.match(s) else "unrecognised" for s in query.subject_ids[:100]
            )
        detail: dict[str, Any] = {
            "kind": kind,
            "role": by.role.value
            if by is not None
            else "operator"
            if viewer is None
            else "ig_lead",
            "filters": filters,
            "by_identifiers": sorted(_code_or_marker(n) for n in identifiers or ()),
        }
        if by is not None:
            detail["account"] = by.subject
        if kind == "search":
            detail["page"] = {"after": query.after, "limit": query.limit}
        return AuditEvent(
            actor=viewer if viewer is not None else by.role.value if by is not None else OPERATOR,
            action="audit_search",
            outcome="permitted",
            agreement_id=(
                query.agreement_id
                if query.agreement_id is not None and _CODE.match(query.agreement_id)
                else None
            ),
            request_id=request_id,
            detail=detail,
        )

    def _record(
        self, uow: UnitOfWork, base: AuditEvent, found: list[str] | None, results: int
    ) -> None:
        detail = dict(base.detail, results=results)
        if found is not None:
            detail["subjects"] = found  # not "subject": the search is not a release about them
        self._audit(uow, replace(base, detail=detail))

    @contextmanager
    def _refusals_audited(self, base: AuditEvent) -> Iterator[None]:
        """Audit a ValidationError as a refused search, then let it through."""
        try:
            yield
        except ValidationError as exc:
            with self._units() as uow:
                self._audit(uow, replace(base, outcome="refused", reason_code=exc.code))
                uow.commit()
            raise


def _code_or_marker(value: str) -> str:
    return value if _CODE.match(value) else "unrecognised"


def _time_or_marker(value: str, name: str) -> str:
    """A time filter as recorded: normalised if it parses, else only that it did not."""
    try:
        return normalise_time(value, name, end_of_day=name == "until") or ""
    except ValidationError:
        return "unparsable"
