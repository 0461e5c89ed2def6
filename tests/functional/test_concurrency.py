"""Nothing lost under load: 16 agency clients against two server workers on one PostgreSQL database.

Sixteen threads, each an agency client with its own mix from the example
agreement (school, police, social care and ED supply their datasets; social
care, school and police look people up for their purposes), ingest and look up
through two ``broker serve`` processes for a bounded time (20 s by default,
``ACCORD_SOAK_SECONDS`` under ``make soak``). The same young people turn up in
every agency's batches, so linking races across workers. Some batches are sent
again to the other worker with the same ``Idempotency-Key`` and must come back
as replays. Afterwards: every acknowledged record is stored once and nothing
else is, each person has exactly one subject and each token one subject, no
match-token row is duplicated, and the audit log is one linear log that
``broker audit verify`` accepts, holding exactly the entries the acknowledged
operations reported.

PostgreSQL only: two processes writing one SQLite file are serialised by its
single writer lock (``BEGIN IMMEDIATE``), so the races this test looks for
cannot happen there, and SQLite deployments run one worker.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from broker.db.engine import create_database_engine
from broker.db.handles import AUDIT, AUDIT_HEAD, RECORD, SUBJECT, TOKEN
from tests.auth_helpers import server_agency_headers
from tests.conftest import _fresh_postgres, require_postgres
from tests.functional.conftest import BROKER, broker_env, free_port, run_broker
from tests.helpers import AGREEMENT, ed_record, school_record

CLIENTS = 16
# Seconds; a longer wait (a spent daily lookup budget) ends that client's lookups.
MAX_RETRY_AFTER = 5
PEOPLE = 40
BATCH_SIZE = 4
DATASETS = {
    "school": "school-attendance",
    "police": "police-incidents",
    "social-care": "csc-involvement",
    "ed": "ed-attendances",
}
PURPOSES = {"social-care": "safeguarding-triage", "school": "safeguarding-triage"} | {
    "police": "violence-reduction"
}
GIVEN = ["Amira", "Bilal", "Chloe", "Dylan", "Esme", "Farid", "Grace", "Harvey"]
FAMILY = ["Okafor", "Nowak", "Patel", "Quinn", "Reid", "Singh"]


def _seconds() -> float:
    soak = os.environ.get("ACCORD_SOAK")
    return float(os.environ.get("ACCORD_SOAK_SECONDS", "300")) if soak else 20.0


def _person(number: int) -> dict[str, str]:
    """Name and date of birth unique to each person: they link on name, birth date and postcode."""
    return {
        "given_name": GIVEN[number % len(GIVEN)],
        "family_name": FAMILY[number // len(GIVEN)],
        "date_of_birth": (date(2009, 5, 1) + timedelta(days=number)).isoformat(),
        "postcode": "NS1 4AB",
    }


def _record(agency: str, ref: str, person: int) -> dict[str, Any]:
    who = _person(person)
    names = {"given": who["given_name"], "family": who["family_name"]}
    if agency == "school":
        return school_record(ref, **names, date_of_birth=who["date_of_birth"])
    if agency == "ed":
        return ed_record(ref, **names, date_of_birth=who["date_of_birth"])
    fields: dict[str, Any] = (
        {"incident_date": "2026-11-20", "incident_type": "robbery", "role_in_incident": "victim"}
        if agency == "police"
        else {"csc_status": "early_help", "exploitation_screening": "emerging"}
    )
    return {"record_id": ref, **who, **fields}


@dataclass
class Tally:
    """What the clients were told: stored records, audit entries, requests by kind."""

    records: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    audit: set[int] = field(default_factory=set)
    requests: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Credentials:
    """Fresh headers per agency; fetched again when an access token has expired."""

    def __init__(self, env: dict[str, str], cwd: Path, base_url: str) -> None:
        self._env, self._cwd, self._base_url = env, cwd, base_url
        self._held: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def get(self, agency: str, *, fresh: bool = False) -> dict[str, str]:
        with self._lock:
            if fresh or agency not in self._held:
                self._held[agency] = server_agency_headers(
                    self._base_url, self._env, self._cwd, agency
                )
            return self._held[agency]


def _post(
    client: httpx.Client, url: str, who: tuple[str, Credentials, Tally], **kw: Any
) -> httpx.Response:
    """Post as a well-behaved client: new credentials after a 401, wait out a short 429."""
    agency, credentials, tally = who
    extra = kw.pop("headers", {})
    fresh = False
    while True:
        headers = {**credentials.get(agency, fresh=fresh), **extra}
        response = client.post(url, headers=headers, **kw)
        if response.status_code == 401 and not fresh:
            fresh = True
            continue
        wait = int(response.headers.get("Retry-After", "0"))
        if response.status_code != 429 or wait > MAX_RETRY_AFTER:
            return response
        # The agreement's rate limit: the server says when to come back, and nothing was done.
        with tally.lock:
            tally.requests["rate_limited"] += 1
        time.sleep(wait)


def _client(
    number: int,
    urls: list[str],
    credentials: Credentials,
    tally: Tally,
    deadline: float,
) -> None:
    """One agency client: batches of its dataset, lookups if it is a recipient, some retries."""
    agency = list(DATASETS)[number % len(DATASETS)]
    dataset = DATASETS[agency]
    rng = random.Random(number)
    batches = f"/v1/agreements/{AGREEMENT}/datasets/{dataset}/batches"
    sent = 0
    who = (agency, credentials, tally)
    lookups_allowed = True
    with httpx.Client(timeout=60) as client:
        while time.monotonic() < deadline:
            home = urls[(number + sent) % len(urls)]
            people = rng.sample(range(PEOPLE), BATCH_SIZE)
            refs = [f"c{number}-b{sent}-{k}" for k in range(BATCH_SIZE)]
            body = {"records": [_record(agency, r, p) for r, p in zip(refs, people, strict=True)]}
            key = {"Idempotency-Key": f"client-{number}-batch-{sent}"}
            sent += 1
            stored = _post(client, home + batches, who, json=body, headers=key)
            assert stored.status_code == 201, stored.text
            assert "Idempotent-Replayed" not in stored.headers
            result = stored.json()
            with tally.lock:
                tally.requests["batch"] += 1
                tally.audit.update(result["audit_entries"])
                for ref, person in zip(refs, people, strict=True):
                    tally.records[(dataset, ref)] = (result["batch_id"], person)
            if rng.random() < 0.2:
                # A client that lost the answer sends the batch again, here to the other worker.
                other = urls[(number + sent) % len(urls)]
                again = _post(client, other + batches, who, json=body, headers=key)
                assert again.status_code == 201, again.text
                assert again.headers["Idempotent-Replayed"] == "true"
                assert again.json() == result
                with tally.lock:
                    tally.requests["batch_retry"] += 1
            if agency in PURPOSES and lookups_allowed:
                asked = _post(
                    client,
                    f"{home}/v1/agreements/{AGREEMENT}/lookups",
                    who,
                    json={
                        "purpose": PURPOSES[agency],
                        "identifiers": _person(rng.randrange(PEOPLE)),
                    },
                )
                if asked.status_code == 429:
                    lookups_allowed = False
                    continue
                assert asked.status_code == 200, asked.text
                with tally.lock:
                    tally.requests["lookup"] += 1
                    tally.requests["lookup_matched"] += int(asked.json()["matched"])
                    tally.audit.add(asked.json()["audit_entry"])


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """One new PostgreSQL database for this test."""
    require_postgres()
    yield from _fresh_postgres()


def _serve(env: dict[str, str], cwd: Path, name: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    with (cwd / f"{name}.log").open("w") as out:
        process = subprocess.Popen(
            [BROKER, "serve", "--port", str(port)],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return process, f"http://127.0.0.1:{port}"


def _wait_ready(servers: list[tuple[subprocess.Popen[str], str]], cwd: Path) -> None:
    deadline = time.monotonic() + 60
    for process, url in servers:
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                logs = "\n".join(p.read_text()[-1500:] for p in cwd.glob("worker-*.log"))
                pytest.fail(f"server did not start: {logs}")
            time.sleep(0.1)


def _stop(servers: list[tuple[subprocess.Popen[str], str]]) -> None:
    for process, _ in servers:
        process.terminate()
    for process, _ in servers:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def _run(postgres_url: str, tmp_path: Path, seconds: float) -> dict[str, int]:
    env = broker_env(postgres_url, tmp_path)
    upgraded = run_broker("db", "upgrade", env=env, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    # One after the other, as a rolling start does: the first creates the agreements' keys.
    servers = [_serve(env, tmp_path, "worker-a")]
    tally = Tally()
    try:
        _wait_ready(servers, tmp_path)
        servers.append(_serve(env, tmp_path, "worker-b"))
        _wait_ready(servers, tmp_path)
        urls = [url for _, url in servers]
        credentials = Credentials(env, tmp_path, urls[0])
        for agency in DATASETS:
            credentials.get(agency)
        failures: list[BaseException] = []

        def run(number: int, deadline: float) -> None:
            try:
                _client(number, urls, credentials, tally, deadline)
            except BaseException as exc:  # reported below, with the thread's traceback
                failures.append(exc)
                raise

        deadline = time.monotonic() + seconds
        threads = [threading.Thread(target=run, args=(n, deadline)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=seconds + 120)
        assert not any(thread.is_alive() for thread in threads)
        assert failures == []
    finally:
        _stop(servers)
    return _check(postgres_url, env, tmp_path, tally)


def _check(postgres_url: str, env: dict[str, str], cwd: Path, tally: Tally) -> dict[str, int]:
    engine = create_database_engine(postgres_url)
    try:
        with engine.connect() as connection:
            records = connection.execute(
                select(
                    RECORD.c.dataset_id, RECORD.c.source_ref, RECORD.c.batch_id, RECORD.c.subject_id
                )
            ).all()
            subjects = connection.execute(select(func.count()).select_from(SUBJECT)).scalar_one()
            duplicate_tokens = connection.execute(
                select(func.count()).select_from(
                    select(TOKEN.c.record_id, TOKEN.c.match_key, TOKEN.c.token, TOKEN.c.key_version)
                    .group_by(
                        TOKEN.c.record_id, TOKEN.c.match_key, TOKEN.c.token, TOKEN.c.key_version
                    )
                    .having(func.count() > 1)
                    .subquery()
                )
            ).scalar_one()
            split_tokens = connection.execute(
                select(func.count()).select_from(
                    select(TOKEN.c.match_key, TOKEN.c.token)
                    .group_by(TOKEN.c.match_key, TOKEN.c.token)
                    .having(func.count(TOKEN.c.subject_id.distinct()) > 1)
                    .subquery()
                )
            ).scalar_one()
            audit = {
                int(seq): (str(action), str(outcome), reason)
                for seq, action, outcome, reason in connection.execute(
                    select(AUDIT.c.seq, AUDIT.c.action, AUDIT.c.outcome, AUDIT.c.reason_code)
                )
            }
            head = connection.execute(select(AUDIT_HEAD.c.size)).scalar_one()
    finally:
        engine.dispose()
    stored = {(str(d), str(r)): (str(b), str(s)) for d, r, b, s in records}
    assert len(stored) == len(records), "a record is stored twice"
    assert {k: v[0] for k, v in stored.items()} == {k: v[0] for k, v in tally.records.items()}
    subjects_of: dict[int, set[str]] = defaultdict(set)
    for key, (_, person) in tally.records.items():
        subjects_of[person].add(stored[key][1])
    assert {p: s for p, s in subjects_of.items() if len(s) != 1} == {}, "a person was split"
    assert len({next(iter(s)) for s in subjects_of.values()}) == len(subjects_of)
    assert subjects == len(subjects_of), "a subject without records, or a person split"
    assert duplicate_tokens == 0
    assert split_tokens == 0
    # One linear log: sequence numbers 1..head with no gap, holding exactly what clients were told.
    assert sorted(audit) == list(range(1, int(head) + 1))
    client_actions = {"ingest", "link", "lookup"}
    from_clients = {
        seq
        for seq, (action, outcome, _) in audit.items()
        if action in client_actions and outcome == "permitted"
    }
    # Refusals are the rate limiter's (audited as counts per window, not one per 429).
    refusals = Counter(r for _, outcome, r in audit.values() if outcome != "permitted")
    assert set(refusals) <= {"rate_limited"}, refusals
    assert (sum(refusals.values()) > 0) == (tally.requests["rate_limited"] > 0)
    unreported = Counter(audit[seq] for seq in from_clients - tally.audit)
    assert unreported == Counter(), "audit entries no acknowledged operation reported"
    assert from_clients == tally.audit
    verified = run_broker("audit", "verify", env=env, cwd=cwd)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    figures = {
        **dict(tally.requests),
        "records_checked": len(records),
        "subjects": int(subjects),
        "audit_entries_verified": int(head),
        "audit_entries_from_clients": len(tally.audit),
        "audit_entries_rate_limited": sum(refusals.values()),
    }
    print("concurrency figures", figures)
    return figures


@pytest.mark.postgres
@pytest.mark.e2e
def test_sixteen_clients_two_workers_lose_and_duplicate_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    figures = _run(postgres_url, tmp_path, 20.0)
    assert figures["batch"] >= CLIENTS
    assert figures["batch_retry"] >= 1
    assert figures["lookup_matched"] >= 1


@pytest.mark.postgres
@pytest.mark.e2e
@pytest.mark.soak
@pytest.mark.skipif(not os.environ.get("ACCORD_SOAK"), reason="long variant: run `make soak`")
def test_sixteen_clients_soak(postgres_url: str, tmp_path: Path) -> None:
    figures = _run(postgres_url, tmp_path, _seconds())
    assert figures["batch"] >= CLIENTS
