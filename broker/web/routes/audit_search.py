"""Audit search and reports for an agency's IG lead (an ``ig_lead`` API key only).

Identifiers travel only in POST bodies, never in a URL, so they never reach an
access log. The IG lead sees entries under agreements its agency is a party to and
entries its agency made; every search is itself audited (without the identifiers).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from audit.events import LoggedEntry
from audit.export import to_csv, to_fhir_bundle
from audit.queries import AuditQuery
from broker.lookup_patterns import PatternThresholds
from broker.web.authorise import PrincipalDep
from broker.web.deps import BrokerDep, RequestIdDep
from broker.web.schemas import (
    SQL_INT_MAX,
    AuditEntryOut,
    ErrorOut,
    IdentifierName,
    audit_entry_out,
)

router = APIRouter(prefix="/v1/audit", tags=["audit search"])

_ERRORS = {status: {"model": ErrorOut} for status in (400, 401, 403, 413, 415, 422, 503)}
_Code = Annotated[str | None, Field(default=None, min_length=1, max_length=64)]
_Time = Annotated[str | None, Field(default=None, max_length=40, description="ISO 8601")]
_Identifiers = Annotated[
    dict[IdentifierName, Annotated[str, Field(max_length=200)]] | None,
    Field(default=None, description="A young person's identifiers; date_of_birth YYYY-MM-DD"),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuditSearchIn(_Body):
    """Filters (all optional, all must hold), a page, a format, and optionally identifiers."""

    agency: _Code = None
    agreement_id: _Code = None
    purpose: _Code = None
    action: _Code = None
    outcome: _Code = None
    reason_code: _Code = None
    subject_ids: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=100
    )
    since: _Time = None
    until: _Time = None
    after: int = Field(default=0, le=SQL_INT_MAX, description="return entries after this position")
    limit: int = Field(default=100, description="1 to 1000")
    identifiers: _Identifiers = None
    format: Literal["json", "csv", "fhir"] = "json"


class AuditSearchOut(BaseModel):
    entries: list[AuditEntryOut]
    next_after: int | None
    subjects_found: int | None = Field(description="subject ids the identifiers led to")


class SubjectReportIn(_Body):
    """One young person, by identifiers or by the broker's subject ids, over a period."""

    identifiers: _Identifiers = None
    subject_ids: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=100
    )
    since: _Time = None
    until: _Time = None


class ReleasedFieldOut(BaseModel):
    field: str
    form: str


class ReleaseOut(BaseModel):
    seq: int
    at: str
    recipient: str
    agreement_id: str | None
    agreement_version: int | None
    purpose: str | None
    subject_id: str | None
    fields: list[ReleasedFieldOut]
    providers: list[str]


class SubjectReportOut(BaseModel):
    releases: list[ReleaseOut]


class RecipientReportOut(BaseModel):
    agency: str
    lookups: int
    matched: int
    refused: int
    refusals_by_reason: dict[str, int]
    fields_released: dict[str, int]
    releases: list[ReleaseOut]


class RefusalOut(BaseModel):
    reason_code: str
    agency: str
    agreement_id: str | None
    count: int


class RefusalsOut(BaseModel):
    refusals: list[RefusalOut]


class DayVolumeOut(BaseModel):
    agency: str
    day: date
    lookups: int
    distinct_subjects: int
    flags: list[str]


class VolumeOut(BaseModel):
    days: list[DayVolumeOut]


TimeQuery = Annotated[str | None, Query(max_length=40, description="ISO 8601 date or time")]


@router.post(
    "/search",
    response_model=AuditSearchOut,
    responses={
        **_ERRORS,  # type: ignore[dict-item]
        200: {"content": {"text/csv": {}, "application/fhir+json": {}}},
    },
)
def search(
    body: AuditSearchIn, principal: PrincipalDep, broker: BrokerDep, request_id: RequestIdDep
) -> Any:
    """Entries within your agency's scope matching every filter, a page at a time.

    With ``identifiers``, only entries about that young person. ``format`` csv gives a
    spreadsheet-safe CSV; fhir a FHIR R4 Bundle of AuditEvents, one per disclosure.
    """
    query = AuditQuery(
        agency=body.agency,
        agreement_id=body.agreement_id,
        purpose=body.purpose,
        action=body.action,
        outcome=body.outcome,
        reason_code=body.reason_code,
        subject_ids=None if body.subject_ids is None else tuple(body.subject_ids),
        since=body.since,
        until=body.until,
        after=body.after,
        limit=body.limit,
    )
    identifiers = (
        None if body.identifiers is None else {str(k): v for k, v in body.identifiers.items()}
    )
    result = broker.audit_search.search(
        query,
        viewer=principal.agency,
        identifiers=identifiers,
        request_id=request_id,
        by=principal,
    )
    if body.format == "csv":
        return Response(
            to_csv(result.entries),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="audit-search.csv"'},
        )
    if body.format == "fhir":
        bundle = to_fhir_bundle(result.entries, broker.audit.origin)
        return Response(json.dumps(bundle), media_type="application/fhir+json")
    return AuditSearchOut(
        entries=[entry_out(e) for e in result.entries],
        next_after=result.next_after,
        subjects_found=result.subjects_found,
    )


