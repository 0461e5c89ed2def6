"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from broker.web.deps import BrokerDep, SchemaDep
from broker.web.schemas import HealthOut, ReadyOut

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut)
def health() -> HealthOut:
    """The process is up."""
    return HealthOut(status="ok")


@router.get("/ready", response_model=ReadyOut)
def ready(broker: BrokerDep, schema: SchemaDep) -> ReadyOut:
    """The database answers at this code's schema and agreements are loaded; else 503.

    503 with ``migrations_pending`` while the database is behind the code's
    migrations, and with ``storage_failed`` while it does not answer.
    """
    schema.require_current()
    size, _ = broker.audit_head()
    return ReadyOut(status="ready", agreements=len(broker.registry), audit_entries=size)
