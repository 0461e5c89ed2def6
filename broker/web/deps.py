"""Typed dependencies: routes get the service, the calling principal and its agency from here."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from broker.errors import AuthenticationFailed
from broker.principal import Principal
from broker.service import Broker
from broker.startup import SchemaWatch

_bearer = HTTPBearer(
    auto_error=False,
    description=(
        "An access token: agency systems get one from POST /oauth/token (client "
        "credentials with a signed assertion), people from POST /v1/sessions"
    ),
)


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


def client_certificate(request: Request, broker: Broker) -> str | None:
    """The client certificate thumbprint a TLS-terminating proxy set, when one is configured."""
    header = broker.identity.config.cert_header
    return request.headers.get(header) if header else None


def current_principal(
    request: Request,
    broker: Annotated[Broker, Depends(get_broker)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Who is calling, from ``Authorization: Bearer <access token>``; 401 ``unauthenticated``.

    The token's client or account is checked on every request, so a disabled
    one is refused even while its token has not expired.
    """
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed(
            "send an access token as 'Authorization: Bearer <token>'; agency systems get one "
            "from POST /oauth/token, people from POST /v1/sessions"
        )
    return broker.authenticate(
        credentials.credentials, client_cert=client_certificate(request, broker)
    )


BrokerDep = Annotated[Broker, Depends(get_broker)]
SchemaDep = Annotated[SchemaWatch, Depends(get_schema)]
RequestIdDep = Annotated[str | None, Depends(get_request_id)]
