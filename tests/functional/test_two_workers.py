"""Two real server processes on one PostgreSQL database run each background job once.

Each server runs ``broker.startup.run_server`` (see ``job_server``) with its jobs due
every half second or so and polled every 0.2 s, while agencies ingest and look
up over HTTP through both. Afterwards the ``job_run`` table must show every
scheduled run of every job exactly once, none overlapping, spread over both
workers, and the audit log must verify.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from broker.db.engine import create_database_engine
from broker.db.handles import AUDIT_HEAD, CHECKPOINT
from broker.job_ports import JobRunRow
from broker.jobs import CHECKPOINT as CHECKPOINT_JOB
from broker.jobs import RETENTION
from broker.token_client import TokenClient, load_credential
from tests.auth_helpers import server_agency_credential
from tests.conftest import _fresh_postgres, require_postgres
from tests.functional.conftest import broker_env, free_port, run_broker
from tests.helpers import AGREEMENT, IDENTIFIERS, ed_record, idempotent, school_record
from tests.job_checks import assert_each_scheduled_run_once, recorded_runs

ROOT = Path(__file__).resolve().parents[2]
CLOSED = "postgresql://postgres@127.0.0.1:1/x"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """One new PostgreSQL database for this test."""
    require_postgres()
    yield from _fresh_postgres()


def _job_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = broker_env(database_url, tmp_path)
    # A quiet log's entries wait a second for the checkpoint job to sign them.
    env["BROKER_CHECKPOINT_EVERY_SECONDS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _start(env: dict[str, str], tmp_path: Path, name: str, *args: str) -> subprocess.Popen[str]:
    with (tmp_path / f"{name}.log").open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.functional.job_server", *args],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


def _serve(env: dict[str, str], tmp_path: Path, name: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    return _start(env, tmp_path, name, "--port", str(port)), f"http://127.0.0.1:{port}"


def _wait_ready(servers: list[tuple[subprocess.Popen[str], str]], tmp_path: Path) -> None:
    deadline = time.monotonic() + 60
    waiting = list(servers)
    while waiting:
        process, base_url = waiting[0]
        try:
            if httpx.get(f"{base_url}/ready", timeout=2).status_code == 200:
                waiting.pop(0)
                continue
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            _stop([p for p, _ in servers])
            logs = "\n".join(p.read_text()[-1500:] for p in tmp_path.glob("*.log"))
            pytest.fail(f"server did not start: {logs}")
        time.sleep(0.1)


def _stop(processes: list[subprocess.Popen[str]]) -> list[int | None]:
    for process in processes:
        process.terminate()
    codes: list[int | None] = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=15))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(None)
    return codes


def _credentials(env: dict[str, str], cwd: Path, *agencies: str) -> dict[str, Path]:
    """Each agency's client, registered with ``broker agencies add`` before the workers start."""
    return {agency: server_agency_credential(env, cwd, agency) for agency in agencies}


def _keys(credentials: dict[str, Path], base_url: str) -> dict[str, dict[str, str]]:
    """Headers with a token from one worker; the other accepts it too (one signing key)."""
    return {
        agency: TokenClient(load_credential(path), base_url).headers()
        for agency, path in credentials.items()
    }


def _traffic(base_urls: list[str], keys: dict[str, dict[str, str]], rounds: int) -> int:
    """Ingest and look up through every server in turn; how many requests were answered."""
    answered = 0
    batches = f"/v1/agreements/{AGREEMENT}/datasets/{{}}/batches"
    for index in range(rounds):
        base = base_urls[index % len(base_urls)]
        school = httpx.post(
            base + batches.format("school-attendance"),
            json={"records": [school_record(f"SCH-{index}", given=f"Pupil{'x' * index}")]},
            headers=idempotent(keys["school"]),
            timeout=30,
        )
        ed = httpx.post(
            base + batches.format("ed-attendances"),
            json={"records": [ed_record(f"ED-{index}")]},
            headers=idempotent(keys["ed"]),
            timeout=30,
        )
        lookup = httpx.post(
            f"{base}/v1/agreements/{AGREEMENT}/lookups",
            json={"purpose": "safeguarding-triage", "identifiers": IDENTIFIERS},
            headers=keys["social-care"],
            timeout=30,
        )
        assert (school.status_code, ed.status_code) == (201, 201), school.text + ed.text
        assert lookup.status_code == 200, lookup.text
        assert lookup.json()["matched"]
        answered += 3
    return answered


