"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from broker.web.deps import BrokerDep
from broker.web.schemas import HealthOut, ReadyOut

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut)
def health() -> HealthOut:
    """The process is up."""
    return HealthOut(status="ok")


@router.get("/ready", response_model=ReadyOut)
def ready(broker: BrokerDep) -> ReadyOut:
    """The database answers and agreements are loaded; a failure answers 503."""
    size, _ = broker.audit_head()
    return ReadyOut(status="ready", agreements=len(broker.registry), audit_entries=size)