@router.post("/reports/subject", response_model=SubjectReportOut, responses=_ERRORS)  # type: ignore[arg-type]
def subject_report(
    body: SubjectReportIn, principal: PrincipalDep, broker: BrokerDep, request_id: RequestIdDep
) -> SubjectReportOut:
    """Every release about one young person: when, to whom, under what, which fields."""
    releases = broker.audit_search.subject_report(
        viewer=principal.agency,
        by=principal,
        identifiers=None
        if body.identifiers is None
        else {str(k): v for k, v in body.identifiers.items()},
        subject_ids=body.subject_ids,
        since=body.since,
        until=body.until,
        request_id=request_id,
    )
    return SubjectReportOut(releases=[ReleaseOut.model_validate(r.as_dict()) for r in releases])


@router.get("/reports/recipient", response_model=RecipientReportOut, responses=_ERRORS)  # type: ignore[arg-type]
def recipient_report(
    principal: PrincipalDep,
    broker: BrokerDep,
    request_id: RequestIdDep,
    recipient: Annotated[str, Query(alias="agency", min_length=1, max_length=64)],
    since: TimeQuery = None,
    until: TimeQuery = None,
) -> RecipientReportOut:
    """Everything one recipient looked up and received in a period, within your scope."""
    report = broker.audit_search.recipient_report(
        recipient,
        viewer=principal.agency,
        since=since,
        until=until,
        request_id=request_id,
        by=principal,
    )
    return RecipientReportOut.model_validate(report.as_dict())


@router.get("/reports/refusals", response_model=RefusalsOut, responses=_ERRORS)  # type: ignore[arg-type]
def refusals_report(
    principal: PrincipalDep,
    broker: BrokerDep,
    request_id: RequestIdDep,
    since: TimeQuery = None,
    until: TimeQuery = None,
) -> RefusalsOut:
    """Refusals in a period, counted by reason code, agency and agreement."""
    counts = broker.audit_search.refusals(
        viewer=principal.agency, since=since, until=until, request_id=request_id, by=principal
    )
    return RefusalsOut(refusals=[RefusalOut.model_validate(c.__dict__) for c in counts])


@router.get("/reports/volume", response_model=VolumeOut, responses=_ERRORS)  # type: ignore[arg-type]
def volume_report(
    principal: PrincipalDep,
    broker: BrokerDep,
    request_id: RequestIdDep,
    recipient: Annotated[str | None, Query(alias="agency", min_length=1, max_length=64)] = None,
    since: TimeQuery = None,
    until: TimeQuery = None,
) -> VolumeOut:
    """Lookups per recipient per day, with spikes and many-subject days flagged."""
    days = broker.audit_search.volume(
        viewer=principal.agency,
        agency=recipient,
        since=since,
        until=until,
        request_id=request_id,
        by=principal,
    )
    return VolumeOut(
        days=[
            DayVolumeOut(
                agency=d.agency,
                day=d.day,
                lookups=d.lookups,
                distinct_subjects=d.distinct_subjects,
                flags=list(d.flags),
            )
            for d in days
        ]
    )


class PatternFlagOut(BaseModel):
    code: str
    figures: dict[str, Any]


class LookupPatternOut(BaseModel):
    agency: str
    purpose: str
    lookups: int
    misses: int
    peak_subjects_per_hour: int
    flags: list[PatternFlagOut]


class PatternsOut(BaseModel):
    patterns: list[LookupPatternOut]
    thresholds: dict[str, float]


_PATTERNS = PatternThresholds()


@router.get("/reports/patterns", response_model=PatternsOut, responses=_ERRORS)  # type: ignore[arg-type]
def patterns_report(
    principal: PrincipalDep,
    broker: BrokerDep,
    request_id: RequestIdDep,
    recipient: Annotated[str | None, Query(alias="agency", min_length=1, max_length=64)] = None,
    since: TimeQuery = None,
    until: TimeQuery = None,
    miss_ratio: Annotated[
        float, Query(gt=0, le=1, description="flag at or above this share of misses")
    ] = _PATTERNS.miss_ratio,
    min_lookups: Annotated[
        int, Query(ge=1, le=1_000_000, description="judge misses only from this many lookups")
    ] = _PATTERNS.min_lookups,
    subjects_per_hour: Annotated[
        int, Query(ge=1, le=1_000_000, description="flag more distinct subjects in any hour")
    ] = _PATTERNS.subjects_per_hour,
) -> PatternsOut:
    """Per recipient and purpose: sweeps that miss, many subjects an hour (counts only)."""
    thresholds = PatternThresholds(miss_ratio, min_lookups, subjects_per_hour)
    found = broker.audit_search.patterns(
        viewer=principal.agency,
        agency=recipient,
        since=since,
        until=until,
        thresholds=thresholds,
        request_id=request_id,
        by=principal,
    )
    return PatternsOut(
        patterns=[LookupPatternOut.model_validate(p.as_dict()) for p in found],
        thresholds={
            "miss_ratio": thresholds.miss_ratio,
            "min_lookups": thresholds.min_lookups,
            "subjects_per_hour": thresholds.subjects_per_hour,
        },
    )


def entry_out(e: LoggedEntry) -> AuditEntryOut:
    """An entry as the IG lead sees it: detail in full, subject id included."""
    return audit_entry_out(e, show_subject=True)
