"""The one table from error code to HTTP status, and the one shape of every error body.

Body: ``{"error": {"code": str, "message": str, "location": {...}, "problems": [...]}}``.
``location`` may hold ``record`` (position in the batch), ``field``, ``line``, ``column``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker import errors
from broker.web.headers import security_headers

log = logging.getLogger("broker.web")
# What a field name in an error location may look like; anything else is shown as "?".
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")

# By class first (most specific wins), so every Refused code is a 403 and
# every ValidationError a 422, unless its code is listed in _STATUS_BY_CODE.
_STATUS_BY_CLASS: tuple[tuple[type[errors.AccordError], int], ...] = (
    (errors.AuthenticationFailed, 401),
    (errors.Refused, 403),
    (errors.RateLimited, 429),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.ValidationError, 422),
    (errors.AgreementError, 422),
    (errors.StorageError, 503),
    (errors.AccordError, 500),
)
_STATUS_BY_CODE = {
    "batch_too_large": 413,
    "idempotency_key_missing": 400,
    "body_too_large": 413,
    "malformed_json": 400,
    "unsupported_media_type": 415,
    # broker.web.json_guard: a body that is not strict JSON is a 400; one over a limit a 422.
    "json_encoding_invalid": 400,
    "json_constant_invalid": 400,
    "json_duplicate_key": 400,
}


def status_for(error: errors.AccordError) -> int:
    """The HTTP status for an Accord error."""
    if error.code in _STATUS_BY_CODE:
        return _STATUS_BY_CODE[error.code]
    return next(status for cls, status in _STATUS_BY_CLASS if isinstance(error, cls))


def error_body(
    code: str,
    message: str,
    location: dict[str, Any] | None = None,
    problems: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The fixed error shape."""
    return {
        "error": {
            "code": code,
            "message": message,
            "location": location or {},
            "problems": problems or [],
        }
    }


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    """A JSON error response in the fixed shape."""
    return JSONResponse(status_code=status, content=error_body(code, message, **extra))


def _location_of(loc: tuple[Any, ...]) -> dict[str, Any]:
    parts = [p for p in loc if p != "body"]
    path = ""
    for part in parts:
        # A key the caller invented (an extra field) is theirs, not ours: never echo it.
        name = str(part) if _FIELD_NAME.match(str(part)) else "?"
        path += f"[{part}]" if isinstance(part, int) else (f".{name}" if path else name)
    return {"field": path} if path else {}


def install_error_handlers(app: FastAPI) -> None:
    """Translate every error to the fixed shape; an unexpected one becomes an opaque 500."""

    @app.exception_handler(errors.AccordError)
    async def _accord(_request: Request, exc: errors.AccordError) -> JSONResponse:
        response = error_response(
            status_for(exc),
            exc.code,
            exc.message,
            location=exc.location.as_dict(),
            problems=[p.as_dict() for p in exc.problems],
        )
        if isinstance(exc, errors.RateLimited):
            # RFC 9110: whole seconds; the bucket guarantees a retry then succeeds.
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = exc.errors()
        if any(d.get("type") == "json_invalid" for d in details):
            return error_response(400, "malformed_json", "request body is not valid JSON")
        # Messages only: pydantic's "input" would echo what the caller sent.
        problems = [
            {
                "code": "request_invalid",
                "message": str(d.get("msg", "invalid")),
                "location": _location_of(tuple(d.get("loc", ()))),
            }
            for d in details[:50]
        ]
        first = problems[0] if problems else {"message": "invalid request", "location": {}}
        return error_response(
            422,
            "request_invalid",
            f"request does not match the API schema: {first['message']}",
            location=first["location"],
            problems=problems,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # The exception text may hold data; log only its type.
        log.error("unexpected error: %s", type(exc).__name__)
        response = error_response(
            500, "internal_error", "the broker failed; the request was not applied"
        )
        # Starlette answers this outside every middleware, so the headers are added here.
        response.headers.update(dict(security_headers(_request.url.path, tls=False)))
        return response
