"""The webhook client: it never follows a redirect, never raises, and names failures by kind."""

from __future__ import annotations

import httpx

from broker.webhook_sender import HttpxWebhookSender


def _sender(handler: httpx.MockTransport) -> HttpxWebhookSender:
    return HttpxWebhookSender(client=httpx.Client(transport=handler, follow_redirects=False))


def test_a_post_carries_the_body_and_signed_headers() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    outcome = _sender(httpx.MockTransport(answer)).post(
        "https://hooks.example.org/in", b'{"id":"ntf_1"}', {"webhook-id": "ntf_1"}
    )
    assert (outcome.status_code, outcome.error, outcome.delivered) == (204, None, True)
    (request,) = seen
    assert request.method == "POST"
    assert request.content == b'{"id":"ntf_1"}'
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == "ntf_1"
    assert request.headers["user-agent"].startswith("accord-broker/")


def test_a_redirect_is_a_failed_push_not_followed() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(307, headers={"location": "https://elsewhere.example.org/"})

    outcome = _sender(httpx.MockTransport(answer)).post("https://hooks.example.org/in", b"{}", {})
    assert (outcome.status_code, outcome.delivered) == (307, False)
    assert seen == ["https://hooks.example.org/in"]


def test_failures_are_named_by_kind_without_their_message() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out reading https://hooks.example.org/in", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused by hooks.example.org", request=request)

    late = _sender(httpx.MockTransport(timeout)).post("https://hooks.example.org/in", b"{}", {})
    assert (late.status_code, late.error) == (None, "timeout")
    down = _sender(httpx.MockTransport(refused)).post("https://hooks.example.org/in", b"{}", {})
    assert (down.status_code, down.error, down.delivered) == (None, "ConnectError", False)
