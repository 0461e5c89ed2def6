"""Lookup: what do partners hold about this young person, as the agreement allows?"""

from __future__ import annotations

from fastapi import APIRouter

from broker.errors import Location, ValidationError
from broker.web.authorise import AgencyDep
from broker.web.deps import BrokerDep, RequestIdDep
from broker.web.rate_limits import rate_limited
from broker.web.schemas import (
    AgreementRef,
    ErrorOut,
    HoldingOut,
    LookupIn,
    LookupOut,
    ReleasedRecordOut,
)

router = APIRouter(prefix="/v1", tags=["lookup"])

_ERRORS = {status: {"model": ErrorOut} for status in (400, 401, 403, 404, 413, 415, 422, 503)}
_ERRORS[429] = {"model": ErrorOut}  # rate_limited, with Retry-After


def _field_pairs(names: list[str] | None) -> list[tuple[str, str]] | None:
    if names is None:
        return None
    pairs = []
    for index, name in enumerate(names):
        dataset, dot, field = name.partition(".")
        if not dot or not dataset or not field:
            raise ValidationError(
                "fields must be written 'dataset.field'",
                code="request_invalid",
                location=Location(field=f"fields[{index}]"),
            )
        pairs.append((dataset, field))
    return pairs


@router.post(
    "/agreements/{agreement_id}/lookups",
    response_model=LookupOut,
    responses=_ERRORS,  # type: ignore[arg-type]
    dependencies=[rate_limited("lookup")],
)
def post_lookup(
    agreement_id: str,
    body: LookupIn,
    agency: AgencyDep,
    broker: BrokerDep,
    request_id: RequestIdDep,
) -> LookupOut:
    """Tokenise the identifiers, find the linked subject, and release only permitted fields."""
    result = broker.lookup(
        agency=agency,
        agreement_id=agreement_id,
        purpose=body.purpose,
        identifiers={str(name): value for name, value in body.identifiers.items()},
        fields=_field_pairs(body.fields),
        request_id=request_id,
    )
    return LookupOut(
        matched=result.matched,
        pseudonym=result.pseudonym,
        agreement=AgreementRef(id=result.agreement_id, version=result.agreement_version),
        purpose=result.purpose,
        holdings=[
            HoldingOut(
                agency=h.agency,
                dataset=h.dataset,
                records=[
                    ReleasedRecordOut(reference=r.reference, fields=dict(r.fields))
                    for r in h.records
                ],
            )
            for h in result.holdings
        ],
        released=list(result.released),
        audit_entry=result.audit_entry,
        warnings=list(result.warnings),
    )
