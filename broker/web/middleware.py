"""ASGI middleware run before any route: request id, telemetry and access log, then the guard.

``ObserveMiddleware`` is outermost: it assigns the request id (the caller's
``X-Request-Id`` if it is a safe token), returns it on every response, opens the
request's server span and writes one access line and one duration measurement
when the response is done. ``GuardMiddleware`` then refuses non-JSON bodies
(415), bodies over the limit (413) and hostile JSON (``broker.web.json_guard``).
``SecurityHeadersMiddleware`` (outside both) adds ``broker.web.headers`` to
every response.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
from dataclasses import replace
from time import perf_counter
from typing import Any

import anyio.to_thread
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.errors import ValidationError
from broker.log_format import bind_request_id, reset_request_id
from broker.telemetry import Telemetry
from broker.web.errors import error_body, status_for
from broker.web.headers import security_headers
from broker.web.json_guard import JsonLimits, check_json_body

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
_BODY_METHODS = {"POST", "PUT", "PATCH"}
# Routes whose bodies carry long text: agreement YAML and witness cosignature notes.
_TEXT_ROUTES = re.compile(
    r"^/v1/(agreements/(validate|drafts)|audit/checkpoints/[^/]+/cosignatures)$"
)
# Bodies larger than this are checked in a worker thread, off the event loop.
_CHECK_INLINE_BYTES = 64 * 1024
# Only the W3C trace context is taken from callers; baggage could carry anything.
_PROPAGATOR = TraceContextTextMapPropagator()
access_log = logging.getLogger("broker.access")


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _route_template(scope: Scope) -> str | None:
    """The matched route's template (Starlette leaves the route in the scope), never the path."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else None


async def _send_error(
    send: Send, status: int, code: str, message: str, location: dict[str, Any] | None = None
) -> None:
    body = json.dumps(error_body(code, message, location)).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ObserveMiddleware:
    """Request id, server span, request metrics and the access line for every HTTP request."""

    def __init__(self, app: ASGIApp, *, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        offered = headers.get("x-request-id", "")
        request_id = offered if _REQUEST_ID.match(offered) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        parent: Context = _PROPAGATOR.extract(headers)
        method: str = scope["method"]
        status = 500  # what the server answers if the app fails before it starts a response
        error_type: str | None = None
        started = perf_counter()

        async def tagged_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                extra = (b"x-request-id", request_id.encode())
                message["headers"] = [*message.get("headers", []), extra]
            await send(message)

        token = bind_request_id(request_id)
        try:
            with self.telemetry.server_span(method, parent) as span:
                try:
                    await self.app(scope, receive, tagged_send)
                except BaseException as exc:
                    error_type = type(exc).__qualname__
                    raise
                finally:
                    seconds = perf_counter() - started
                    route = _route_template(scope)
                    self.telemetry.finish_request(
                        span,
                        method=method,
                        route=route,
                        status=status,
                        seconds=seconds,
                        error_type=error_type,
                    )
                    fields: dict[str, Any] = {
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                    }
                    access_log.info("%s %s %s", method, route or "-", status, extra=fields)
        finally:
            reset_request_id(token)


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it passes ``limit`` bytes; _Disconnected if the client went."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class GuardMiddleware:
    """Refuses non-JSON bodies (415), bodies over the limit (413) and hostile JSON (400/422).

    A JSON body is read whole (it is bounded by the limit) and checked by
    ``broker.web.json_guard`` before any route runs; the app then receives the
    same bytes. Large bodies are checked off the event loop.
    """

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, json_limits: JsonLimits | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.json_limits = json_limits or JsonLimits()
        # Long text fields (agreement YAML, witness notes) are bounded by the body limit.
        self.text_limits = replace(self.json_limits, max_string_chars=max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)

        # A bodiless command (activate, resume) declares no body and needs no content type.
        bodiless = headers.get("content-length", "0") == "0" and "content-type" not in headers
        bodiless = bodiless and "transfer-encoding" not in headers
        # OAuth's token endpoint takes a form (RFC 6749 section 4.4.2): only its size is checked.
        form = (
            scope["path"] == "/oauth/token"
            and headers.get("content-type", "").split(";")[0].strip().lower()
            == "application/x-www-form-urlencoded"
        )
        if scope["method"] in _BODY_METHODS and not bodiless and not form:
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            if media != "application/json":
                await _send_error(
                    send, 415, "unsupported_media_type", "send the request body as application/json"
                )
                return
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                await _send_error(send, 413, "body_too_large", self._too_large())
                return
            await self._checked(scope, receive, send)
            return

        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # Once the body overflowed, whatever the app answers is replaced by one 413.
            if too_large:
                return
            await send(message)

        with contextlib.suppress(_TooLarge):
            await self.app(scope, limited_receive, guarded_send)
        if too_large:
            await _send_error(send, 413, "body_too_large", self._too_large())

    async def _checked(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await _read_body(receive, self.max_body_bytes)
        except _Disconnected:
            return  # nobody is left to answer
        if body is None:
            await _send_error(send, 413, "body_too_large", self._too_large())
            return
        limits = self.text_limits if _TEXT_ROUTES.match(scope["path"]) else self.json_limits
        try:
            if len(body) > _CHECK_INLINE_BYTES:
                await anyio.to_thread.run_sync(check_json_body, body, limits)
            else:
                check_json_body(body, limits)
        except ValidationError as refused:
            status = status_for(refused)
            location = refused.location.as_dict()
            await _send_error(send, status, refused.code, refused.message, location)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"request body is larger than {self.max_body_bytes} bytes; send smaller batches"


class SecurityHeadersMiddleware:
    """Adds the security headers (``broker.web.headers``) to every response the app sends."""

    def __init__(self, app: ASGIApp, *, tls: bool = False) -> None:
        self.app = app
        self.tls = tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in security_headers(scope["path"], tls=self.tls)
        ]

        async def secured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                added = [(n, v) for n, v in extra if n not in present]
                message["headers"] = [*message.get("headers", []), *added]
            await send(message)

        await self.app(scope, receive, secured_send)
