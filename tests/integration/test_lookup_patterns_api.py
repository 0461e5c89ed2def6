"""The unusual-patterns report over HTTP, on SQLite and PostgreSQL.

Seeded traffic through the real API: a sweep of guessed identities (a miss-storm),
a burst of lookups about many different young people, and ordinary work, which
must raise no flag.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from broker.bootstrap import Runtime
from broker.clock import FixedClock
from broker.token_client import ClientCredential
from broker.web.app import create_app
from tests.auth_helpers import (
    agency_headers,
    client_token,
    person_headers,
    register_agency_client,
)
from tests.helpers import AGREEMENT, school_record

LOOKUPS = f"/v1/agreements/{AGREEMENT}/lookups"
BATCHES = f"/v1/agreements/{AGREEMENT}/datasets/school-attendance/batches"
REPORT = "/v1/audit/reports/patterns"
FAMILIES = ["Okafor", "Nowak", "Patel", "Byrne", "Hughes", "Khan", "Evans", "Price"]


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime)) as test_client:
        yield test_client


class Systems:
    """Each agency's system, with a fresh access token whenever asked (the clock moves)."""

    def __init__(self, runtime: Runtime) -> None:
        self._broker = runtime.broker
        self._credentials: dict[str, ClientCredential] = {}

    def __call__(self, agency: str) -> dict[str, str]:
        if agency not in self._credentials:
            self._credentials[agency] = register_agency_client(self._broker, agency)
        token = client_token(self._broker, self._credentials[agency])
        return {"Authorization": f"Bearer {token}"}


def _person(n: int) -> dict[str, str]:
    return {
        "given_name": f"Child{chr(65 + n % 26)}{chr(65 + n // 26)}",
        "family_name": FAMILIES[n % len(FAMILIES)],
        "date_of_birth": "2011-03-14",
        "postcode": "NS1 4AB",
    }


def _store(client: TestClient, runtime: Runtime, count: int) -> None:
    records = [
        school_record(f"SCH-{n}", given=_person(n)["given_name"], family=_person(n)["family_name"])
        for n in range(count)
    ]
    headers = {**agency_headers(runtime.broker, "school"), "Idempotency-Key": f"seed-{count}"}
    stored = client.post(BATCHES, json={"records": records}, headers=headers)
    assert stored.status_code == 201, stored.text
    assert stored.json()["new_subjects"] == count


def _lookup(
    client: TestClient, headers: dict[str, str], purpose: str, person: dict[str, str]
) -> bool:
    found = client.post(LOOKUPS, json={"purpose": purpose, "identifiers": person}, headers=headers)
    assert found.status_code == 200, found.text
    return bool(found.json()["matched"])


def _report(client: TestClient, runtime: Runtime, **params: Any) -> dict[tuple[str, str], Any]:
    ig_lead = person_headers(runtime.broker, "ig_lead", "social-care")
    answer = client.get(REPORT, params=params, headers=ig_lead)
    assert answer.status_code == 200, answer.text
    return {(p["agency"], p["purpose"]): p for p in answer.json()["patterns"]}


def _ordinary_day(client: TestClient, systems: Systems, clock: FixedClock) -> None:
    """A school and social care checking a handful of referrals through the day."""
    for n in range(12):
        clock.advance(timedelta(minutes=40))
        social_care = systems("social-care")
        assert _lookup(client, social_care, "safeguarding-triage", _person(n % 6))
        if n % 3 == 0:
            assert not _lookup(client, social_care, "safeguarding-triage", _person(100 + n))
        assert _lookup(client, systems("school"), "safeguarding-triage", _person(n % 4))


def test_ordinary_work_raises_no_flag(
    client: TestClient, runtime: Runtime, clock: FixedClock
) -> None:
    _store(client, runtime, 8)
    _ordinary_day(client, Systems(runtime), clock)
    patterns = _report(client, runtime)
    assert set(patterns) == {
        ("school", "safeguarding-triage"),
        ("social-care", "safeguarding-triage"),
    }
    assert patterns[("social-care", "safeguarding-triage")]["lookups"] == 16
    assert patterns[("social-care", "safeguarding-triage")]["misses"] == 4
    assert all(p["flags"] == [] for p in patterns.values())


def test_a_miss_storm_and_a_many_subjects_burst_are_flagged(
    client: TestClient, runtime: Runtime, clock: FixedClock
) -> None:
    _store(client, runtime, 35)
    systems = Systems(runtime)
    _ordinary_day(client, systems, clock)
    # A sweep: 25 guessed identities in a few minutes, none known.
    for n in range(25):
        clock.advance(timedelta(seconds=10))
        assert not _lookup(client, systems("police"), "violence-reduction", _person(200 + n))
    # A harvest: 35 different young people within half an hour.
    for n in range(35):
        clock.advance(timedelta(seconds=50))
        assert _lookup(client, systems("social-care"), "safeguarding-triage", _person(n))
    patterns = _report(client, runtime)
    storm = patterns[("police", "violence-reduction")]
    assert storm["flags"] == [
        {
            "code": "many_misses",
            "figures": {
                "lookups": 25,
                "misses": 25,
                "miss_ratio": 1.0,
                "threshold_ratio": 0.8,
                "threshold_min_lookups": 20,
            },
        }
    ]
    burst = patterns[("social-care", "safeguarding-triage")]
    assert [f["code"] for f in burst["flags"]] == ["many_subjects"]
    figures = burst["flags"][0]["figures"]
    assert figures["distinct_subjects"] == burst["peak_subjects_per_hour"]
    assert figures["distinct_subjects"] >= 35
    assert figures["threshold_per_hour"] == 30
    assert patterns[("school", "safeguarding-triage")]["flags"] == []
    # Counts only: no subject id anywhere in the answer.
    ig_lead = person_headers(runtime.broker, "ig_lead", "social-care")
    assert "sub_" not in client.get(REPORT, headers=ig_lead).text
    # Tighter thresholds are options; the report itself is audited like every report.
    strict = _report(client, runtime, subjects_per_hour=100, miss_ratio=0.2, min_lookups=10)
    assert strict[("social-care", "safeguarding-triage")]["flags"] == []
    searches = [
        e.event
        for e in runtime.broker.audit_page(actor="social-care", after=0, limit=1000)
        if e.event.action == "audit_search"
    ]
    assert [s.detail["kind"] for s in searches][-1] == "patterns"


def test_nonsense_thresholds_are_refused(client: TestClient, runtime: Runtime) -> None:
    ig_lead = person_headers(runtime.broker, "ig_lead", "social-care")
    for params in ({"miss_ratio": 0}, {"miss_ratio": 2}, {"min_lookups": 0}):
        refused = client.get(REPORT, params=params, headers=ig_lead)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "request_invalid"
