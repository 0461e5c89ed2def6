"""The HTTP client that posts notifications to recipients' webhooks (httpx).

Outside the domain core: ``broker.service_notify`` sees only the
``WebhookSender`` protocol. Redirects are never followed (the URL was checked
when the recipient subscribed, and a redirect could send the body elsewhere),
certificates are always verified, and the response body is never read.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import httpx

import broker
from broker.notify_ports import PostOutcome

USER_AGENT = f"accord-broker/{broker.__version__}"


class HttpxWebhookSender:
    """Posts with one pooled client; every failure becomes a ``PostOutcome``, never an exception."""

    def __init__(
        self, *, timeout_seconds: float = 10.0, client: httpx.Client | None = None
    ) -> None:
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(timeout_seconds), follow_redirects=False, verify=True
        )

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> PostOutcome:
        """POST ``body`` as JSON; the status code, or the failure's kind (its type name)."""
        sent = {"content-type": "application/json", "user-agent": USER_AGENT, **headers}
        started = time.monotonic()
        try:
            with self._client.stream("POST", url, content=body, headers=sent) as response:
                status = response.status_code
        except httpx.TimeoutException:
            return PostOutcome(None, "timeout", _since(started))
        except httpx.HTTPError as exc:
            # The type, never the message: it can hold the URL.
            return PostOutcome(None, type(exc).__name__, _since(started))
        return PostOutcome(status, None, _since(started))

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()


def _since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
