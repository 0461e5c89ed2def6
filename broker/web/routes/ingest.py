"""Batch ingest: a provider posts records of one dataset under one agreement."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response

from broker.idempotency import HEADER, REPLAYED_HEADER, scope_for
from broker.ingest import AtSource
from broker.web.authorise import AgencyDep
from broker.web.deps import BrokerDep, RequestIdDep
from broker.web.rate_limits import rate_limited
from broker.web.schemas import BatchIn, BatchOut, ErrorOut, ProblemOut, RekeyOut

router = APIRouter(prefix="/v1", tags=["ingest"])

_ERRORS = {status: {"model": ErrorOut} for status in (400, 401, 403, 404, 409, 413, 415, 422, 503)}
_ERRORS[429] = {"model": ErrorOut}  # rate_limited, with Retry-After


@router.post(
    "/agreements/{agreement_id}/datasets/{dataset_id}/batches",
    status_code=201,
    response_model=BatchOut,
    responses=_ERRORS,  # type: ignore[arg-type]
    dependencies=[rate_limited("ingest")],
)
def post_batch(
    agreement_id: str,
    dataset_id: str,
    body: BatchIn,
    agency: AgencyDep,
    broker: BrokerDep,
    request_id: RequestIdDep,
    response: Response,
    # Required, but checked by the broker (400 idempotency_key_missing) rather than by
    # FastAPI, so that a missing key gets the error shape and code every client expects.
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description="Required. A unique value per batch (a UUID), the same when retrying it.",
        ),
    ] = None,
) -> BatchOut:
    """Store a batch all or nothing: any invalid record rejects the whole batch (422).

    A batch tokenised at source with a key other than the broker's current
    linkage key for the agreement is refused whole (409 ``key_version_mismatch``).

    Every batch carries an ``Idempotency-Key`` header (400 ``idempotency_key_missing``
    without one). Sent again with the same key and body, the batch is not stored
    again: the first result comes back with ``Idempotent-Replayed: true``. The same
    key with another body is refused (422 ``idempotency_key_reused``).
    """
    scope = scope_for(
        agency_id=agency,
        agreement_id=agreement_id,
        dataset_id=dataset_id,
        operation="batch",
        key=idempotency_key,
        body=body.model_dump(mode="json"),
    )
    tokenised = body.tokenised
    at_source = None if tokenised is None else AtSource(tokenised.key_check, tokenised.key_version)
    result = broker.ingest_batch(
        agency=agency,
        agreement_id=agreement_id,
        dataset_id=dataset_id,
        records=body.records,
        request_id=request_id,
        at_source=at_source,
        idempotency=scope,
    )
    if result.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return BatchOut(
        batch_id=result.batch_id,
        accepted=result.accepted,
        new_subjects=result.new_subjects,
        linked=result.linked,
        linked_by_rule=dict(result.linked_by_rule),
        data_quality=[ProblemOut(**p.as_dict()) for p in result.quality],
        audit_entries=list(result.audit_entries),
        warnings=list(result.warnings),
        tokenised_at_source=at_source is not None,
    )


@router.post(
    "/agreements/{agreement_id}/datasets/{dataset_id}/rekey",
    status_code=200,
    response_model=RekeyOut,
    responses=_ERRORS,  # type: ignore[arg-type]
    dependencies=[rate_limited("rekey")],
)
def post_rekey(
    agreement_id: str,
    dataset_id: str,
    body: BatchIn,
    agency: AgencyDep,
    broker: BrokerDep,
    request_id: RequestIdDep,
) -> RekeyOut:
    """During a linkage key rotation, add new-key tokens to records already stored.

    The body is a batch of the provider's stored records (same record ids),
    in clear or tokenised with the new linkage key file. All or nothing: an
    unknown record id, or identifiers that do not give the tokens stored for
    that record, reject the whole batch (422). With no rotation under way: 409.
    """
    tokenised = body.tokenised
    at_source = None if tokenised is None else AtSource(tokenised.key_check, tokenised.key_version)
    result = broker.rekey_batch(
        agency=agency,
        agreement_id=agreement_id,
        dataset_id=dataset_id,
        records=body.records,
        request_id=request_id,
        at_source=at_source,
    )
    return RekeyOut(
        records=result.records,
        tokens=result.tokens,
        key_version=result.key_version,
        audit_entry=result.audit_entry,
    )
