"""The rate-limit dependency a limited route names once: ``dependencies=[rate_limited("lookup")]``.

It runs after ``broker.web.authorise`` admitted the caller (it reads the agency
that admitted), before the route's own work, so a refused request costs one
bucket check and nothing else; a caller that is not a party never reaches it.
A refusal is 429 ``rate_limited`` with ``Retry-After`` (see ``broker.web.errors``).
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request

from broker.service_limits import LIMIT_KINDS
from broker.web.authorise import AgencyDep
from broker.web.deps import BrokerDep, RequestIdDep


def rate_limited(kind: str) -> Any:
    """A route dependency counting each request of ``kind`` against the caller's bucket.

    The bucket is the calling agency's, for the agreement named in the path.
    """
    if kind not in LIMIT_KINDS:
        raise ValueError(f"unknown limit kind {kind!r}")

    def limit(
        request: Request, agency: AgencyDep, broker: BrokerDep, request_id: RequestIdDep
    ) -> None:
        agreement_id = request.path_params.get("agreement_id")
        broker.admit(
            agency=agency,
            agreement_id=str(agreement_id or ""),
            kind=kind,
            request_id=request_id,
        )

    return Depends(limit)
