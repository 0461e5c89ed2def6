"""Security headers on every response: successes, refusals, guard answers, 404, 500, docs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from broker.bootstrap import Runtime, build_runtime
from broker.clock import FixedClock
from broker.config import Settings
from broker.web.app import create_app
from broker.web.headers import API_POLICY, DOCS_POLICY
from tests.fuzz.conftest import Caller
from tests.helpers import AGREEMENT, idempotent, school_record

BATCHES = f"/v1/agreements/{AGREEMENT}/datasets/school-attendance/batches"

EXPECTED = {
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-resource-policy": "same-origin",
}

Request = Callable[[Caller], httpx.Response]

CASES: dict[str, tuple[Request, int]] = {
    "health": (lambda c: c.client.get("/health"), 200),
    "openapi": (lambda c: c.client.get("/openapi.json"), 200),
    "stored batch": (
        lambda c: c.client.post(
            BATCHES,
            json={"records": [school_record("SCH-1")]},
            headers=idempotent(c.keys["school"]),
        ),
        201,
    ),
    "no credentials": (lambda c: c.client.get("/v1/audit/head"), 401),
    "unknown route": (lambda c: c.client.get("/nowhere"), 404),
    "wrong method": (lambda c: c.client.delete("/health"), 405),
    "not json": (
        lambda c: c.client.post(
            BATCHES, content=b"a,b", headers={**c.keys["school"], "Content-Type": "text/csv"}
        ),
        415,
    ),
    "hostile json": (
        lambda c: c.client.post(
            BATCHES,
            content=b'{"records": [NaN]}',
            headers={**c.keys["school"], "Content-Type": "application/json"},
        ),
        400,
    ),
    "schema refusal": (
        lambda c: c.client.post(BATCHES, json={"rows": []}, headers=c.keys["school"]),
        422,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_response_carries_the_headers(caller: Caller, case: str) -> None:
    request, status = CASES[case]
    response = request(caller)
    assert response.status_code == status, response.text
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, name
    assert response.headers["content-security-policy"] == API_POLICY
    assert "strict-transport-security" not in response.headers
    # Added once, not repeated by a second pass.
    assert len(response.headers.get_list("x-frame-options")) == 1


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_get_their_own_policy(caller: Caller, path: str) -> None:
    response = caller.client.get(path)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == DOCS_POLICY
    assert "frame-ancestors 'none'" in DOCS_POLICY
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


def test_an_unexpected_error_carries_the_headers(
    caller: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom() -> None:
        raise RuntimeError("secret detail")

    # Starlette answers an unexpected error outside every middleware.
    monkeypatch.setattr(caller.runtime.broker, "audit_head", boom)
    response = caller.client.get("/v1/audit/head", headers=caller.keys["school"])
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "secret detail" not in response.text
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, name
    assert response.headers["content-security-policy"] == API_POLICY


@pytest.fixture
def tls_client(settings: Settings, clock: FixedClock) -> Iterator[TestClient]:
    built: Runtime = build_runtime(
        settings.model_copy(update={"served_over_tls": True}), clock=clock
    )
    try:
        with TestClient(create_app(built)) as client:
            yield client
    finally:
        built.engine.dispose()


def test_hsts_only_when_served_over_tls(tls_client: TestClient) -> None:
    for response in (tls_client.get("/health"), tls_client.get("/nowhere")):
        assert response.headers["strict-transport-security"] == "max-age=31536000"
        assert response.headers["x-content-type-options"] == "nosniff"
