"""The daily lookup budget (enumeration defence) and the minimum identifiers, over HTTP.

On SQLite and PostgreSQL: the budget is counted durably (it survives a new
service object on the same database), per recipient agency and purpose, renews
at midnight UTC, and is spent only by lookups that can match.
"""

from __future__ import annotations

import threading
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
from broker.web.app import create_app
from tests.auth_helpers import agency_headers
from tests.helpers import AGREEMENT, EXAMPLE_FILE

LOOKUPS = f"/v1/agreements/{AGREEMENT}/lookups"
BUDGET = (
    "limits:\n"
    "  rates:\n"
    "    lookup: {per_minute: 600, burst: 100}\n"
    "  lookup_budget:\n"
    "    per_day: 3\n"
    "    purposes: {safeguarding-triage: 2}\n"
)
PERSON = {
    "given_name": "Nobody",
    "family_name": "Known",
    "date_of_birth": "2010-01-01",
    "postcode": "NS1 4AB",
}
POLICE = {"purpose": "violence-reduction", "identifiers": PERSON}
SCHOOL = {"purpose": "safeguarding-triage", "identifiers": PERSON}


def _agreement_with(folder: Path, block: str) -> None:
    text = EXAMPLE_FILE.read_text(encoding="utf-8")
    start = text.index("\nlimits:\n") + 1
    end = text.index("\napprovals:\n")
    path = folder / EXAMPLE_FILE.name
    path.write_text(text[:start] + block + text[end:], encoding="utf-8")
    approve_for_demo(path)


@pytest.fixture
def budget_settings(settings: Settings, tmp_path: Path) -> Settings:
    folder = tmp_path / "budget"
    folder.mkdir()
    _agreement_with(folder, BUDGET)
    return settings.model_copy(update={"agreements_dir": folder})


@pytest.fixture
def runtime_with_budget(budget_settings: Settings, clock: FixedClock) -> Iterator[Runtime]:
    built = build_runtime(budget_settings, clock=clock)
    yield built
    built.engine.dispose()


@pytest.fixture
def client(runtime_with_budget: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime_with_budget)) as test_client:
        yield test_client


def _spent(response: Any, per_day: int) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "lookup_budget_exhausted"
    assert f"({per_day} a day)" in error["message"]
    assert "midnight UTC" in error["message"]


def test_budget_then_refusal_audited(client: TestClient, runtime_with_budget: Runtime) -> None:
    police = agency_headers(runtime_with_budget.broker, "police")
    for _ in range(3):
        assert client.post(LOOKUPS, json=POLICE, headers=police).status_code == 200
    _spent(client.post(LOOKUPS, json=POLICE, headers=police), 3)
    _spent(client.post(LOOKUPS, json=POLICE, headers=police), 3)
    page = runtime_with_budget.broker.audit_page(actor="police", after=0, limit=100)
    lookups = [e.event for e in page if e.event.action == "lookup"]
    assert [e.outcome for e in lookups] == ["permitted"] * 3 + ["refused"] * 2
    refused = lookups[-1]
    assert refused.reason_code == "lookup_budget_exhausted"
    assert refused.purpose == "violence-reduction"
    assert refused.detail == {"budget_per_day": 3}


def test_budget_is_per_agency_and_purpose_with_overrides(
    client: TestClient, runtime_with_budget: Runtime
) -> None:
    broker = runtime_with_budget.broker
    police = agency_headers(broker, "police")
    school = agency_headers(broker, "school")
    social_care = agency_headers(broker, "social-care")
    for _ in range(3):
        assert client.post(LOOKUPS, json=POLICE, headers=police).status_code == 200
    _spent(client.post(LOOKUPS, json=POLICE, headers=police), 3)
    # safeguarding-triage has its own budget of 2, for each recipient separately.
    for headers in (school, social_care):
        for _ in range(2):
            assert client.post(LOOKUPS, json=SCHOOL, headers=headers).status_code == 200
        _spent(client.post(LOOKUPS, json=SCHOOL, headers=headers), 2)


