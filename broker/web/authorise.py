"""The one place the permission matrix is enforced: a dependency every route of the app runs.

``create_app`` installs ``authorise`` app-wide, so it runs before each route's
own dependencies and code. It reads the matched route's name, asks
``broker.permissions.allowed`` and raises the project's errors: 401
``unauthenticated``, 403 ``role_not_allowed``, 404 ``not_a_party`` (or the
refusal the matrix names). An operation missing from the matrix is refused.

Public operations are let through without reading any credentials. For every
other one the principal comes from ``broker.web.deps.current_principal`` (the
access token), once per request; routes read it with ``PrincipalDep`` or, when
only an agency may call, ``AgencyDep``, both from this module.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from broker.errors import AccordError, AuthenticationFailed, NotFound, Refused
from broker.permissions import (
    MATRIX,
    CheckedBy,
    Refusal,
    allowed,
    parties_of,
)
from broker.principal import Principal
from broker.service import Broker
from broker.web.deps import current_principal, get_broker

# Declared on the routes that need a token, so the OpenAPI schema says which do;
# the header itself is read by ``authorise`` (public routes must not declare it).
_bearer = HTTPBearer(
    auto_error=False,
    description=(
        "An access token: agency systems get one from POST /oauth/token (client "
        "credentials with a signed assertion), people from POST /v1/sessions"
    ),
)

_STATE_KEY = "principal"


def _credentials(request: Request) -> HTTPAuthorizationCredentials | None:
    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    if scheme.lower() != "bearer" or not token:
        return None
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=token)


def _error(refusal: Refusal) -> AccordError:
    if refusal.status == 401:
        return AuthenticationFailed(refusal.message, code=refusal.code)
    if refusal.status == 404:
        return NotFound(refusal.message, code=refusal.code)
    return Refused(refusal.message, code=refusal.code)


def _parties(broker: Broker, request: Request) -> dict[str, frozenset[str]]:
    agreement_id = request.path_params.get("agreement_id")
    if not isinstance(agreement_id, str):
        return {}
    registry = broker.registry
    if agreement_id not in registry.ids():
        # Unknown reads exactly as "not a party": existence is not revealed.
        return {}
    return parties_of(registry.versions(agreement_id))


def authorise(request: Request, broker: Annotated[Broker, Depends(get_broker)]) -> None:
    """Allow the call or raise its refusal, as ``broker.permissions.MATRIX`` says."""
    route = request.scope.get("route")
    operation = str(getattr(route, "name", ""))
    entry = MATRIX.get(operation)
    principal: Principal | None = None
    if entry is not None and not entry.public:
        principal = current_principal(request, broker, _credentials(request))
    parties = None
    if (
        entry is not None
        and principal is not None
        and entry.checked_by is CheckedBy.AUTHORISE
        and entry.needs_agreement()
    ):
        parties = _parties(broker, request)
    decision = allowed(operation, principal, parties)
    if isinstance(decision, Refusal):
        raise _error(decision)
    if principal is not None:
        setattr(request.state, _STATE_KEY, principal)


# Async: no I/O here, so FastAPI runs it on the event loop instead of a worker thread.
async def authorised_principal(
    request: Request,
    _token: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The principal ``authorise`` admitted for this request.

    Fails closed (401) if ``authorise`` did not run, e.g. on an app built
    without it.
    """
    principal = getattr(request.state, _STATE_KEY, None)
    if not isinstance(principal, Principal):
        raise AuthenticationFailed("this request was not authorised; send an access token")
    return principal


async def authorised_agency(principal: Annotated[Principal, Depends(authorised_principal)]) -> str:
    """The agency of the admitted principal, for routes only agency roles may call.

    The matrix admits only agency roles to such routes; an administrator here
    means the matrix and the route disagree, so it is refused.
    """
    if principal.agency is None:
        raise Refused("this operation acts for an agency", code="role_not_allowed")
    return principal.agency


PrincipalDep = Annotated[Principal, Depends(authorised_principal)]
AgencyDep = Annotated[str, Depends(authorised_agency)]
