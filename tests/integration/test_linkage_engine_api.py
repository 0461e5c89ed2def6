"""The linkage engine over HTTP: encodings on arrival, the possible-match queue, quality."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from broker.bootstrap import Runtime, build_runtime
from broker.clock import FixedClock
from broker.config import Settings
from broker.db.handles import AUDIT, LINK_BLOCK, RECORD, RECORD_ENCODING
from broker.web.app import create_app
from tests.auth_helpers import agency_headers, person_headers
from tests.helpers import AGREEMENT, IDENTIFIERS, ed_record, idempotent, school_record

SCHOOL = f"/v1/agreements/{AGREEMENT}/datasets/school-attendance/batches"
ED = f"/v1/agreements/{AGREEMENT}/datasets/ed-attendances/batches"
QUEUE = f"/v1/agreements/{AGREEMENT}/possible-matches"
QUALITY = f"/v1/agreements/{AGREEMENT}/linkage/quality"
LOOKUPS = f"/v1/agreements/{AGREEMENT}/lookups"


@pytest.fixture
def runtime(settings: Settings, clock: FixedClock) -> Iterator[Runtime]:
    built = build_runtime(settings, clock=clock)
    yield built
    built.engine.dispose()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime)) as test_client:
        yield test_client


@pytest.fixture
def keys(runtime: Runtime) -> dict[str, dict[str, str]]:
    return {a: agency_headers(runtime.broker, a) for a in ("school", "police", "ed", "social-care")}


def _post(client: TestClient, url: str, headers: dict[str, str], records: list[Any]) -> None:
    response = client.post(url, json={"records": records}, headers=idempotent(headers))
    assert response.status_code == 201, response.text


def _holders(client: TestClient, keys: dict[str, dict[str, str]]) -> set[str]:
    found = client.post(
        LOOKUPS,
        json={"purpose": "safeguarding-triage", "identifiers": IDENTIFIERS},
        headers=keys["social-care"],
    )
    assert found.status_code == 200, found.text
    return {h["agency"] for h in found.json()["holdings"]}


def _queued(client: TestClient, keys: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Amira at school; at ED a typo in her name and a neighbouring postcode: queued."""
    _post(client, SCHOOL, keys["school"], [school_record("SCH-1")])
    _post(client, ED, keys["ed"], [ed_record("ED-1", given="Amria", postcode="NS1 4AQ")])
    response = client.get(QUEUE, headers=keys["school"])
    assert response.status_code == 200, response.text
    pairs = response.json()["pairs"]
    assert len(pairs) == 1, pairs
    return dict(pairs[0])


def test_each_record_has_its_encodings_stored_and_indexed(
    client: TestClient, keys: dict[str, dict[str, str]], runtime: Runtime
) -> None:
    _post(client, SCHOOL, keys["school"], [school_record("SCH-1"), school_record("SCH-2", "Jo")])
    with runtime.engine.connect() as c:
        records = c.execute(select(func.count()).select_from(RECORD)).scalar_one()
        encodings = c.execute(select(RECORD_ENCODING.c.tokens, RECORD_ENCODING.c.blooms)).all()
        blocks = c.execute(select(func.count()).select_from(LINK_BLOCK)).scalar_one()
    assert records == 2
    assert len(encodings) == 2
    assert blocks > 2
    stored = " ".join(t + b for t, b in encodings).lower()
    for value in ("amira", "okafor", "2011-03-14", "ns1"):
        assert value not in stored


