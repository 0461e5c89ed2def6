"""A minimal audit read: an agency sees its own entries and the log's head."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from broker.web.deps import AgencyDep, BrokerDep
from broker.web.schemas import AuditEntryOut, AuditHeadOut, AuditPageOut, ErrorOut

router = APIRouter(prefix="/v1/audit", tags=["audit"])

_ERRORS = {status: {"model": ErrorOut} for status in (401, 422, 503)}


@router.get("/entries", response_model=AuditPageOut, responses=_ERRORS)  # type: ignore[arg-type]
def audit_entries(
    agency: AgencyDep,
    broker: BrokerDep,
    after: Annotated[int, Query(ge=0, description="return entries after this position")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPageOut:
    """The caller's own audit entries, oldest first, a page at a time."""
    entries = broker.audit_page(actor=agency, after=after, limit=limit)
    return AuditPageOut(
        entries=[
            AuditEntryOut(
                seq=e.seq,
                at=e.at,
                actor=e.event.actor,
                action=e.event.action,
                outcome=e.event.outcome,
                reason_code=e.event.reason_code,
                agreement_id=e.event.agreement_id,
                agreement_version=e.event.agreement_version,
                purpose=e.event.purpose,
                dataset_id=e.event.dataset_id,
                request_id=e.event.request_id,
                # The broker-internal subject id is the same for every recipient; showing it
                # would let two agencies join what their separate pseudonyms keep apart.
                detail={k: v for k, v in e.event.detail.items() if k != "subject"},
                entry_hash=e.entry_hash,
            )
            for e in entries
        ],
        next_after=entries[-1].seq if len(entries) == limit else None,
    )


@router.get("/head", response_model=AuditHeadOut, responses=_ERRORS)  # type: ignore[arg-type]
def audit_head(_agency: AgencyDep, broker: BrokerDep) -> AuditHeadOut:
    """How many entries the log holds and the hash of the last one."""
    size, head_hash = broker.audit_head()
    return AuditHeadOut(size=size, head_hash=head_hash)
