"""Typed dependencies: routes get the service and the calling agency from here."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from broker.errors import AuthenticationFailed
from broker.service import Broker
from broker.startup import SchemaWatch

_bearer = HTTPBearer(auto_error=False, description="An agency API key issued by the operator")


def get_broker(request: Request) -> Broker:
    """The service object the app factory built."""
    broker: Broker = request.app.state.broker
    return broker


def get_schema(request: Request) -> SchemaWatch:
    """The check of the database schema against this code's migrations."""
    schema: SchemaWatch = request.app.state.schema
    return schema


def get_request_id(request: Request) -> str | None:
    """The request id assigned by the guard middleware."""
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


def current_agency(
    broker: Annotated[Broker, Depends(get_broker)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The agency the caller proved it is, from ``Authorization: Bearer <api key>``."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed("send an agency API key as 'Authorization: Bearer <key>'")
    return broker.authenticate(credentials.credentials)


def current_ig_lead(
    broker: Annotated[Broker, Depends(get_broker)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The agency whose IG lead is calling, from an ``ig_lead`` API key."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed("send an IG lead API key as 'Authorization: Bearer <key>'")
    return broker.authenticate(credentials.credentials, role="ig_lead")


BrokerDep = Annotated[Broker, Depends(get_broker)]
AgencyDep = Annotated[str, Depends(current_agency)]
IgLeadDep = Annotated[str, Depends(current_ig_lead)]
SchemaDep = Annotated[SchemaWatch, Depends(get_schema)]
RequestIdDep = Annotated[str | None, Depends(get_request_id)]
