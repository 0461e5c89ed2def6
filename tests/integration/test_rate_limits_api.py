"""Rate limits over HTTP: 429 with Retry-After, refill with the clock, one agency per bucket.

On SQLite and PostgreSQL, against an example agreement re-signed with tight limits.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agreements.demo_approvals import approve_for_demo
from broker.bootstrap import Runtime, build_runtime
from broker.clock import FixedClock
from broker.config import Settings
from broker.errors import RateLimited, StorageError
from broker.web.app import create_app
from tests.auth_helpers import agency_headers
from tests.helpers import AGREEMENT, EXAMPLE_FILE, school_record

LOOKUPS = f"/v1/agreements/{AGREEMENT}/lookups"
BATCHES = f"/v1/agreements/{AGREEMENT}/datasets/school-attendance/batches"
# Six lookups a minute (one every ten seconds), three at once; one batch every 30 seconds.
TIGHT = (
    "limits:\n"
    "  rates:\n"
    "    lookup: {per_minute: 6, burst: 3}\n"
    "    ingest: {per_minute: 2, burst: 1}\n"
)
LOOKUP = {
    "purpose": "violence-reduction",
    "identifiers": {
        "given_name": "Nobody",
        "family_name": "Known",
        "date_of_birth": "2010-01-01",
        "postcode": "NS1 4AB",
    },
}
TRIAGE = {**LOOKUP, "purpose": "safeguarding-triage"}


def tight_agreement(folder: Path) -> Path:
    """The example agreement with TIGHT limits, re-signed so that it loads."""
    text = EXAMPLE_FILE.read_text(encoding="utf-8")
    start = text.index("\nlimits:\n") + 1
    end = text.index("\napprovals:\n")
    path = folder / EXAMPLE_FILE.name
    path.write_text(text[:start] + TIGHT + text[end:], encoding="utf-8")
    approve_for_demo(path)
    return path


@pytest.fixture
def limited(settings: Settings, clock: FixedClock, tmp_path: Path) -> Iterator[Runtime]:
    folder = tmp_path / "tight"
    folder.mkdir()
    tight_agreement(folder)
    built = build_runtime(settings.model_copy(update={"agreements_dir": folder}), clock=clock)
    yield built
    built.engine.dispose()


@pytest.fixture
def client(limited: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(limited)) as test_client:
        yield test_client


def _refused(response: Any, retry_after: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["Retry-After"] == str(retry_after)
    error = response.json()["error"]
    assert error["code"] == "rate_limited"
    assert f"retry after {retry_after} second" in error["message"]


def _rate_entries(limited: Runtime) -> list[dict[str, Any]]:
    page = limited.broker.audit_page(actor=None, after=0, limit=1000)
    return [
        {
            "actor": e.event.actor,
            "action": e.event.action,
            "agreement": e.event.agreement_id,
            **e.event.detail,
        }
        for e in page
        if e.event.reason_code == "rate_limited"
    ]


def test_burst_then_429_then_refill_with_the_clock(
    client: TestClient, limited: Runtime, clock: FixedClock
) -> None:
    police = agency_headers(limited.broker, "police")
    for _ in range(3):
        assert client.post(LOOKUPS, json=LOOKUP, headers=police).status_code == 200
    _refused(client.post(LOOKUPS, json=LOOKUP, headers=police), 10)
    clock.advance(timedelta(seconds=9))
    _refused(client.post(LOOKUPS, json=LOOKUP, headers=police), 1)
    clock.advance(timedelta(seconds=1))
    assert client.post(LOOKUPS, json=LOOKUP, headers=police).status_code == 200
    _refused(client.post(LOOKUPS, json=LOOKUP, headers=police), 10)
    # A refused lookup was never made: no lookup audit entry beyond the four permitted.
    page = limited.broker.audit_page(actor="police", after=0, limit=1000)
    assert [e.event.outcome for e in page if e.event.action == "lookup"].count("permitted") == 4


def test_one_agencys_flood_does_not_limit_another(client: TestClient, limited: Runtime) -> None:
    police = agency_headers(limited.broker, "police")
    school = agency_headers(limited.broker, "school")
    for _ in range(3):
        assert client.post(LOOKUPS, json=LOOKUP, headers=police).status_code == 200
    for _ in range(20):
        _refused(client.post(LOOKUPS, json=LOOKUP, headers=police), 10)
    for _ in range(3):
        assert client.post(LOOKUPS, json=TRIAGE, headers=school).status_code == 200
    _refused(client.post(LOOKUPS, json=TRIAGE, headers=school), 10)


def test_kinds_have_their_own_buckets(client: TestClient, limited: Runtime) -> None:
    school = agency_headers(limited.broker, "school")
    batch = {"records": [school_record("SCH-1")]}
    first = client.post(BATCHES, json=batch, headers={**school, "Idempotency-Key": "batch-1"})
    assert first.status_code == 201, first.text
    second = client.post(
        BATCHES,
        json={"records": [school_record("SCH-2")]},
        headers={**school, "Idempotency-Key": "batch-2"},
    )
    _refused(second, 30)
    # Ingest spent, lookups untouched.
    assert client.post(LOOKUPS, json=TRIAGE, headers=school).status_code == 200


def test_refusals_are_audited_as_counts_not_one_entry_each(
    client: TestClient, limited: Runtime, clock: FixedClock
) -> None:
    police = agency_headers(limited.broker, "police")
    for _ in range(3):
        client.post(LOOKUPS, json=LOOKUP, headers=police)
    for _ in range(25):
        _refused(client.post(LOOKUPS, json=LOOKUP, headers=police), 10)
    opened = _rate_entries(limited)
    assert len(opened) == 1
    assert opened[0]["actor"] == "police"
    assert opened[0]["action"] == "lookup"
    assert opened[0]["agreement"] == AGREEMENT
    assert opened[0]["kind"] == "lookup"
    assert opened[0]["refused"] == 1
    assert opened[0]["window_closed"] is False
    clock.advance(timedelta(seconds=60))
    assert client.post(LOOKUPS, json=LOOKUP, headers=police).status_code == 200
    entries = _rate_entries(limited)
    assert len(entries) == 2
    assert entries[1]["refused"] == 25
    assert entries[1]["window_closed"] is True
    assert entries[1]["window_start"] == opened[0]["window_start"]
    assert limited.broker.verify_audit().size == len(
        limited.broker.audit_page(actor=None, after=0, limit=1000)
    )


def test_429_is_declared_in_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "429" in paths["/v1/agreements/{agreement_id}/lookups"]["post"]["responses"]
    assert "429" in paths["/v1/agreements/{agreement_id}/aggregates"]["post"]["responses"]
    batches = "/v1/agreements/{agreement_id}/datasets/{dataset_id}/batches"
    assert "429" in paths[batches]["post"]["responses"]
    assert "429" in paths["/v1/agreements/{agreement_id}/notifications"]["get"]["responses"]


def test_shipped_examples_keep_their_copy_unchanged(tmp_path: Path) -> None:
    # The fixture re-signs a copy; the shipped file itself is never touched.
    before = EXAMPLE_FILE.read_bytes()
    tight_agreement(tmp_path)
    assert EXAMPLE_FILE.read_bytes() == before


def test_each_worker_enforces_its_share_of_the_limit(
    settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    tight_agreement(folder)
    two = settings.model_copy(update={"agreements_dir": folder, "workers": 2})
    built = build_runtime(two, clock=clock)
    try:
        with TestClient(create_app(built)) as client:
            police = agency_headers(built.broker, "police")
            # 6 a minute, 3 at once, over two workers: this one allows 3 a minute, 1 at once.
            assert client.post(LOOKUPS, json=LOOKUP, headers=police).status_code == 200
            _refused(client.post(LOOKUPS, json=LOOKUP, headers=police), 20)
    finally:
        built.engine.dispose()


def test_shutdown_audits_the_count_of_an_open_window(limited: Runtime) -> None:
    with TestClient(create_app(limited)) as client:
        police = agency_headers(limited.broker, "police")
        for _ in range(3):
            client.post(LOOKUPS, json=LOOKUP, headers=police)
        for _ in range(7):
            _refused(client.post(LOOKUPS, json=LOOKUP, headers=police), 10)
        assert [e["refused"] for e in _rate_entries(limited)] == [1]
    # The app stopped within the minute: its total was audited on the way down.
    assert [(e["refused"], e["window_closed"]) for e in _rate_entries(limited)] == [
        (1, False),
        (7, True),
    ]


def test_settling_with_the_database_gone_says_so_and_does_not_raise(
    limited: Runtime, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broker = limited.broker
    for _ in range(3):
        broker.admit(agency="police", agreement_id=AGREEMENT, kind="lookup")
    for _ in range(2):
        with pytest.raises(RateLimited):
            broker.admit(agency="police", agreement_id=AGREEMENT, kind="lookup")

    def gone(*_args: object) -> None:
        raise StorageError("the database could not be reached; try again shortly")

    monkeypatch.setattr(broker, "_audit_rate_refusals", gone)
    assert broker.settle_rate_refusals(final=True) == 0
    assert "rate-limit refusals of 1 windows could not be audited" in caplog.text
