"""The agreement lifecycle over HTTP: draft, approve, activate, suspend, resume (both databases).

Each party's DPO holds an Ed25519 key the operator registered; approvals are
signed here exactly as a DPO's tool would sign them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from agreements.approval import public_key_text, sign_approval
from agreements.loader import parse_agreement
from agreements.models import Agreement, Release, ReleasedField
from broker.bootstrap import Runtime
from broker.web.app import create_app
from tests.auth_helpers import agency_headers, person_headers
from tests.helpers import (
    AGREEMENT,
    IDENTIFIERS,
    ed_record,
    example_agreement,
    idempotent,
    school_record,
)

PARTIES = ("school", "police", "social-care", "ed")
TODAY = date(2026, 11, 26)
LOOKUPS = f"/v1/agreements/{AGREEMENT}/lookups"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime)) as test_client:
        yield test_client


@pytest.fixture
def headers(runtime: Runtime) -> dict[str, dict[str, str]]:
    # Each agency's DPO by its name; its system (records, lookups) as 'system:<agency>'.
    dpos = {agency: person_headers(runtime.broker, "dpo", agency) for agency in PARTIES}
    systems = {f"system:{a}": agency_headers(runtime.broker, a) for a in PARTIES}
    return {**dpos, **systems}


@pytest.fixture
def dpo_keys(runtime: Runtime) -> dict[str, Ed25519PrivateKey]:
    keys = {agency: Ed25519PrivateKey.generate() for agency in PARTIES}
    for agency, key in keys.items():
        runtime.broker.agreements.register_approver_key(
            agency, public_key_text(key.public_key()), actor="operator"
        )
    return keys


def _document(agreement: Agreement) -> str:
    body = agreement.model_dump(mode="json", exclude={"approvals", "policy_tests"})
    return yaml.safe_dump({**body, "status": "draft"}, sort_keys=False)


def _release_without(agreement: Agreement, recipient: str, dataset: str, field: str) -> Agreement:
    releases = tuple(
        r.model_copy(
            update={
                "fields": tuple(f for f in r.fields if (f.dataset, f.field) != (dataset, field))
            }
        )
        if r.recipient == recipient
        else r
        for r in agreement.releases
    )
    return agreement.model_copy(update={"releases": releases})


def _release_with(agreement: Agreement, recipient: str, grant: ReleasedField) -> Agreement:
    releases: list[Release] = []
    for release in agreement.releases:
        if release.recipient == recipient and release.purpose == "safeguarding-triage":
            releases.append(release.model_copy(update={"fields": (*release.fields, grant)}))
        else:
            releases.append(release)
    return agreement.model_copy(update={"releases": tuple(releases)})


def _approve_all(
    client: TestClient,
    headers: dict[str, dict[str, str]],
    dpo_keys: dict[str, Ed25519PrivateKey],
    document: str,
    version: int,
) -> dict[str, Any]:
    draft = parse_agreement(document, today=TODAY)
    body: dict[str, Any] = {}
    for agency in PARTIES:
        approval = sign_approval(
            draft, dpo_keys[agency], party=agency, approver=f"DPO of {agency}", role="DPO", on=TODAY
        )
        response = client.post(
            f"/v1/agreements/{AGREEMENT}/versions/{version}/approvals",
            json=approval.model_dump(mode="json", exclude={"party"}),
            headers=headers[agency],
        )
        assert response.status_code == 200, response.text
        body = response.json()
    return body


def _publish(
    client: TestClient,
    headers: dict[str, dict[str, str]],
    dpo_keys: dict[str, Ed25519PrivateKey],
    agreement: Agreement,
) -> None:
    document = _document(agreement)
    uploaded = client.post(
        "/v1/agreements/drafts", json={"document": document}, headers=headers["police"]
    )
    assert uploaded.status_code == 201, uploaded.text
    assert _approve_all(client, headers, dpo_keys, document, agreement.version)["status"] == (
        "approved"
    )
    activated = client.post(
        f"/v1/agreements/{AGREEMENT}/versions/{agreement.version}/activate",
        headers=headers["social-care"],
    )
    assert activated.status_code == 200, activated.text


def _lookup_fields(client: TestClient, headers: dict[str, dict[str, str]]) -> list[str]:
    found = client.post(
        LOOKUPS,
        json={"purpose": "safeguarding-triage", "identifiers": IDENTIFIERS},
        headers=headers["system:social-care"],
    )
    assert found.status_code == 200, found.text
    return list(found.json()["released"])


def _ingest(client: TestClient, headers: dict[str, dict[str, str]], dataset: str, rec: Any) -> None:
    agency = "ed" if dataset == "ed-attendances" else "school"
    response = client.post(
        f"/v1/agreements/{AGREEMENT}/datasets/{dataset}/batches",
        json={"records": [rec]},
        headers=idempotent(headers[f"system:{agency}"]),
    )
    assert response.status_code == 201, response.text


def test_a_draft_goes_through_approval_to_activation_and_narrows_at_once(
    client: TestClient,
    headers: dict[str, dict[str, str]],
    dpo_keys: dict[str, Ed25519PrivateKey],
    runtime: Runtime,
) -> None:
    _ingest(client, headers, "ed-attendances", ed_record("ED-1"))
    assert "ed-attendances.injury_type" in _lookup_fields(client, headers)
    v2 = _release_without(
        example_agreement().model_copy(update={"version": 2}),
        "social-care",
        "ed-attendances",
        "injury_type",
    )
    document = _document(v2)
    checked = client.post(
        "/v1/agreements/validate", json={"document": document}, headers=headers["police"]
    )
    assert checked.status_code == 200, checked.text
    assert checked.json()["version"] == 2
    uploaded = client.post(
        "/v1/agreements/drafts", json={"document": document}, headers=headers["police"]
    )
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["status"] == "draft"
    assert sorted(uploaded.json()["awaiting_approval"]) == sorted(PARTIES)
    again = client.post(
        "/v1/agreements/drafts", json={"document": document}, headers=headers["school"]
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "version_exists"
    early = client.post(
        f"/v1/agreements/{AGREEMENT}/versions/2/activate", headers=headers["social-care"]
    )
    assert early.status_code == 409
    assert early.json()["error"]["code"] == "not_approved"
    # Until activation, the lookup still releases the field.
    assert "ed-attendances.injury_type" in _lookup_fields(client, headers)
    assert _approve_all(client, headers, dpo_keys, document, 2)["status"] == "approved"
    not_lead = client.post(
        f"/v1/agreements/{AGREEMENT}/versions/2/activate", headers=headers["school"]
    )
    assert not_lead.status_code == 403
    assert not_lead.json()["error"]["code"] == "not_lead_party"
    activated = client.post(
        f"/v1/agreements/{AGREEMENT}/versions/2/activate", headers=headers["social-care"]
    )
    assert activated.status_code == 200, activated.text
    assert activated.json()["effective_status"] == "active"
    versions = client.get(f"/v1/agreements/{AGREEMENT}/versions", headers=headers["ed"]).json()
    assert [(v["version"], v["effective_status"]) for v in versions] == [
        (1, "superseded"),
        (2, "active"),
    ]
    # The record arrived under version 1, but the narrower version 2 applies at once.
    released = _lookup_fields(client, headers)
    assert "ed-attendances.injury_type" not in released
    assert "ed-attendances.attendance_date" in released
    operations = [
        (e.event.actor, e.event.outcome, e.event.detail.get("operation"))
        for e in runtime.broker.audit_page(actor=None, after=0, limit=1000)
        if e.event.action == "agreement_change"
    ]
    assert ("police", "permitted", "draft_uploaded") in operations
    assert ("school", "refused", "draft_upload") in operations
    assert ("social-care", "refused", "activate") in operations
    assert ("school", "refused", "activate") in operations
    assert sum(op == "approved" for _, _, op in operations) == len(PARTIES)
    assert ("social-care", "permitted", "activated") in operations


def test_a_wider_version_does_not_widen_records_received_before_it(
    client: TestClient,
    headers: dict[str, dict[str, str]],
    dpo_keys: dict[str, Ed25519PrivateKey],
) -> None:
    _ingest(client, headers, "ed-attendances", ed_record("ED-1"))
    wider = _release_with(
        example_agreement().model_copy(update={"version": 2}),
        "social-care",
        ReleasedField(dataset="ed-attendances", field="arrival_mode"),
    )
    _publish(client, headers, dpo_keys, wider)
    assert "ed-attendances.arrival_mode" not in _lookup_fields(client, headers)
    _ingest(client, headers, "ed-attendances", ed_record("ED-2", attendance_date="2026-11-25"))
    found = client.post(
        LOOKUPS,
        json={"purpose": "safeguarding-triage", "identifiers": IDENTIFIERS},
        headers=headers["system:social-care"],
    ).json()
    records = found["holdings"][0]["records"]
    by_reference = {r["reference"]: r["fields"] for r in records}
    assert "arrival_mode" not in by_reference["ED-1"]
    assert by_reference["ED-2"]["arrival_mode"] == "ambulance"


def test_suspension_stops_every_path_at_once_and_only_the_lead_resumes(
    client: TestClient, headers: dict[str, dict[str, str]]
) -> None:
    _ingest(client, headers, "ed-attendances", ed_record("ED-1"))
    suspended = client.post(
        f"/v1/agreements/{AGREEMENT}/suspend",
        json={"reason": "suspected misuse under investigation"},
        headers=headers["school"],
    )
    assert suspended.status_code == 200, suspended.text
    assert suspended.json() == {"id": AGREEMENT, "changed_versions": 1, "status": "suspended"}
    refused = client.post(
        LOOKUPS,
        json={"purpose": "safeguarding-triage", "identifiers": IDENTIFIERS},
        headers=headers["system:social-care"],
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "agreement_not_active"
    assert "suspected misuse" in refused.json()["error"]["message"]
    batch = client.post(
        f"/v1/agreements/{AGREEMENT}/datasets/school-attendance/batches",
        json={"records": [school_record("SCH-1")]},
        headers=idempotent(headers["system:school"]),
    )
    assert batch.status_code == 403
    not_lead = client.post(f"/v1/agreements/{AGREEMENT}/resume", headers=headers["school"])
    assert not_lead.status_code == 403
    resumed = client.post(f"/v1/agreements/{AGREEMENT}/resume", headers=headers["social-care"])
    assert resumed.status_code == 200
    assert "ed-attendances.injury_type" in _lookup_fields(client, headers)


def test_bad_approvals_are_refused_and_store_nothing(
    client: TestClient,
    headers: dict[str, dict[str, str]],
    dpo_keys: dict[str, Ed25519PrivateKey],
) -> None:
    document = _document(example_agreement().model_copy(update={"version": 2}))
    client.post("/v1/agreements/drafts", json={"document": document}, headers=headers["police"])
    draft = parse_agreement(document, today=TODAY)
    url = f"/v1/agreements/{AGREEMENT}/versions/2/approvals"
    stranger = sign_approval(
        draft, Ed25519PrivateKey.generate(), party="ed", approver="X", role="DPO", on=TODAY
    )
    unregistered = client.post(
        url, json=stranger.model_dump(mode="json", exclude={"party"}), headers=headers["ed"]
    )
    assert unregistered.status_code == 403
    assert unregistered.json()["error"]["code"] == "approval_invalid"
    assert "not registered" in unregistered.json()["error"]["message"]
    other = draft.model_copy(update={"title": "Something else"})
    mismatched = sign_approval(other, dpo_keys["ed"], party="ed", approver="X", role="D", on=TODAY)
    wrong = client.post(
        url, json=mismatched.model_dump(mode="json", exclude={"party"}), headers=headers["ed"]
    )
    assert wrong.status_code == 403
    assert "approve it again" in wrong.json()["error"]["message"]
    shown = client.get(f"/v1/agreements/{AGREEMENT}/versions/2", headers=headers["ed"]).json()
    assert shown["approvals"] == []
    assert shown["document"]["version"] == 2


def test_an_invalid_upload_reports_its_problems_and_stores_nothing(
    client: TestClient, headers: dict[str, dict[str, str]]
) -> None:
    document = _document(example_agreement().model_copy(update={"version": 2}))
    broken = document.replace("field: injury_type", "field: injury_typ", 1)
    response = client.post(
        "/v1/agreements/drafts", json={"document": broken}, headers=headers["police"]
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "agreement_invalid"
    assert any("did you mean 'injury_type'" in p["message"] for p in error["problems"])
    assert all(p["location"]["line"] >= 1 for p in error["problems"])
    versions = client.get(f"/v1/agreements/{AGREEMENT}/versions", headers=headers["police"])
    assert [v["version"] for v in versions.json()] == [1]


def test_the_agreement_list_shows_roles_dates_and_no_warning_yet(
    client: TestClient, headers: dict[str, dict[str, str]]
) -> None:
    listed = client.get("/v1/agreements", headers=headers["school"]).json()
    assert [(a["id"], a["roles"], a["warnings"]) for a in listed] == [
        (AGREEMENT, ["provider", "recipient"], [])
    ]
    assert listed[0]["review_by"] == "2027-09-30"
