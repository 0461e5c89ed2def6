"""The linkage engine's possible-match queue and quality (issue 5)."""

from __future__ import annotations

from fastapi import APIRouter

from broker.web.authorise import AgencyDep, PrincipalDep
from broker.web.deps import BrokerDep, RequestIdDep
from broker.web.schemas import (
    ErrorOut,
    LinkageQualityOut,
    PossibleMatchDecisionIn,
    PossibleMatchDecisionOut,
    PossibleMatchesOut,
    PossibleMatchOut,
)

router = APIRouter(prefix="/v1", tags=["linkage"])

_ERRORS = {status: {"model": ErrorOut} for status in (400, 401, 403, 404, 409, 422, 503)}


@router.get(
    "/agreements/{agreement_id}/possible-matches",
    response_model=PossibleMatchesOut,
    responses=_ERRORS,  # type: ignore[arg-type]
)
def get_possible_matches(
    agreement_id: str, agency: AgencyDep, broker: BrokerDep
) -> PossibleMatchesOut:
    """The open possible matches where the caller's agency holds one side (levels only)."""
    views = broker.possible_matches(agency=agency, agreement_id=agreement_id)
    return PossibleMatchesOut(
        agreement_id=agreement_id, pairs=[PossibleMatchOut.model_validate(v) for v in views]
    )


@router.post(
    "/agreements/{agreement_id}/possible-matches/{pair_id}",
    response_model=PossibleMatchDecisionOut,
    responses=_ERRORS,  # type: ignore[arg-type]
)
def post_possible_match_decision(
    agreement_id: str,
    pair_id: str,
    body: PossibleMatchDecisionIn,
    agency: AgencyDep,
    broker: BrokerDep,
    request_id: RequestIdDep,
) -> PossibleMatchDecisionOut:
    """Say whether the pair is the same person; linked only when both holders say same."""
    result = broker.resolve_possible_match(
        agency=agency,
        agreement_id=agreement_id,
        pair_id=pair_id,
        decision=body.decision,
        reason=body.reason,
        request_id=request_id,
    )
    return PossibleMatchDecisionOut.model_validate(result)


@router.get(
    "/agreements/{agreement_id}/linkage/quality",
    response_model=LinkageQualityOut,
    responses=_ERRORS,  # type: ignore[arg-type]
)
def get_linkage_quality(
    agreement_id: str, principal: PrincipalDep, broker: BrokerDep
) -> LinkageQualityOut:
    """Estimated precision and recall, pairs per band and the queue's length."""
    del principal  # the matrix admits IG leads and DPOs of a party only
    q = broker.linkage_quality(agreement_id=agreement_id)
    return LinkageQualityOut(
        agreement_id=q.agreement_id,
        records=q.records,
        estimated_precision=q.precision,
        estimated_recall=q.recall,
        pairs_per_band=dict(q.pairs_per_band),
        queue=dict(q.queue),
    )
