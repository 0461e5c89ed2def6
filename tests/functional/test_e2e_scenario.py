"""End to end: a real server process, agency clients from the CLI, the demo scenario over HTTP."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import psycopg

from adapters.csv import read_extract
from broker.scenario import DATASETS, PERMITTED, Callers, HeaderSource, run_scenario
from broker.token_client import TokenClient, load_credential
from tests.auth_helpers import bearer_token, server_agency_credential, server_person_headers
from tests.functional.conftest import Server, run_broker
from tests.helpers import AGREEMENT, idempotent, school_record


def _fixed(headers: dict[str, str]) -> HeaderSource:
    return lambda: headers


def _clients(server: Server, cwd: Path) -> dict[str, TokenClient]:
    """A client per agency registered with ``broker agencies add``, fetching its own tokens."""
    return {
        agency: TokenClient(
            load_credential(server_agency_credential(server.env, cwd, agency)), server.base_url
        )
        for agency in DATASETS
    }


def test_demo_scenario_over_real_http(server: Server, tmp_path: Path) -> None:
    extracts = tmp_path / "extracts"
    made = run_broker("synth", "--out", str(extracts), "--seed", "1", env=server.env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    clients = _clients(server, tmp_path)
    people = {
        (role, agency): server_person_headers(server.base_url, server.env, tmp_path, role, agency)
        for role, agency in (("dpo", "school"), ("dpo", "social-care"), ("ig_lead", "social-care"))
    }
    callers = Callers(
        systems={agency: client.headers for agency, client in clients.items()},
        dpos={agency: _fixed(people[("dpo", agency)]) for agency in ("school", "social-care")},
        ig_lead=_fixed(people[("ig_lead", "social-care")]),
    )
    report = run_scenario(server.base_url, callers, extracts)

    failed = [f"{c.name}: {c.note}" for c in report.checks if not c.ok]
    assert failed == []
    assert all(report.records[agency] > 0 for agency in DATASETS)
    assert report.linked > 0
    # What each recipient received: only fields of its release, and some of them.
    for recipient, purpose in PERMITTED:
        bodies = report.received[recipient]
        assert bodies, f"{recipient} received nothing"
        permitted = PERMITTED[(recipient, purpose)]
        released = {
            (h["dataset"], name)
            for body in bodies
            for h in body["holdings"]
            for r in h["records"]
            for name in r["fields"]
        }
        assert released
        assert all(name in permitted.get(dataset, set()) for dataset, name in released)
    # What was refused, and why.
    assert report.denials == {
        "batch_invalid": 1,
        "field_not_permitted": 1,
        "agency_not_recipient": 1,
        "purpose_unknown": 1,
        "no_release_for_recipient": 1,
        "agency_not_provider": 1,
        "identifiers_insufficient": 1,
        "unauthenticated": 1,
        "agreement_not_active": 1,
    }
    # A suspension stopped sharing at once and the lead party lifted it; a lookup's
    # receipt verified against a checkpoint signed by the broker's log key.
    assert report.governance["suspended and resumed"] == "yes"
    assert "(verified)" in report.governance["receipt"]
    assert int(report.governance["releases found by the IG lead"]) >= 3

    verified = run_broker("audit", "verify", env=server.env, cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert "audit verified" in verified.stdout

    # Nothing personal, and no key, reached the server's log.
    log = server.log.read_text().lower()
    assert "get /ready" in log or "post /v1" in log  # the log was written at all
    extract = read_extract(extracts / "social-care.csv").rows
    for row in extract[:50]:
        for name in ("given_name", "family_name", "postcode"):
            value = row.get(name, "").strip().lower()
            if len(value) >= 3:  # a held value long enough not to occur by chance
                assert value not in log
    tokens = [client.token() for client in clients.values()]
    tokens += [bearer_token(headers) for headers in people.values()]
    assert all(token.lower() not in log for token in tokens)
    assert report.received["social-care"][0]["pseudonym"].lower() not in log


def test_openapi_is_served(server: Server) -> None:
    schema = httpx.get(f"{server.base_url}/openapi.json").json()
    assert schema["info"]["title"] == "Accord broker API"


def test_audit_verify_names_the_first_changed_entry(server: Server, tmp_path: Path) -> None:
    headers = _clients(server, tmp_path)["school"].headers()
    for index in range(3):
        response = httpx.post(
            f"{server.base_url}/v1/agreements/{AGREEMENT}/datasets/school-attendance/batches",
            json={"records": [school_record(f"SCH-{index}", given=f"Pupil{'x' * index}")]},
            headers=idempotent(headers),
        )
        assert response.status_code == 201, response.text
    assert run_broker("audit", "verify", env=server.env, cwd=tmp_path).returncode == 0

    url = server.env["BROKER_DATABASE_URL"]
    statement = "UPDATE audit_entry SET detail = '{\"records\":0}' WHERE seq = 7"
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            connection.execute(statement)
    else:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(statement)

    broken = run_broker("audit", "verify", env=server.env, cwd=tmp_path)
    assert broken.returncode == 1
    assert broken.stderr.strip().splitlines() == [
        "broker: error: audit entry 7 has been changed since it was written"
    ]
    assert "Traceback" not in broken.stderr
