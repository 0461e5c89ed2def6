"""Where callers get access tokens: the OAuth token endpoint (agency systems) and sign-in (people).

``POST /oauth/token`` is RFC 6749 §4.4 (client credentials) with RFC 7523 §2.2
client authentication: a form with ``grant_type=client_credentials``,
``client_assertion_type`` (jwt-bearer) and ``client_assertion``. Its errors
carry OAuth's ``error`` member, which OAuth libraries read, beside the
project's ``code``, ``message`` and ``location`` (flat, since OAuth owns
``error`` here).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from broker.access_tokens import IssuedToken
from broker.client_auth import ASSERTION_TYPE, GRANT_TYPE, ClientAuthFailed
from broker.errors import AuthenticationFailed
from broker.web.deps import BrokerDep, client_certificate
from broker.web.errors import error_response, status_for
from broker.web.schemas import ErrorOut

router = APIRouter(tags=["identity"])

TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path
_FORM = "application/x-www-form-urlencoded"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_FIELDS = ("grant_type", "client_assertion_type", "client_assertion", "scope", "client_id")
_MAX_ASSERTION_CHARS = 8192


class TokenOut(BaseModel):
    """An access token (RFC 6749 §5.1)."""

    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - RFC 6750 token type
    expires_in: int


class OAuthErrorOut(BaseModel):
    """An OAuth error (RFC 6749 §5.2) with the project's code and message beside it."""

    error: str
    error_description: str
    code: str
    message: str
    location: dict[str, Any] = Field(default_factory=dict)


class SessionIn(BaseModel):
    """A person's user name and password."""

    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, Field(min_length=1, max_length=256)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


def _oauth_error(status: int, error: str, code: str, message: str) -> JSONResponse:
    body = {
        "error": error,
        "error_description": message,
        "code": code,
        "message": message,
        "location": {},
    }
    return JSONResponse(status_code=status, content=body, headers=_NO_STORE)


def _token(issued: IssuedToken) -> JSONResponse:
    body = TokenOut(access_token=issued.access_token, expires_in=issued.expires_in)
    return JSONResponse(content=body.model_dump(), headers=_NO_STORE)


def _form(body: bytes) -> dict[str, str] | JSONResponse:
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        return _oauth_error(400, "invalid_request", "form_invalid", "the form could not be read")
    # RFC 6749 §3.2: a parameter sent twice makes the request invalid.
    if any(len(values) != 1 for values in parsed.values()):
        return _oauth_error(
            400, "invalid_request", "form_invalid", "each form field may be sent only once"
        )
    return {name: values[0] for name, values in parsed.items() if name in _FIELDS}


@router.post(
    TOKEN_PATH,
    response_model=TokenOut,
    responses={400: {"model": OAuthErrorOut}, 401: {"model": OAuthErrorOut}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                _FORM: {
                    "schema": {
                        "type": "object",
                        "required": ["grant_type", "client_assertion_type", "client_assertion"],
                        "properties": {
                            "grant_type": {"type": "string", "enum": [GRANT_TYPE]},
                            "client_assertion_type": {"type": "string", "enum": [ASSERTION_TYPE]},
                            "client_assertion": {"type": "string", "maxLength": 8192},
                        },
                    }
                }
            },
        }
    },
)
async def token(request: Request, broker: BrokerDep) -> JSONResponse:
    """An access token for an agency system that signed a client assertion with its key."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != _FORM:
        return _oauth_error(400, "invalid_request", "form_required", f"send the request as {_FORM}")
    fields = _form(await request.body())
    assertion = fields if isinstance(fields, JSONResponse) else _assertion(fields)
    if isinstance(assertion, JSONResponse):
        return assertion
    audiences = {str(request.url_for("token")), broker.identity.config.policy.issuer}
    try:
        issued = await asyncio.to_thread(
            broker.identity.issue_client_token,
            assertion,
            audiences=audiences,
            client_cert=client_certificate(request, broker),
        )
    except ClientAuthFailed as exc:
        return _oauth_error(401, exc.oauth_error, exc.code, exc.message)
    return _token(issued)


def _assertion(fields: dict[str, str]) -> str | JSONResponse:
    """The client assertion of a well-formed request, or the OAuth error to answer with."""
    grant = fields.get("grant_type")
    if not grant:
        return _oauth_error(400, "invalid_request", "grant_type_missing", "send grant_type")
    if grant != GRANT_TYPE:
        return _oauth_error(
            400,
            "unsupported_grant_type",
            "grant_type_unsupported",
            f"the only grant type is {GRANT_TYPE}",
        )
    assertion = fields.get("client_assertion", "")
    if fields.get("client_assertion_type") != ASSERTION_TYPE or not assertion:
        return _oauth_error(
            400,
            "invalid_request",
            "client_assertion_missing",
            f"authenticate with client_assertion_type {ASSERTION_TYPE} and a client_assertion",
        )
    if len(assertion) > _MAX_ASSERTION_CHARS:
        return _oauth_error(
            400, "invalid_request", "client_assertion_too_long", "the client assertion is too long"
        )
    return assertion


@router.post(
    "/v1/sessions",
    response_model=TokenOut,
    # 400, 413 and 415 come from the body guard; 422 from the schema of SessionIn.
    responses={
        401: {"description": "refused"},
        **{status: {"model": ErrorOut} for status in (400, 413, 415, 422)},
    },
)
def sign_in(body: SessionIn, broker: BrokerDep) -> JSONResponse:
    """An access token for a person, from a user name and password (one message for any refusal)."""
    return _token(broker.identity.sign_in(body.username, body.password))


def install_auth_errors(app: FastAPI) -> None:
    """Every 401 says how to authenticate (RFC 6750 §3: ``WWW-Authenticate: Bearer``)."""

    @app.exception_handler(AuthenticationFailed)
    async def _unauthenticated(_request: Request, exc: AuthenticationFailed) -> JSONResponse:
        response = error_response(
            status_for(exc), exc.code, exc.message, location=exc.location.as_dict()
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="accord"'
        return response
