"""The HTTP API in process: status codes, the error shape, limits. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from broker.bootstrap import Runtime, build_runtime
from broker.clock import FixedClock
from broker.config import Settings
from broker.web.app import create_app
from tests.auth_helpers import agency_headers, person_headers
from tests.helpers import AGREEMENT, IDENTIFIERS, ed_record, idempotent, school_record

BATCHES = f"/v1/agreements/{AGREEMENT}/datasets/school-attendance/batches"
LOOKUPS = f"/v1/agreements/{AGREEMENT}/lookups"


@pytest.fixture
def small_runtime(settings: Settings, clock: FixedClock) -> Iterator[Runtime]:
    """A runtime with a 4 KiB body limit, to test the limit cheaply."""
    built = build_runtime(settings.model_copy(update={"max_body_bytes": 4096}), clock=clock)
    yield built
    built.engine.dispose()


@pytest.fixture
def client(small_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(small_runtime)) as test_client:
        yield test_client


@pytest.fixture
def keys(small_runtime: Runtime) -> dict[str, dict[str, str]]:
    return {
        agency: agency_headers(small_runtime.broker, agency)
        for agency in ("school", "police", "social-care", "ed")
    }


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "location", "problems"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return dict(body["error"])


def test_health_ready_and_openapi(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["status"] == "ready"
    assert ready["agreements"] == 1
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        BATCHES.replace(AGREEMENT, "{agreement_id}").replace("school-attendance", "{dataset_id}"),
        "/v1/agreements/{agreement_id}/lookups",
        "/v1/audit/entries",
    } <= set(paths)


def test_batch_then_lookup(client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    created = client.post(
        BATCHES, json={"records": [school_record("SCH-1")]}, headers=idempotent(keys["school"])
    )
    assert created.status_code == 201, created.text
    assert created.json()["accepted"] == 1
    assert created.headers["x-request-id"]
    ed = client.post(
        f"/v1/agreements/{AGREEMENT}/datasets/ed-attendances/batches",
        json={"records": [ed_record("ED-1")]},
        headers=idempotent(keys["ed"]),
    )
    assert ed.json()["linked"] == 1
    found = client.post(
        LOOKUPS,
        json={"purpose": "safeguarding-triage", "identifiers": IDENTIFIERS},
        headers=keys["social-care"],
    ).json()
    assert found["matched"] is True
    assert {h["agency"] for h in found["holdings"]} == {"school", "ed"}
    assert "ed-attendances.arrival_mode" not in found["released"]
    assert "school-attendance.sen_support" not in found["released"]


def test_missing_and_wrong_credentials(client: TestClient) -> None:
    _error(client.post(BATCHES, json={"records": []}), 401, "unauthenticated")
    _error(
        client.post(
            BATCHES, json={"records": []}, headers=idempotent({"Authorization": "Bearer acc_nope"})
        ),
        401,
        "unauthenticated",
    )


def test_malformed_json(client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    response = client.post(
        BATCHES,
        content=b'{"records": [',
        headers=idempotent({**keys["school"], "Content-Type": "application/json"}),
    )
    _error(response, 400, "malformed_json")


def test_wrong_content_type(client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    response = client.post(
        BATCHES,
        content=b"record_id\nSCH-1\n",
        headers=idempotent({**keys["school"], "Content-Type": "text/csv"}),
    )
    _error(response, 415, "unsupported_media_type")


def test_body_over_the_limit(client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    records = [school_record(f"SCH-{i}") for i in range(40)]
    body = json.dumps({"records": records}).encode()
    assert len(body) > 4096
    response = client.post(
        BATCHES,
        content=body,
        headers=idempotent({**keys["school"], "Content-Type": "application/json"}),
    )
    _error(response, 413, "body_too_large")


def test_unknown_agreement_and_dataset(client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    _error(
        client.post(
            "/v1/agreements/nope/datasets/school-attendance/batches",
            json={"records": [school_record("S")]},
            headers=idempotent(keys["school"]),
        ),
        404,
        "not_found",
    )
    _error(
        client.post(
            f"/v1/agreements/{AGREEMENT}/datasets/nope/batches",
            json={"records": [school_record("S")]},
            headers=idempotent(keys["school"]),
        ),
        404,
        "not_found",
    )


def test_undeclared_missing_and_overlong_fields_name_record_and_field(
    client: TestClient, keys: dict[str, dict[str, str]]
) -> None:
    records = [
        school_record("SCH-1"),
        school_record("SCH-2", attendance_pc="90"),
        {k: v for k, v in school_record("SCH-3").items() if k != "persistent_absence"},
        school_record("SCH-4", given_name="A" * 300),
    ]
    error = _error(
        client.post(BATCHES, json={"records": records}, headers=idempotent(keys["school"])),
        422,
        "batch_invalid",
    )
    found = {
        (p["code"], p["location"]["record"], p["location"]["field"]) for p in error["problems"]
    }
    assert ("field_not_declared", 1, "attendance_pc") in found
    assert ("field_required", 2, "persistent_absence") in found
    assert ("identifier_invalid", 3, "given_name") in found
    assert "did you mean 'attendance_pct'" in json.dumps(error)
    assert "A" * 50 not in json.dumps(error)
    # nothing stored: the valid first record can still be sent
    ok = client.post(
        BATCHES, json={"records": [school_record("SCH-1")]}, headers=idempotent(keys["school"])
    )
    assert ok.status_code == 201


def test_duplicate_record_is_a_conflict_within_the_batch_rules(
    client: TestClient, keys: dict[str, dict[str, str]]
) -> None:
    client.post(
        BATCHES, json={"records": [school_record("SCH-1")]}, headers=idempotent(keys["school"])
    )
    error = _error(
        client.post(
            BATCHES, json={"records": [school_record("SCH-1")]}, headers=idempotent(keys["school"])
        ),
        422,
        "batch_invalid",
    )
    assert error["problems"][0]["code"] == "record_exists"


def test_request_schema_errors_have_a_location(
    client: TestClient, keys: dict[str, dict[str, str]]
) -> None:
    error = _error(
        client.post(
            LOOKUPS,
            json={"purpose": "safeguarding-triage", "identifiers": {"shoe_size": "9"}},
            headers=keys["social-care"],
        ),
        422,
        "request_invalid",
    )
    assert error["location"]["field"].startswith("identifiers")
    assert "9" not in error["message"]


def test_refusals_are_403_with_the_rule(
    client: TestClient, keys: dict[str, dict[str, str]]
) -> None:
    error = _error(
        client.post(
            LOOKUPS,
            json={"purpose": "safeguarding-triage", "identifiers": IDENTIFIERS},
            headers=keys["ed"],
        ),
        403,
        "agency_not_recipient",
    )
    assert "recipient" in error["message"]


def test_audit_read_is_limited_to_the_caller(
    client: TestClient, keys: dict[str, dict[str, str]]
) -> None:
    client.post(
        BATCHES, json={"records": [school_record("SCH-1")]}, headers=idempotent(keys["school"])
    )
    mine = client.get("/v1/audit/entries", headers=keys["school"]).json()["entries"]
    assert [e["action"] for e in mine] == ["ingest", "link"]
    assert client.get("/v1/audit/entries", headers=keys["police"]).json()["entries"] == []
    _error(
        client.get("/v1/audit/entries?limit=100000", headers=keys["school"]), 422, "request_invalid"
    )
    head = client.get("/v1/audit/head", headers=keys["police"]).json()
    assert head["size"] >= 2


def test_agreements_list_shows_the_callers_roles(
    client: TestClient, keys: dict[str, dict[str, str]]
) -> None:
    listed = client.get("/v1/agreements", headers=keys["ed"]).json()
    assert listed == [
        {
            "id": AGREEMENT,
            "version": 1,
            "title": listed[0]["title"],
            "status": "active",
            "roles": ["provider"],
            "review_by": "2027-09-30",
            "expires_on": "2028-03-31",
            "warnings": [],
        }
    ]


def test_agency_audit_reads_hide_the_internal_subject_id(
    client: TestClient, keys: dict[str, dict[str, str]], small_runtime: Runtime
) -> None:
    client.post(
        BATCHES, json={"records": [school_record("SCH-1")]}, headers=idempotent(keys["school"])
    )
    client.post(
        LOOKUPS,
        json={"purpose": "safeguarding-triage", "identifiers": IDENTIFIERS},
        headers=keys["social-care"],
    )
    stored = small_runtime.broker.audit_page(actor="social-care", after=0, limit=10)
    assert stored[0].event.detail["subject"].startswith("sub_")
    shown = client.get("/v1/audit/entries", headers=keys["social-care"]).json()["entries"]
    assert shown[0]["action"] == "lookup"
    assert "subject" not in shown[0]["detail"]
    assert stored[0].event.detail["subject"] not in json.dumps(shown)


def test_an_ig_lead_key_cannot_ingest_or_look_up(
    client: TestClient, small_runtime: Runtime
) -> None:
    ig_lead = person_headers(small_runtime.broker, "ig_lead", "police")
    batch = client.post(
        BATCHES, json={"records": [school_record("SCH-1")]}, headers=idempotent(ig_lead)
    )
    _error(batch, 403, "role_not_allowed")
    found = client.post(
        LOOKUPS,
        json={"purpose": "violence-reduction", "identifiers": IDENTIFIERS},
        headers=ig_lead,
    )
    _error(found, 403, "role_not_allowed")
    issued = small_runtime.broker.audit_page(actor=None, after=0, limit=1000)
    roles = [e.event.detail.get("role") for e in issued if e.event.action == "account_created"]
    assert roles == ["ig_lead"]
