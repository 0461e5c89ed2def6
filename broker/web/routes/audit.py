"""The audit log over HTTP: an agency's own entries, signed checkpoints, proofs, cosignatures."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from audit.events import StoredCheckpoint
from broker.web.authorise import AgencyDep, PrincipalDep
from broker.web.deps import BrokerDep
from broker.web.schemas import (
    SQL_INT_MAX,
    AuditHeadOut,
    AuditPageOut,
    CheckpointOut,
    ConsistencyProofOut,
    CosignatureIn,
    CosignatureOut,
    ErrorOut,
    InclusionProofOut,
    LogKeyOut,
    PathInt,
    audit_entry_out,
)

router = APIRouter(prefix="/v1/audit", tags=["audit"])

_ERRORS = {status: {"model": ErrorOut} for status in (400, 401, 403, 404, 409, 413, 415, 422, 503)}


@router.get("/entries", response_model=AuditPageOut, responses=_ERRORS)  # type: ignore[arg-type]
def audit_entries(
    principal: PrincipalDep,
    broker: BrokerDep,
    after: Annotated[
        int, Query(ge=0, le=SQL_INT_MAX, description="return entries after this position")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPageOut:
    """The caller's own audit entries (the administrator: everyone's), oldest first."""
    entries = broker.audit_page(actor=principal.agency, after=after, limit=limit)
    return AuditPageOut(
        entries=[audit_entry_out(e, show_subject=False) for e in entries],
        next_after=entries[-1].seq if len(entries) == limit else None,
    )


@router.get("/head", response_model=AuditHeadOut, responses=_ERRORS)  # type: ignore[arg-type]
def audit_head(_principal: PrincipalDep, broker: BrokerDep) -> AuditHeadOut:
    """How many entries the log holds and its Merkle root (unsigned; see /checkpoint)."""
    size, root_hash = broker.audit_head()
    return AuditHeadOut(size=size, root_hash=root_hash)


@router.get("/log-key", response_model=LogKeyOut)
def log_key(broker: BrokerDep) -> LogKeyOut:
    """The log's origin and the Ed25519 key its checkpoints are signed with (public)."""
    return LogKeyOut(origin=broker.audit.origin, public_key=broker.audit.public_key_text())


@router.get("/checkpoint", response_model=CheckpointOut, responses=_ERRORS)  # type: ignore[arg-type]
def latest_checkpoint(_principal: PrincipalDep, broker: BrokerDep) -> CheckpointOut:
    """The newest signed checkpoint, with its witnesses' cosignatures."""
    return _checkpoint_out(broker.audit.latest_checkpoint())


@router.get("/checkpoints/{size}", response_model=CheckpointOut, responses=_ERRORS)  # type: ignore[arg-type]
def checkpoint_at(size: PathInt, _principal: PrincipalDep, broker: BrokerDep) -> CheckpointOut:
    """The checkpoint signed at exactly ``size`` entries."""
    return _checkpoint_out(broker.audit.checkpoint(size))


@router.post(
    "/checkpoints/{size}/cosignatures",
    response_model=CosignatureOut,
    status_code=201,
    responses=_ERRORS,  # type: ignore[arg-type]
)
def cosign(
    size: PathInt, body: CosignatureIn, agency: AgencyDep, broker: BrokerDep
) -> CosignatureOut:
    """A witness returns the checkpoint with its signature added; the broker keeps and serves it."""
    added = broker.audit.add_cosignature(size, body.note, actor=agency)
    return CosignatureOut(size=size, added=added)


@router.get("/proofs/inclusion", response_model=InclusionProofOut, responses=_ERRORS)  # type: ignore[arg-type]
def inclusion(
    principal: PrincipalDep,
    broker: BrokerDep,
    entry: Annotated[
        int, Query(ge=1, le=SQL_INT_MAX, description="the audit entry a response named")
    ],
    size: Annotated[
        int | None, Query(ge=1, le=SQL_INT_MAX, description="a checkpoint's size")
    ] = None,
) -> InclusionProofOut:
    """Proof that one of your entries is in the log, against a signed checkpoint (a receipt)."""
    proof = broker.audit.inclusion_proof(entry, size=size, actor=principal.agency)
    return InclusionProofOut(
        entry=proof.entry,
        leaf_index=proof.entry - 1,
        size=proof.size,
        leaf_hash=proof.leaf_hash,
        path=list(proof.path),
        checkpoint=_checkpoint_out(proof.checkpoint),
    )


@router.get("/proofs/consistency", response_model=ConsistencyProofOut, responses=_ERRORS)  # type: ignore[arg-type]
def consistency(
    _principal: PrincipalDep,
    broker: BrokerDep,
    old: Annotated[int, Query(ge=1, le=SQL_INT_MAX)],
    new: Annotated[int, Query(ge=1, le=SQL_INT_MAX)],
) -> ConsistencyProofOut:
    """Proof that the log at ``old`` entries is a prefix of the log at ``new`` (for witnesses)."""
    proof = broker.audit.consistency_proof(old, new)
    return ConsistencyProofOut(
        old_size=proof.old_size, new_size=proof.new_size, path=list(proof.path)
    )


def _checkpoint_out(stored: StoredCheckpoint) -> CheckpointOut:
    return CheckpointOut(
        size=stored.size,
        root_hash=stored.root_hash,
        created_at=stored.created_at,
        note=stored.cosigned_note(),
        witnesses=[name for name, _ in stored.cosignatures],
    )
