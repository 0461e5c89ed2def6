"""The JSON guard: each hostile body refused with its code and location; no 500, nothing stored."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from broker.errors import ValidationError
from broker.web.json_guard import JsonLimits, check_json_body
from broker.web.middleware import GuardMiddleware
from tests.auth_helpers import person_headers
from tests.fuzz.conftest import Caller
from tests.helpers import AGREEMENT, idempotent, school_record

BATCHES = f"/v1/agreements/{AGREEMENT}/datasets/school-attendance/batches"
LIMITS = JsonLimits(max_depth=32, max_string_chars=4096)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# (name, body, code, status, location)
HOSTILE: list[tuple[str, bytes, str, int, dict[str, Any]]] = [
    ("bom", b'\xef\xbb\xbf{"records": []}', "json_encoding_invalid", 400, {"line": 1, "column": 1}),
    (
        "invalid utf-8",
        b'{"records": [\n  "\xff"]}',
        "json_encoding_invalid",
        400,
        {"line": 2, "column": 4},
    ),
    ("utf-16", '{"records": []}'.encode("utf-16"), "json_encoding_invalid", 400, {}),
    ("truncated", b'{"records": [', "malformed_json", 400, {"line": 1, "column": 14}),
    ("nan", b'{"records": [{"a": NaN}]}', "json_constant_invalid", 400, {"field": "records[0].a"}),
    ("infinity", b'{"records": [Infinity]}', "json_constant_invalid", 400, {"field": "records[0]"}),
    ("-infinity", b'{"x": -Infinity}', "json_constant_invalid", 400, {"field": "x"}),
    ("duplicate", b'{"records": [], "records": []}', "json_duplicate_key", 400, {}),
    (
        "nested duplicate",
        b'{"records": [{"a": 1, "a": 2}]}',
        "json_duplicate_key",
        400,
        {"field": "records[0]"},
    ),
    ("too deep", b'{"records": ' + _nested(32) + b"}", "json_too_deep", 422, {}),
    ("far too deep", _nested(100_000), "json_too_deep", 422, {}),
    ("2**63", b'{"n": 9223372036854775808}', "json_number_out_of_range", 422, {"field": "n"}),
    ("-2**63-1", b'{"n": -9223372036854775809}', "json_number_out_of_range", 422, {"field": "n"}),
    ("5000 digits", b'{"n": ' + b"9" * 5000 + b"}", "json_number_out_of_range", 422, {}),
    ("1e999", b'{"n": [1e999]}', "json_number_out_of_range", 422, {"field": "n[0]"}),
    (
        "long string",
        json.dumps({"records": [{"given_name": "x" * 4097}]}).encode(),
        "json_string_too_long",
        422,
        {"field": "records[0].given_name"},
    ),
    ("long key", json.dumps({"k" * 4097: 1}).encode(), "json_string_too_long", 422, {}),
    ("nul", b'{"records": [{"a": "x\\u0000y"}]}', "json_string_invalid", 422, {}),
    ("lone surrogate", b'{"a": "\\ud800"}', "json_string_invalid", 422, {"field": "a"}),
    ("hostile key", b'{"<script>": "\\u0000"}', "json_string_invalid", 422, {"field": "?"}),
]


@pytest.mark.parametrize(
    ("name", "body", "code", "status", "location"), HOSTILE, ids=[h[0] for h in HOSTILE]
)
def test_guard_refuses(
    name: str, body: bytes, code: str, status: int, location: dict[str, Any]
) -> None:
    del name, status
    with pytest.raises(ValidationError) as raised:
        check_json_body(body, LIMITS)
    assert raised.value.code == code
    where = raised.value.location.as_dict()
    for key, value in location.items():
        assert where[key] == value


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b'{"records": []}',
        b'{"n": 9223372036854775807, "m": -9223372036854775808, "f": 1.5e300}',
        b'{"records": ' + _nested(31) + b"}",
        json.dumps({"s": "x" * 4096, "\u202eevil": "\u0410mira \u202e"}).encode(),
        b'{"a": "\\ud83d\\ude00", "b": null, "c": [true, false]}',
    ],
    ids=["empty", "plain", "int edges", "depth 32", "string at limit", "paired surrogates"],
)
def test_guard_accepts(body: bytes) -> None:
    check_json_body(body, LIMITS)


@pytest.mark.parametrize(
    ("name", "body", "code", "status", "location"), HOSTILE, ids=[h[0] for h in HOSTILE]
)
def test_guard_over_http(  # noqa: PLR0917 - one parameter per column of HOSTILE
    caller: Caller, name: str, body: bytes, code: str, status: int, location: dict[str, Any]
) -> None:
    del name, location
    before = caller.counts()
    response = caller.client.post(
        BATCHES, content=body, headers={**caller.keys["school"], "Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert set(error) == {"code", "message", "location", "problems"}
    assert "x" * 64 not in response.text
    assert caller.counts() == before


def test_long_text_routes_keep_their_own_limit(caller: Caller) -> None:
    """An agreement document is long YAML in one string: the guard lets the route judge it."""
    document = "# " + "x" * 10_000 + "\nid: nope\n"
    dpo = person_headers(caller.runtime.broker, "dpo", "school")
    response = caller.client.post(
        "/v1/agreements/validate", json={"document": document}, headers=dpo
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] != "json_string_too_long"


def test_a_valid_batch_still_stores(caller: Caller) -> None:
    before = caller.counts()
    response = caller.client.post(
        BATCHES,
        json={"records": [school_record("SCH-1")]},
        headers=idempotent(caller.keys["school"]),
    )
    assert response.status_code == 201, response.text
    assert caller.counts()["record"] == before["record"] + 1


def test_guard_cost_on_a_thousand_records() -> None:
    """The guard's parse and walk of a 1,000-record batch; printed, and bounded loosely."""
    body = json.dumps({"records": [school_record(f"SCH-{i}") for i in range(1000)]}).encode()
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        check_json_body(body, LIMITS)
        best = min(best, time.perf_counter() - started)
    plain = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        json.loads(body)
        plain = min(plain, time.perf_counter() - started)
    print(
        f"\njson guard on 1,000 records ({len(body)} bytes): {best * 1000:.2f} ms "
        f"(plain json.loads {plain * 1000:.2f} ms)"
    )
    assert best < 0.25


def test_a_client_that_leaves_mid_body_gets_no_answer() -> None:
    """The guard reads the body whole; a disconnect then is not a 413 nor a call to the app."""
    called: list[str] = []
    sent: list[dict[str, Any]] = []

    async def app(_scope: Any, _receive: Any, _send: Any) -> None:
        called.append("app")

    messages = [
        {"type": "http.request", "body": b'{"records": [', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": BATCHES,
        "headers": [(b"content-type", b"application/json")],
    }
    guard = GuardMiddleware(app, max_body_bytes=4096)
    asyncio.run(guard(scope, receive, send))
    assert called == []
    assert sent == []
    assert messages == []
