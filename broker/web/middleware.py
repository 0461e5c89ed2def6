"""ASGI middleware guarding the API before any route runs: body size, content type, request id."""

from __future__ import annotations

import contextlib
import json
import re
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.web.errors import error_body

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
_BODY_METHODS = {"POST", "PUT", "PATCH"}


async def _send_error(send: Send, status: int, code: str, message: str, request_id: str) -> None:
    body = json.dumps(error_body(code, message)).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class GuardMiddleware:
    """Assigns a request id, refuses non-JSON bodies (415) and bodies over the limit (413)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        offered = headers.get("x-request-id", "")
        request_id = offered if _REQUEST_ID.match(offered) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id

        # A bodiless command (activate, resume) declares no body and needs no content type.
        bodiless = headers.get("content-length", "0") == "0" and "content-type" not in headers
        bodiless = bodiless and "transfer-encoding" not in headers
        if scope["method"] in _BODY_METHODS and not bodiless:
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            if media != "application/json":
                await _send_error(
                    send,
                    415,
                    "unsupported_media_type",
                    "send the request body as application/json",
                    request_id,
                )
                return
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                await _send_error(send, 413, "body_too_large", self._too_large(), request_id)
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

        async def tagged_send(message: Message) -> None:
            # Once the body overflowed, whatever the app answers is replaced by one 413.
            if too_large:
                return
            if message["type"] == "http.response.start":
                extra = (b"x-request-id", request_id.encode())
                message["headers"] = [*message.get("headers", []), extra]
            await send(message)

        with contextlib.suppress(_TooLarge):
            await self.app(scope, limited_receive, tagged_send)
        if too_large:
            await _send_error(send, 413, "body_too_large", self._too_large(), request_id)

    def _too_large(self) -> str:
        return f"request body is larger than {self.max_body_bytes} bytes; send smaller batches"