def test_a_holder_sees_levels_and_only_its_own_reference(
    client: TestClient, keys: dict[str, dict[str, str]]
) -> None:
    pair = _queued(client, keys)
    assert pair["your_record"] == "SCH-1"
    assert pair["your_other_record"] is None
    assert pair["fields"]["family_name"] == "agree"
    assert pair["fields"]["date_of_birth"] == "agree"
    assert pair["fields"]["postcode"] == "nearly_agree"
    assert pair["fields"]["given_name"] == "disagree"
    assert "ED-1" not in str(pair)
    assert "kafor" not in str(pair)
    ed_view = client.get(QUEUE, headers=keys["ed"]).json()["pairs"]
    assert [p["your_record"] for p in ed_view] == ["ED-1"]
    # The police hold neither side: they see nothing and cannot decide.
    assert client.get(QUEUE, headers=keys["police"]).json()["pairs"] == []
    response = client.post(
        f"{QUEUE}/{pair['pair_id']}",
        json={"decision": "same", "reason": "checked"},
        headers=keys["police"],
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_linked_only_when_both_holders_say_same(
    client: TestClient, keys: dict[str, dict[str, str]], runtime: Runtime
) -> None:
    pair = _queued(client, keys)
    url = f"{QUEUE}/{pair['pair_id']}"
    assert _holders(client, keys) == {"school"}
    first = client.post(url, json={"decision": "same", "reason": "a"}, headers=keys["school"])
    assert first.status_code == 200, first.text
    assert first.json() == {"pair_id": pair["pair_id"], "state": "open", "merged": False}
    second = client.post(url, json={"decision": "same", "reason": "b"}, headers=keys["ed"])
    assert second.json() == {"pair_id": pair["pair_id"], "state": "same", "merged": True}
    again = client.post(url, json={"decision": "same", "reason": "c"}, headers=keys["ed"])
    assert again.status_code == 409
    assert client.get(QUEUE, headers=keys["school"]).json()["pairs"] == []
    # Merged: a lookup by the school's identifiers now finds the ED record too.
    assert _holders(client, keys) == {"school", "ed"}
    with runtime.engine.connect() as c:
        rows = c.execute(
            select(AUDIT.c.actor, AUDIT.c.detail).where(
                AUDIT.c.detail.like("%possible_match_decision%")
            )
        ).all()
    decisions = [(actor, json.loads(detail)) for actor, detail in rows]
    assert [(a, d["decision"], d["state"], d["merged"]) for a, d in decisions] == [
        ("school", "same", "open", False),
        ("ed", "same", "same", True),
    ]
    # The holder's free-text reason never reaches the log.
    assert all(d["reason_length"] == 1 for _, d in decisions)


def test_either_holder_saying_different_closes_the_pair_unlinked(
    client: TestClient, keys: dict[str, dict[str, str]]
) -> None:
    pair = _queued(client, keys)
    url = f"{QUEUE}/{pair['pair_id']}"
    response = client.post(url, json={"decision": "different", "reason": "x"}, headers=keys["ed"])
    assert response.json() == {"pair_id": pair["pair_id"], "state": "different", "merged": False}
    bad = client.post(url, json={"decision": "maybe", "reason": "x"}, headers=keys["school"])
    assert bad.status_code == 422


def test_quality_for_the_dpo_and_not_for_a_system(
    client: TestClient, keys: dict[str, dict[str, str]], runtime: Runtime
) -> None:
    _queued(client, keys)
    _post(client, SCHOOL, keys["school"], [school_record("SCH-9", "Zed", "Quill")])
    dpo = person_headers(runtime.broker, "dpo", "school")
    response = client.get(QUALITY, headers=dpo)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["records"] == 3
    assert body["queue"] == {"open": 1}
    assert set(body["pairs_per_band"]) == {"match", "possible", "non_match"}
    assert 0.0 <= body["estimated_precision"] <= 1.0
    assert client.get(QUALITY, headers=keys["school"]).status_code == 403


def _refs(pair: dict[str, Any]) -> tuple[str, ...]:
    """The holder's own references in a pair (both, when it holds both sides), in order."""
    return tuple(sorted(r for r in (pair["your_record"], pair["your_other_record"]) if r))


def _queue_after(settings: Settings, clock: FixedClock, name: str, batches: list[Any]) -> set[Any]:
    """The queue, as each holder sees it, after ingesting ``batches`` in order on a fresh broker."""
    url = f"sqlite:///{settings.key_file.parent.parent / name}.db"
    built = build_runtime(settings.model_copy(update={"database_url": url}), clock=clock)
    try:
        with TestClient(create_app(built)) as client:
            keys = {a: agency_headers(built.broker, a) for a in ("school", "ed")}
            _post(client, SCHOOL, keys["school"], [school_record("SCH-1")])
            for batch in batches:
                _post(client, ED, keys["ed"], batch)
            return {
                (agency, _refs(p), tuple(sorted(p["fields"].items())), p["probability"])
                for agency in keys
                for p in client.get(QUEUE, headers=keys[agency]).json()["pairs"]
            }
    finally:
        built.engine.dispose()


def test_a_batch_queues_what_its_records_one_by_one_queue(
    settings: Settings, clock: FixedClock
) -> None:
    records = [
        ed_record("ED-1", given="Amria", postcode="NS1 4AQ"),
        ed_record("ED-2", given="Amria", postcode="NS1 4AB", date_of_birth="2011-04-14"),
        ed_record("ED-3", given="Amira", family="Okafur", postcode="NS1 4AQ"),
        ed_record("ED-4", given="Zed", family="Quill", postcode="NS1 4AQ"),
    ]
    at_once = _queue_after(settings, clock, "at-once", [records])
    one_by_one = _queue_after(settings, clock, "one-by-one", [[r] for r in records])
    assert at_once == one_by_one
    assert len(at_once) >= 2  # both holders see at least the ED-1 pair
    assert not any("ED-4" in refs for _, refs, _, _ in at_once)
    assert ("school", ("SCH-1",)) in {(a, r) for a, r, _, _ in at_once}
