"""Idempotent ingest: key parsing, digests, and replay through the API on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from broker.bootstrap import Runtime
from broker.clock import FixedClock
from broker.db.handles import AUDIT, BATCH, RECORD
from broker.db.idempotency_repository import IDEMPOTENCY, SqlIdempotency
from broker.idempotency import (
    IdempotencyKeyMissing,
    IdempotencyKeyReused,
    IdempotencyScope,
    StoredOutcome,
    parse_key,
    replay,
    scope_for,
)
from broker.jobs import RETENTION
from broker.startup import job_runner_for
from broker.web.app import create_app
from tests.auth_helpers import agency_headers
from tests.helpers import AGREEMENT, school_record
from tests.job_checks import recorded_runs

BATCHES = f"/v1/agreements/{AGREEMENT}/datasets/school-attendance/batches"


# -- pure parts ---------------------------------------------------------------


def test_a_quoted_key_and_the_same_bare_key_are_one_key() -> None:
    assert parse_key('"abc-123"') == "abc-123"
    assert parse_key("abc-123") == "abc-123"
    assert parse_key("  abc-123 ") == "abc-123"


@pytest.mark.parametrize("value", [None, "", "   ", '""', "a" * 256, "caf\u00e9", "two words"])
def test_a_missing_or_unusable_key_is_refused_without_echoing_it(value: str | None) -> None:
    with pytest.raises(IdempotencyKeyMissing) as caught:
        parse_key(value)
    assert caught.value.code == "idempotency_key_missing"
    assert "Idempotency-Key" in caught.value.message
    if value and value.strip():
        assert value.strip() not in caught.value.message


def _scope(key: str = "k1", body: Any = None, operation: str = "batch") -> IdempotencyScope:
    return scope_for(
        agency_id="school",
        agreement_id=AGREEMENT,
        dataset_id="school-attendance",
        operation=operation,
        key=key,
        body={"records": [1, 2]} if body is None else body,
    )


def test_digests_hide_the_key_and_ignore_key_order_in_the_body() -> None:
    one = _scope(body={"a": 1, "b": [1, {"x": 1, "y": 2}]})
    two = _scope(body={"b": [1, {"y": 2, "x": 1}], "a": 1})
    assert one == two
    assert len(one.key_digest) == 64
    assert "k1" not in one.key_digest
    assert _scope(body={"a": 2}).request_digest != one.request_digest
    assert _scope(operation="rekey").request_digest != _scope().request_digest
    assert _scope(key="k2").key_digest != _scope().key_digest


class _OneRow:
    """A repository holding at most one outcome; replay only ever reads."""

    def __init__(self, stored: StoredOutcome | None) -> None:
        self.stored = stored

    def find(self, scope: IdempotencyScope) -> StoredOutcome | None:
        assert len(scope.key_digest) == 64
        return self.stored


def test_replay_returns_the_stored_outcome_only_for_the_same_body() -> None:
    scope = _scope()
    stored = StoredOutcome(scope.request_digest, 201, {"batch_id": "bat_1"}, "bat_1", "t")
    assert replay(_OneRow(None), scope) is None
    assert replay(_OneRow(stored), scope) is stored
    with pytest.raises(IdempotencyKeyReused) as caught:
        replay(_OneRow(stored), _scope(body={"records": [3]}))
    assert caught.value.code == "idempotency_key_reused"


# -- through the API, on SQLite and PostgreSQL -----------------------------------


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime)) as test_client:
        yield test_client


@pytest.fixture
def school(runtime: Runtime) -> dict[str, str]:
    return agency_headers(runtime.broker, "school")


def _count(runtime: Runtime, table: Any) -> int:
    with runtime.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def _post(client: TestClient, headers: dict[str, str], key: str | None, refs: list[str]) -> Any:
    extra = {} if key is None else {"Idempotency-Key": key}
    body = {"records": [school_record(ref) for ref in refs]}
    return client.post(BATCHES, json=body, headers={**headers, **extra})


def test_a_batch_without_a_key_is_refused_with_400_and_nothing_stored(
    client: TestClient, runtime: Runtime, school: dict[str, str]
) -> None:
    response = _post(client, school, None, ["SCH-1"])
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "idempotency_key_missing"
    assert error["location"] == {"field": "Idempotency-Key"}
    assert _count(runtime, RECORD) == 0


def test_a_retry_replays_the_first_result_and_stores_nothing_twice(
    client: TestClient, runtime: Runtime, school: dict[str, str]
) -> None:
    key = str(uuid.uuid4())
    first = _post(client, school, key, ["SCH-1", "SCH-2"])
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    audit_after_first = _count(runtime, AUDIT)
    again = _post(client, school, f'"{key}"', ["SCH-1", "SCH-2"])
    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert _count(runtime, RECORD) == 2
    assert _count(runtime, BATCH) == 1
    assert _count(runtime, IDEMPOTENCY) == 1
    assert _count(runtime, AUDIT) == audit_after_first


def test_the_same_key_with_another_body_is_refused_and_stores_nothing(
    client: TestClient, runtime: Runtime, school: dict[str, str]
) -> None:
    assert _post(client, school, "key-1", ["SCH-1"]).status_code == 201
    reused = _post(client, school, "key-1", ["SCH-2"])
    assert reused.status_code == 422, reused.text
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert "key-1" not in reused.text
    assert _count(runtime, RECORD) == 1


def test_keys_belong_to_one_agency_and_a_failed_batch_keeps_no_key(
    client: TestClient, runtime: Runtime, school: dict[str, str]
) -> None:
    rejected = client.post(
        BATCHES,
        json={"records": [{"record_id": "SCH-1"}]},
        headers={**school, "Idempotency-Key": "key-1"},
    )
    assert rejected.status_code == 422, rejected.text
    assert rejected.json()["error"]["code"] == "batch_invalid"
    assert _count(runtime, IDEMPOTENCY) == 0
    # The failed attempt kept nothing: the corrected batch under the same key is stored.
    assert _post(client, school, "key-1", ["SCH-1"]).status_code == 201
    # Another agency's identical key is its own: the school's result is not replayed to it,
    # and the school-attendance dataset refuses the police as a supplier (403).
    police = agency_headers(runtime.broker, "police")
    other = _post(client, police, "key-1", ["SCH-9"])
    assert other.status_code == 403, other.text
    assert "Idempotent-Replayed" not in other.headers


def test_concurrent_requests_with_one_key_store_once_and_answer_alike(
    client: TestClient, runtime: Runtime, school: dict[str, str]
) -> None:
    refs = [f"SCH-{n}" for n in range(20)]
    start = threading.Barrier(4)
    answers: list[Any] = []
    lock = threading.Lock()

    def send() -> None:
        start.wait()
        response = _post(client, school, "same-key", refs)
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    assert len({a.text for a in answers}) == 1
    assert sum(1 for a in answers if "Idempotent-Replayed" not in a.headers) == 1
    assert _count(runtime, RECORD) == 20
    assert _count(runtime, BATCH) == 1


def test_the_retention_job_forgets_keys_after_the_retention_period(
    runtime: Runtime, client: TestClient, school: dict[str, str], clock: FixedClock
) -> None:
    assert _post(client, school, "key-1", ["SCH-1"]).status_code == 201
    runner = job_runner_for(runtime, clock=clock)
    assert runner.run_due() == 2
    assert _count(runtime, IDEMPOTENCY) == 1
    # Kept 7 days by default (BROKER_IDEMPOTENCY_KEY_DAYS); records are kept 120.
    clock.advance(timedelta(days=7, seconds=1))
    assert runner.run_due() == 2
    assert _count(runtime, IDEMPOTENCY) == 0
    assert _count(runtime, RECORD) == 1
    runs, _ = recorded_runs(runtime.engine)
    # The first run, over a week old, is forgotten as the new one is recorded.
    (run,) = [r for r in runs if r.job == RETENTION]
    assert run.counts["idempotency_keys"] == 1
    # Forgotten: the same key is new again, and the stored record is what refuses the batch.
    fresh = agency_headers(runtime.broker, "school")  # a week on, the old token has expired
    again = _post(client, fresh, "key-1", ["SCH-1"])
    assert again.status_code == 422, again.text
    assert again.json()["error"]["code"] == "batch_invalid"
    with runtime.engine.begin() as connection:
        assert SqlIdempotency(connection).purge("9999") == 0
