"""Notifications over HTTP, pushed to a real webhook receiver by the background job runner.

The receiver listens on 127.0.0.1 and answers 500 to each notification's first
two pushes; the job runner (on its own thread, as in a server) retries with
backoff until each is accepted. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from broker.bootstrap import Runtime, build_runtime
from broker.config import Settings
from broker.db.uow import SqlUnitOfWorkFactory
from broker.notify import RetrySchedule, secret_from_text, verify
from broker.startup import JobOptions, job_runner_for
from broker.web.app import create_app
from tests.auth_helpers import agency_headers
from tests.helpers import idempotent
from tests.notify_helpers import (
    ADULT,
    DATASET,
    OLDER,
    SAFEGUARDING,
    SHARPS,
    STAB_WOUNDS,
    UNDER_25_STABBED,
    VIOLENCE,
    YOUNG,
    Receiver,
    RunningClock,
    notify_settings,
    running_receiver,
)

BASE = f"/v1/agreements/{SHARPS}"
START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return notify_settings(database_url, tmp_path)


@pytest.fixture
def running_clock() -> RunningClock:
    return RunningClock(START)


@pytest.fixture
def live_runtime(settings: Settings, running_clock: RunningClock) -> Iterator[Runtime]:
    built = build_runtime(settings, clock=running_clock)
    yield built
    built.engine.dispose()


def _keys(runtime: Runtime) -> dict[str, dict[str, str]]:
    return {
        agency: agency_headers(runtime.broker, agency)
        for agency in ("ed", "social-care", "police", "school")
    }


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"code", "message", "location", "problems"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return dict(body["error"])


def _wait_for(receiver: Receiver, ids: set[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if set(receiver.accepted()) >= ids:
            return
        time.sleep(0.02)
    raise AssertionError(f"accepted {sorted(receiver.accepted())} of {sorted(ids)}")


def _wait_until_recorded(runtime: Runtime, ids: set[str], timeout: float = 30.0) -> None:
    """Wait for the broker to record the accepted pushes (it records a subscription's together)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with SqlUnitOfWorkFactory(runtime.engine)() as uow:
            rows = [uow.notifications.notification(i) for i in ids]
        if all(row is not None and row.status == "delivered" for row in rows):
            return
        time.sleep(0.02)
    raise AssertionError("the broker did not record every delivery")


def test_each_notification_reaches_a_failing_receiver_exactly_once(
    live_runtime: Runtime, running_clock: RunningClock
) -> None:
    options = JobOptions(
        poll_seconds=0.05,
        notification_every_seconds=0.05,
        notification_retry=RetrySchedule(first_delay_seconds=0.1, max_delay_seconds=0.4),
    )
    runner = job_runner_for(live_runtime, options, clock=running_clock)
    keys = _keys(live_runtime)
    with (
        running_receiver(failures=2) as receiver,
        TestClient(create_app(live_runtime, jobs=runner)) as client,
    ):
        front_door = client.post(
            f"{BASE}/subscriptions",
            json={
                "purpose": SAFEGUARDING,
                "url": receiver.url("/front-door"),
                "rule": UNDER_25_STABBED,
            },
            headers=keys["social-care"],
        )
        assert front_door.status_code == 201, front_door.text
        police = client.post(
            f"{BASE}/subscriptions",
            json={"purpose": VIOLENCE, "url": receiver.url("/police"), "rule": STAB_WOUNDS},
            headers=keys["police"],
        )
        assert police.status_code == 201, police.text
        secrets = {
            "/front-door": secret_from_text(front_door.json()["secret"]),
            "/police": secret_from_text(police.json()["secret"]),
        }

        sent = time.monotonic()
        stored = client.post(
            f"{BASE}/datasets/{DATASET}/batches",
            json={"records": [YOUNG, ADULT, OLDER]},
            headers=idempotent(keys["ed"]),
        )
        assert stored.status_code == 201, stored.text
        polled = {
            agency: client.get(f"{BASE}/notifications", headers=keys[agency]).json()
            for agency in ("social-care", "police")
        }
        expected = {n["id"] for page in polled.values() for n in page["notifications"]}
        assert len(expected) == 4  # two under 25 for the front door; two stab wounds for police
        _wait_for(receiver, expected)
        _wait_until_recorded(live_runtime, expected)

        # Exactly once from the recipient's side: one accepted push per idempotency id.
        assert receiver.accepted() == dict.fromkeys(expected, 1)
        assert set(receiver.processed) == expected
        for request in receiver.requests:
            assert request.headers["content-type"] == "application/json"
            stamp = int(request.headers["webhook-timestamp"])
            message_id = verify(secrets[request.path], request.headers, request.body, now=stamp)
            body = json.loads(request.body)
            assert body["id"] == message_id
            assert "safeguarding_referral_made" not in body["fields"] or (
                request.path == "/front-door"
            )
        by_id = {json.loads(r.body)["id"]: json.loads(r.body) for r in receiver.requests}
        for page in polled.values():
            for notification in page["notifications"]:
                assert by_id[notification["id"]] == notification["body"]

        # Measured, not asserted: a subscription's later notifications wait for its first.
        accepted = sorted(round((receiver.processed[i] - sent) * 1000) for i in expected)
        print(f"\n{_where(live_runtime)}: accepted after two 500s each, ms from ingest: {accepted}")

        one = next(iter(expected))
        mine = (
            "social-care"
            if one in {n["id"] for n in polled["social-care"]["notifications"]}
            else "police"
        )
        log = client.get(f"{BASE}/notifications/{one}/deliveries", headers=keys[mine])
        assert log.status_code == 200, log.text
        assert [(a["attempt"], a["status_code"]) for a in log.json()["attempts"]] == [
            (1, 500),
            (2, 500),
            (3, 200),
        ]
        other = "police" if mine == "social-care" else "social-care"
        _error(
            client.get(f"{BASE}/notifications/{one}/deliveries", headers=keys[other]),
            404,
            "not_found",
        )
        after = client.get(f"{BASE}/notifications", headers=keys["social-care"]).json()
        assert {n["status"] for n in after["notifications"]} == {"delivered"}
        assert all(n["attempts"] == 3 for n in after["notifications"])
        acknowledged = client.post(
            f"{BASE}/notifications/acknowledgements",
            json={"ids": [n["id"] for n in after["notifications"]]},
            headers=keys["social-care"],
        )
        assert acknowledged.status_code == 200, acknowledged.text
        assert len(acknowledged.json()["acknowledged"]) == 2
    assert not runner.running
    live_runtime.broker.verify_audit()


def _where(runtime: Runtime) -> str:
    return runtime.settings.database_url.split(":", 1)[0]


def test_notification_delay_from_ingest_to_receipt(
    live_runtime: Runtime, running_clock: RunningClock
) -> None:
    options = JobOptions(poll_seconds=0.05, notification_every_seconds=0.05)
    runner = job_runner_for(live_runtime, options, clock=running_clock)
    keys = _keys(live_runtime)
    with (
        running_receiver(failures=0) as receiver,
        TestClient(create_app(live_runtime, jobs=runner)) as client,
    ):
        created = client.post(
            f"{BASE}/subscriptions",
            json={"purpose": VIOLENCE, "url": receiver.url("/police"), "rule": STAB_WOUNDS},
            headers=keys["police"],
        )
        assert created.status_code == 201, created.text
        delays = []
        for n in range(5):
            record = {**YOUNG, "record_id": f"ED-D{n}", "given_name": f"Kai{'a' * n}"}
            sent = time.monotonic()
            stored = client.post(
                f"{BASE}/datasets/{DATASET}/batches",
                json={"records": [record]},
                headers=idempotent(keys["ed"]),
            )
            assert stored.status_code == 201, stored.text
            deadline = time.monotonic() + 30
            while len(receiver.processed) <= n and time.monotonic() < deadline:
                time.sleep(0.005)
            assert len(receiver.processed) == n + 1
            delays.append(round((max(receiver.processed.values()) - sent) * 1000))
        assert set(receiver.accepted().values()) == {1}
    print(f"\n{_where(live_runtime)}: ingest request to webhook receipt, ms: {delays}")


def test_refused_subscriptions_are_clear_errors_over_http(
    live_runtime: Runtime,
) -> None:
    keys = _keys(live_runtime)
    with TestClient(create_app(live_runtime)) as client:
        url = "https://police.example.org/accord"

        def subscribe(agency: str, base: str = BASE, **body: Any) -> Any:
            sent = {"purpose": VIOLENCE, "url": url, "rule": STAB_WOUNDS, **body}
            return client.post(f"{base}/subscriptions", json=sent, headers=keys[agency])

        error = _error(
            subscribe("police", url="http://police.example.org/accord"),
            422,
            "webhook_url_not_https",
        )
        assert error["location"] == {"field": "url"}
        assert "example.org" not in error["message"]
        error = _error(
            subscribe("police", rule={"dataset": DATASET, "all_of": []}),
            403,
            "subscription_unconditional",
        )
        assert "agreement model has no term" in error["message"]
        every_injury = ["stab_wound", "incised_wound", "puncture_wound", "other_sharps"]
        _error(
            subscribe(
                "police",
                rule={"dataset": DATASET, "all_of": [{"field": "injury_type", "in": every_injury}]},
            ),
            403,
            "subscription_unconditional",
        )
        _error(subscribe("police", purpose="patrols"), 403, "purpose_unknown")
        _error(
            subscribe(
                "social-care",
                base="/v1/agreements/sv-early-identification",
                purpose="safeguarding-triage",
                rule={
                    "dataset": "ed-attendances",
                    "all_of": [{"field": "injury_type", "equals": "sharps"}],
                },
            ),
            403,
            "output_not_allowed",
        )
        error = _error(
            subscribe(
                "police",
                rule={
                    "dataset": DATASET,
                    "all_of": [{"field": "safeguarding_referral_made", "equals": True}],
                },
            ),
            403,
            "field_not_permitted",
        )
        assert error["location"] == {"field": "rule.all_of[0].field"}
        _error(
            subscribe(
                "police",
                rule={"dataset": DATASET, "all_of": [{"field": "date_of_birth", "age_under": 15}]},
            ),
            422,
            "condition_invalid",
        )
        _error(
            subscribe(
                "police",
                rule={
                    "dataset": DATASET,
                    "all_of": [{"field": "injury_type", "equals": "stab_wound", "in": ["x"]}],
                },
            ),
            422,
            "request_invalid",
        )
        _error(subscribe("school"), 403, "agency_not_party")
        _error(subscribe("police", base="/v1/agreements/nothing-here"), 404, "not_found")
        _error(
            client.post(f"{BASE}/subscriptions", json={"purpose": VIOLENCE}),
            401,
            "unauthenticated",
        )
        _error(
            client.get(f"{BASE}/notifications?limit=0", headers=keys["police"]),
            422,
            "request_invalid",
        )
        _error(
            client.delete(f"{BASE}/subscriptions/nsub_nothing", headers=keys["police"]),
            404,
            "not_found",
        )
        created = subscribe("police")
        assert created.status_code == 201, created.text
        listed = client.get(f"{BASE}/subscriptions", headers=keys["police"]).json()
        (only,) = listed["subscriptions"]
        assert only["secret"] is None
        assert only["rule"] == {
            "dataset": DATASET,
            "all_of": [{"field": "injury_type", "op": "equals", "values": ["stab_wound"]}],
        }
        cancelled = client.delete(f"{BASE}/subscriptions/{only['id']}", headers=keys["police"])
        assert cancelled.status_code == 200
        assert cancelled.json()["cancelled_at"]
    refusals = [
        e.event.reason_code
        for e in live_runtime.broker.audit_page(actor=None, after=0, limit=1000)
        if e.event.action == "subscription" and e.event.outcome == "refused"
    ]
    assert sorted(refusals) == sorted(
        [
            "webhook_url_not_https",
            "subscription_unconditional",
            "subscription_unconditional",
            "purpose_unknown",
            "output_not_allowed",
            "field_not_permitted",
            "condition_invalid",
            "agency_not_party",
        ]
    )