def _checkpoint_and_head(database_url: str) -> tuple[int, int]:
    engine = create_database_engine(database_url)
    try:
        with engine.connect() as connection:
            signed = connection.execute(select(func.max(CHECKPOINT.c.size))).scalar_one()
            head = connection.execute(select(AUDIT_HEAD.c.size)).scalar_one()
    finally:
        engine.dispose()
    return int(signed), int(head)


def _job_runs(database_url: str) -> tuple[list[JobRunRow], dict[str, list[JobRunRow]]]:
    engine = create_database_engine(database_url)
    try:
        runs, schedule = recorded_runs(engine)
    finally:
        engine.dispose()
    return runs, assert_each_scheduled_run_once(runs, schedule)


@pytest.mark.postgres
@pytest.mark.e2e
def test_two_workers_run_each_scheduled_job_exactly_once(postgres_url: str, tmp_path: Path) -> None:
    env = _job_env(postgres_url, tmp_path)
    # The migration runs once before the workers start, as the migration Job does.
    upgraded = run_broker("db", "upgrade", env=env, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    credentials = _credentials(env, tmp_path, "school", "ed", "social-care")

    servers = [_serve(env, tmp_path, "worker-a"), _serve(env, tmp_path, "worker-b")]
    _wait_ready(servers, tmp_path)
    keys = _keys(credentials, servers[0][1])
    started = time.monotonic()
    try:
        assert _traffic([url for _, url in servers], keys, rounds=8) == 24
        # Jobs keep running for a while after the traffic, so the quiet log's last
        # entries wait the checkpoint interval and are signed by the job.
        time.sleep(max(3.0, 6.0 - (time.monotonic() - started)))
    finally:
        codes = _stop([process for process, _ in servers])
    # Uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
    assert set(codes) <= {0, -15}

    runs, chains = _job_runs(postgres_url)
    assert len(chains[CHECKPOINT_JOB]) >= 4
    assert len(chains[RETENTION]) >= 3
    workers = {run.worker for run in runs}
    pids = {str(process.pid) for process, _ in servers}
    assert {worker.split(":")[1] for worker in workers} == pids, "one worker never ran a job"
    signed, head = _checkpoint_and_head(postgres_url)
    assert signed == head  # the checkpoint job signed the quiet log's last entries
    verified = run_broker("audit", "verify", env=env, cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    for log in tmp_path.glob("worker-*.log"):
        text = log.read_text()
        assert "Application shutdown complete" in text
        assert "could not run" not in text
        assert "failed:" not in text


@pytest.mark.e2e
def test_one_sqlite_process_runs_the_same_jobs(tmp_path: Path) -> None:
    env = _job_env(f"sqlite:///{tmp_path / 'accord.db'}", tmp_path)
    credentials = _credentials(env, tmp_path, "school", "ed", "social-care")
    servers = [_serve(env, tmp_path, "worker")]
    _wait_ready(servers, tmp_path)
    keys = _keys(credentials, servers[0][1])
    started = time.monotonic()
    try:
        assert _traffic([servers[0][1]], keys, rounds=4) == 12
        time.sleep(max(3.0, 5.0 - (time.monotonic() - started)))
    finally:
        codes = _stop([servers[0][0]])
    assert codes[0] in (0, -15)

    runs, chains = _job_runs(env["BROKER_DATABASE_URL"])
    assert len(chains[CHECKPOINT_JOB]) >= 4
    assert len(chains[RETENTION]) >= 3
    assert len({run.worker for run in runs}) == 1
    signed, head = _checkpoint_and_head(env["BROKER_DATABASE_URL"])
    assert signed == head
    verified = run_broker("audit", "verify", env=env, cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr


@pytest.mark.e2e
def test_an_unreachable_database_fails_a_command_at_once_and_a_server_after_its_wait(
    tmp_path: Path,
) -> None:
    env = _job_env(CLOSED, tmp_path)
    started = time.monotonic()
    command = run_broker("audit", "verify", env=env, cwd=tmp_path)
    assert command.returncode == 1
    assert time.monotonic() - started < 15  # no waiting: start-up of the CLI dominates
    assert command.stderr.count("\n") == 1
    assert command.stderr.startswith("broker: error: the database could not be reached")

    started = time.monotonic()
    server = _start(env, tmp_path, "server", "--port", str(free_port()), "--max-wait", "1.5")
    assert server.wait(timeout=30) == 1
    waited = time.monotonic() - started
    assert waited >= 1.5
    line = (tmp_path / "server.log").read_text()
    assert line.count("\n") == 1
    assert line.startswith("broker: error: the database did not answer after ")
    assert "check BROKER_DATABASE_URL" in line