def test_budget_renews_at_midnight_utc(
    client: TestClient, runtime_with_budget: Runtime, clock: FixedClock
) -> None:
    police = agency_headers(runtime_with_budget.broker, "police")
    for _ in range(3):
        assert client.post(LOOKUPS, json=POLICE, headers=police).status_code == 200
    _spent(client.post(LOOKUPS, json=POLICE, headers=police), 3)
    clock.advance(timedelta(hours=11, minutes=59))  # 23:59 the same day
    police = agency_headers(runtime_with_budget.broker, "police")  # tokens live minutes
    _spent(client.post(LOOKUPS, json=POLICE, headers=police), 3)
    clock.advance(timedelta(minutes=1))  # midnight
    assert client.post(LOOKUPS, json=POLICE, headers=police).status_code == 200


def test_budget_survives_a_new_service_object(budget_settings: Settings, clock: FixedClock) -> None:
    first = build_runtime(budget_settings, clock=clock)
    try:
        with TestClient(create_app(first)) as client:
            police = agency_headers(first.broker, "police")
            for _ in range(2):
                assert client.post(LOOKUPS, json=POLICE, headers=police).status_code == 200
    finally:
        first.engine.dispose()
    again = build_runtime(budget_settings, clock=clock)
    try:
        with TestClient(create_app(again)) as client:
            police = agency_headers(again.broker, "police")
            assert client.post(LOOKUPS, json=POLICE, headers=police).status_code == 200
            _spent(client.post(LOOKUPS, json=POLICE, headers=police), 3)
    finally:
        again.engine.dispose()


@pytest.mark.parametrize(
    "identifiers",
    [
        {"given_name": "Nobody", "family_name": "Known", "date_of_birth": "2010-01-01"},
        {"given_name": "Nobody", "family_name": "Known", "postcode": "NS1 4AB"},
        {"family_name": "Known", "date_of_birth": "2010-01-01", "postcode": "NS1 4AB"},
        # This agreement does not link by UPN, so a UPN alone can match nothing.
        {"upn": "A123456789012"},
        {"postcode": "NS1 4AB"},
        {},
    ],
    ids=["no-postcode", "no-dob", "no-given-name", "upn-not-a-key", "postcode-only", "none"],
)
def test_lookups_need_the_agreements_minimum_identifiers_and_spend_nothing(
    client: TestClient, runtime_with_budget: Runtime, identifiers: dict[str, str]
) -> None:
    police = agency_headers(runtime_with_budget.broker, "police")
    for _ in range(4):
        refused = client.post(
            LOOKUPS,
            json={"purpose": "violence-reduction", "identifiers": identifiers},
            headers=police,
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] in {"identifiers_insufficient", "identifier_invalid"}
    # None of those counted: the whole budget is still there.
    for _ in range(3):
        assert client.post(LOOKUPS, json=POLICE, headers=police).status_code == 200
    _spent(client.post(LOOKUPS, json=POLICE, headers=police), 3)


def test_an_nhs_number_alone_is_enough(client: TestClient, runtime_with_budget: Runtime) -> None:
    police = agency_headers(runtime_with_budget.broker, "police")
    found = client.post(
        LOOKUPS,
        json={"purpose": "violence-reduction", "identifiers": {"nhs_number": "9434765919"}},
        headers=police,
    )
    assert found.status_code == 200, found.text
    assert found.json()["matched"] is False


def test_concurrent_spends_never_exceed_the_budget(runtime_with_budget: Runtime) -> None:
    units = runtime_with_budget.broker._units  # the storage port itself, under contention
    results: list[int | None] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def spend() -> None:
        start.wait()
        with units() as uow:
            used = uow.lookup_budget.spend(
                AGREEMENT, agency="police", purpose="p", day="2026-11-26", allowed=5
            )
            uow.commit()
        with lock:
            results.append(used)

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r for r in results if r is not None) == [1, 2, 3, 4, 5]
    assert results.count(None) == 3
    with units() as uow:
        used = uow.lookup_budget.used(AGREEMENT, agency="police", purpose="p", day="2026-11-26")
    assert used == 5
