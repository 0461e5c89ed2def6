"""An IG lead's audit search and reports over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from broker.bootstrap import Runtime, build_runtime
from broker.clock import FixedClock
from broker.config import Settings
from broker.web.app import create_app
from tests.auth_helpers import agency_headers, person_headers, person_username
from tests.conftest import EXAMPLES
from tests.helpers import AGREEMENT, IDENTIFIERS, ed_record, idempotent, school_record

SEARCH = "/v1/audit/search"
OTHER_AGREEMENT = "education-welfare-absence"
# Every form of Amira's identifiers a careless log might hold.
IDENTIFIER_TEXTS = ("amira", "okafor", "2011-03-14", "ns1 4ab", "ns14ab")


@pytest.fixture
def lead_runtime(settings: Settings, clock: FixedClock) -> Iterator[Runtime]:
    """A broker with a second agreement, so that some agency is not a party to the first."""
    shutil.copy(EXAMPLES / f"{OTHER_AGREEMENT}.yaml", settings.agreements_dir)
    built = build_runtime(settings, clock=clock)
    yield built
    built.engine.dispose()


@pytest.fixture
def client(lead_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(lead_runtime)) as test_client:
        yield test_client


@pytest.fixture
def world(client: TestClient, lead_runtime: Runtime) -> dict[str, dict[str, str]]:
    """Amira's records from school and ED, looked up by social care and police; and Zara's."""
    broker = lead_runtime.broker
    keys = {a: agency_headers(broker, a) for a in ("school", "police", "social-care", "ed")}
    batches = f"/v1/agreements/{AGREEMENT}/datasets"
    school = [school_record("SCH-1"), school_record("SCH-2", given="Zara", family="Hughes")]
    for dataset, records, agency in (
        ("school-attendance", school, "school"),
        ("ed-attendances", [ed_record("ED-1")], "ed"),
    ):
        created = client.post(
            f"{batches}/{dataset}/batches",
            json={"records": records},
            headers=idempotent(keys[agency]),
        )
        assert created.status_code == 201, created.text
    lookups = f"/v1/agreements/{AGREEMENT}/lookups"
    zara = {**IDENTIFIERS, "given_name": "Zara", "family_name": "Hughes"}
    for agency, purpose, identifiers in (
        ("social-care", "safeguarding-triage", IDENTIFIERS),
        ("police", "violence-reduction", IDENTIFIERS),
        ("social-care", "safeguarding-triage", zara),
    ):
        found = client.post(
            lookups, json={"purpose": purpose, "identifiers": identifiers}, headers=keys[agency]
        )
        assert found.status_code == 200, found.text
        assert found.json()["matched"] is True
    refused = client.post(
        lookups,
        json={"purpose": "general-intelligence", "identifiers": IDENTIFIERS},
        headers=keys["police"],
    )
    assert refused.status_code == 403
    keys["lead"] = person_headers(broker, "ig_lead", "social-care")
    keys["outsider"] = person_headers(broker, "ig_lead", "education-welfare")
    return keys


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"code", "message", "location", "problems"}
    assert body["error"]["code"] == code
    return dict(body["error"])


def test_an_ig_lead_finds_every_release_about_a_young_person(
    client: TestClient, world: dict[str, dict[str, str]]
) -> None:
    response = client.post(SEARCH, json={"identifiers": IDENTIFIERS}, headers=world["lead"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["subjects_found"] == 1
    assert [(e["actor"], e["purpose"]) for e in body["entries"]] == [
        ("social-care", "safeguarding-triage"),
        ("police", "violence-reduction"),
    ]
    assert len({e["detail"]["subject"] for e in body["entries"]}) == 1
    assert body["next_after"] is None

    report = client.post(
        "/v1/audit/reports/subject", json={"identifiers": IDENTIFIERS}, headers=world["lead"]
    )
    assert report.status_code == 200, report.text
    releases = report.json()["releases"]
    assert [r["recipient"] for r in releases] == ["social-care", "police"]
    assert releases[0]["agreement_id"] == AGREEMENT
    assert releases[0]["agreement_version"] == 1
    assert set(releases[0]["providers"]) == {"school", "ed"}
    assert {"field": "ed-attendances.injury_type", "form": "as_supplied"} in releases[0]["fields"]


def test_exports_as_csv_and_fhir(client: TestClient, world: dict[str, dict[str, str]]) -> None:
    as_csv = client.post(
        SEARCH, json={"identifiers": IDENTIFIERS, "format": "csv"}, headers=world["lead"]
    )
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["actor"] for r in rows] == ["social-care", "police"]
    as_fhir = client.post(
        SEARCH, json={"identifiers": IDENTIFIERS, "format": "fhir"}, headers=world["lead"]
    )
    assert as_fhir.headers["content-type"].startswith("application/fhir+json")
    bundle = as_fhir.json()
    assert [e["resource"]["type"]["code"] for e in bundle["entry"]] == ["110106", "110106"]


def test_an_ig_lead_outside_the_agreement_finds_nothing(
    client: TestClient, world: dict[str, dict[str, str]]
) -> None:
    by_identifiers = client.post(
        SEARCH, json={"identifiers": IDENTIFIERS}, headers=world["outsider"]
    )
    assert by_identifiers.status_code == 200, by_identifiers.text
    assert by_identifiers.json()["entries"] == []
    everything = client.post(SEARCH, json={"limit": 1000}, headers=world["outsider"]).json()
    assert everything["entries"]
    for entry in everything["entries"]:
        assert entry["agreement_id"] == OTHER_AGREEMENT or entry["actor"] == "education-welfare"
    recipient = client.get(
        "/v1/audit/reports/recipient", params={"agency": "police"}, headers=world["outsider"]
    )
    assert recipient.json()["lookups"] == 0


def test_reports_over_http(client: TestClient, world: dict[str, dict[str, str]]) -> None:
    recipient = client.get(
        "/v1/audit/reports/recipient",
        params={"agency": "police", "since": "2026-11-01", "until": "2026-11-30"},
        headers=world["lead"],
    )
    assert recipient.status_code == 200, recipient.text
    police = recipient.json()
    assert (police["lookups"], police["matched"], police["refused"]) == (2, 1, 1)
    refusals = client.get("/v1/audit/reports/refusals", headers=world["lead"]).json()
    assert {
        "reason_code": "purpose_unknown",
        "agency": "police",
        "agreement_id": AGREEMENT,
        "count": 1,
    } in refusals["refusals"]
    volume = client.get("/v1/audit/reports/volume", headers=world["lead"]).json()
    days = {(d["agency"], d["day"]): d for d in volume["days"]}
    assert days[("social-care", "2026-11-26")]["lookups"] == 2
    assert days[("social-care", "2026-11-26")]["distinct_subjects"] == 2


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"since": "2026-11-27", "until": "2026-11-01"}, "time_range_invalid"),
        ({"since": "last tuesday"}, "time_range_invalid"),
        ({"limit": 100000}, "page_size_invalid"),
        ({"limit": 0}, "page_size_invalid"),
        ({"after": -3}, "page_invalid"),
        ({"colour": "red"}, "request_invalid"),
        ({"identifiers": {"shoe_size": "9"}}, "request_invalid"),
        ({"identifiers": {"given_name": "Amira"}}, "identifiers_insufficient"),
        ({"format": "xlsx"}, "request_invalid"),
    ],
)
def test_bad_searches_are_422_with_the_error_shape(
    client: TestClient, world: dict[str, dict[str, str]], body: dict[str, Any], code: str
) -> None:
    _error(client.post(SEARCH, json=body, headers=world["lead"]), 422, code)


def test_only_an_ig_lead_key_may_search(
    client: TestClient, world: dict[str, dict[str, str]]
) -> None:
    for method, path, kwargs in (
        ("POST", SEARCH, {"json": {}}),
        ("POST", "/v1/audit/reports/subject", {"json": {"subject_ids": ["sub_x"]}}),
        ("GET", "/v1/audit/reports/recipient?agency=police", {}),
        ("GET", "/v1/audit/reports/refusals", {}),
        ("GET", "/v1/audit/reports/volume", {}),
    ):
        refused = client.request(method, path, headers=world["social-care"], **kwargs)
        _error(refused, 403, "role_not_allowed")
        _error(client.request(method, path, **kwargs), 401, "unauthenticated")


def test_the_search_itself_is_audited_without_the_identifiers(
    client: TestClient, world: dict[str, dict[str, str]], lead_runtime: Runtime
) -> None:
    client.post(SEARCH, json={"identifiers": IDENTIFIERS}, headers=world["lead"])
    client.post(
        SEARCH, json={"identifiers": {**IDENTIFIERS, "nhs_number": "123"}}, headers=world["lead"]
    )
    client.post(SEARCH, json={"purpose": "Amira Okafor"}, headers=world["lead"])
    trail = lead_runtime.broker.audit_page(actor="social-care", after=0, limit=1000)
    searches = [e for e in trail if e.event.action == "audit_search"]
    assert [e.event.outcome for e in searches] == ["permitted", "refused", "permitted"]
    found, refused, typed = searches
    assert found.event.detail["by_identifiers"] == sorted(IDENTIFIERS)
    assert found.event.detail["role"] == "ig_lead"
    # The entry names the signed-in person, not only their agency.
    assert found.event.detail["account"] == person_username("ig_lead", "social-care")
    assert refused.event.detail["account"] == person_username("ig_lead", "social-care")
    assert found.event.detail["results"] == 2
    assert len(found.event.detail["subjects"]) == 1
    assert refused.event.reason_code == "identifier_invalid"
    assert typed.event.detail["filters"] == {"purpose": "unrecognised"}
    everything = lead_runtime.broker.audit_page(actor=None, after=0, limit=1000)
    logged = json.dumps([e.event.__dict__ for e in everything]).lower()
    for text in IDENTIFIER_TEXTS:
        assert text not in logged
    # The search entries name no subject in the indexed column: they are not releases.
    again = client.post(SEARCH, json={"identifiers": IDENTIFIERS}, headers=world["lead"]).json()
    assert {e["action"] for e in again["entries"]} == {"lookup"}


def test_an_administrators_report_is_recorded_as_theirs_not_the_operators(
    client: TestClient, world: dict[str, dict[str, str]], lead_runtime: Runtime
) -> None:
    admin = person_headers(lead_runtime.broker, "admin", None)
    assert client.get("/v1/audit/reports/refusals", headers=admin).status_code == 200
    assert client.get("/v1/audit/reports/volume", headers=admin).status_code == 200
    trail = lead_runtime.broker.audit_page(actor="admin", after=0, limit=1000)
    reports = [e.event for e in trail if e.event.action == "audit_search"]
    assert [e.detail["kind"] for e in reports] == ["refusals", "volume"]
    for event in reports:
        assert event.detail["role"] == "admin"
        assert event.detail["account"] == person_username("admin", None)
    operator = lead_runtime.broker.audit_page(actor="operator", after=0, limit=1000)
    assert not [e for e in operator if e.event.action == "audit_search"]
