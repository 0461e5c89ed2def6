"""Aggregates: counts by area, age band, sex, week or month, small numbers withheld."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import Response

from broker.aggregate import AggregateQuery, Condition, Dimension
from broker.csv_safe import to_csv_text
from broker.service_aggregate import AggregateResult
from broker.web.authorise import AgencyDep
from broker.web.deps import BrokerDep, RequestIdDep
from broker.web.rate_limits import rate_limited
from broker.web.schemas import (
    AggregateCellOut,
    AggregateDimensionOut,
    AggregateIn,
    AggregateOut,
    AgreementRef,
    ErrorOut,
)

router = APIRouter(prefix="/v1", tags=["aggregates"])

_CSV = "text/csv"
_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (400, 401, 403, 404, 413, 415, 422, 503)
}
_RESPONSES[200] = {"content": {_CSV: {"schema": {"type": "string"}}}}
_RESPONSES[429] = {"model": ErrorOut}  # rate_limited, with Retry-After


def _query(body: AggregateIn) -> AggregateQuery:
    return AggregateQuery(
        dataset=body.measure.dataset,
        count=body.measure.count,
        dimensions=tuple(Dimension(d.by, d.field) for d in body.dimensions),
        where=tuple(Condition(c.field, c.equals) for c in body.measure.where),
    )


def _csv(result: AggregateResult) -> Response:
    lines = result.table.as_csv_rows()
    # The corner names the dimensions, rows first; the cells hold counts or the marker.
    lines[0][0] = " by ".join(d.by for d in result.query.dimensions)
    # Row and column labels are released values from records: never let one execute.
    return Response(
        content=to_csv_text(lines),
        media_type=f"{_CSV}; charset=utf-8",
        headers={"X-Audit-Entry": str(result.audit_entry)},
    )


def _json(result: AggregateResult) -> AggregateOut:
    table = result.table
    return AggregateOut(
        agreement=AgreementRef(id=result.agreement_id, version=result.agreement_version),
        purpose=result.purpose,
        count=result.query.count,
        dataset=result.query.dataset,
        dimensions=[AggregateDimensionOut(by=d.by, field=d.field) for d in result.query.dimensions],
        rows=list(table.rows),
        columns=list(table.columns),
        cells=[AggregateCellOut.model_validate(record) for record in table.as_records()],
        minimum_cell_size=result.minimum_cell_size,
        rounding_base=result.rounding_base,
        redacted_at_or_below=result.redact_at_or_below,
        audit_entry=result.audit_entry,
        warnings=list(result.warnings),
    )


@router.post(
    "/agreements/{agreement_id}/aggregates",
    response_model=AggregateOut,
    responses=_RESPONSES,
    dependencies=[rate_limited("aggregate")],
)
def post_aggregate(
    agreement_id: str,
    body: AggregateIn,
    agency: AgencyDep,
    broker: BrokerDep,
    request_id: RequestIdDep,
    accept: Annotated[str | None, Header()] = None,
) -> AggregateOut | Response:
    """Count the agreement's records as asked; small counts and their complements withheld."""
    result = broker.aggregate(
        agency=agency,
        agreement_id=agreement_id,
        purpose=body.purpose,
        query=_query(body),
        request_id=request_id,
    )
    wants_csv = body.format == "csv" or (body.format is None and _CSV in (accept or ""))
    return _csv(result) if wants_csv else _json(result)
