"""Fixtures for the hostile-input tests: an in-process client and a live server.

The live server is ``broker serve`` in a subprocess (as in the functional
tests) with keys issued through the CLI for each role the tests cover.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from broker.bootstrap import Runtime
from broker.web.app import create_app
from tests.auth_helpers import agency_headers, server_agency_headers, server_person_headers
from tests.functional.conftest import BROKER, broker_env, free_port

# What a refused request must leave untouched.
STORED_TABLES = ("batch", "record", "subject", "match_token", "notification_subscription")


def stored_counts(engine: sa.Engine) -> dict[str, int]:
    """Rows in each table a request could write to."""
    with engine.connect() as connection:
        return {
            # Table names come from the constant above, never from input.
            table: int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608
            for table in STORED_TABLES
        }


@dataclass(frozen=True)
class Caller:
    """An in-process client with a system key for each agency of the example agreement."""

    client: TestClient
    runtime: Runtime
    keys: dict[str, dict[str, str]]

    def counts(self) -> dict[str, int]:
        """Rows stored so far."""
        return stored_counts(self.runtime.engine)


@pytest.fixture
def caller(runtime: Runtime) -> Iterator[Caller]:
    """The app in process on the test database, with a key per agency."""
    keys = {
        agency: agency_headers(runtime.broker, agency)
        for agency in ("school", "police", "social-care", "ed")
    }
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        yield Caller(client, runtime, keys)


def corpus_dir() -> Path:
    """The folder of known-nasty inputs."""
    return Path(__file__).resolve().parent.parent / "corpus"


@dataclass
class LiveServer:
    """``broker serve`` in a subprocess, with the headers of every role the tests cover."""

    base_url: str
    env: dict[str, str]
    cwd: Path
    database_url: str
    process: subprocess.Popen[str]
    log: Path
    roles: dict[str, dict[str, str]] = field(default_factory=dict)
    uncovered: dict[str, str] = field(default_factory=dict)
    signed_in_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fresh_roles(self) -> dict[str, dict[str, str]]:
        """The role headers, signing in again before the access tokens expire (thread-safe)."""
        with self.lock:
            if time.monotonic() - self.signed_in_at > TOKEN_REFRESH_SECONDS:
                _role_headers(self)
            return dict(self.roles)

    def unexpected_errors(self) -> list[str]:
        """The server's log lines about unexpected errors (each names only the type)."""
        return [line for line in self.log.read_text().splitlines() if "unexpected" in line]

    def counts(self) -> dict[str, int]:
        """Rows stored so far, read straight from the server's database."""
        engine = sa.create_engine(self.database_url)
        try:
            return stored_counts(engine)
        finally:
            engine.dispose()


# Access tokens live BROKER_ACCESS_TOKEN_SECONDS (set to 600 below); sign in again well before.
TOKEN_REFRESH_SECONDS = 300.0
# Each role as (role, agency): a provider's and a recipient's system, one person of each kind.
# (Every sign-in costs CLI runs of seconds each; more agencies would add little.)
ROLES: tuple[tuple[str, str | None], ...] = (
    ("system", "school"),
    ("system", "social-care"),
    ("dpo", "police"),
    ("ig_lead", "social-care"),
    ("admin", None),
)


def _role_headers(server: LiveServer) -> None:
    server.signed_in_at = time.monotonic()

    def sign_in(role: str, agency: str | None) -> dict[str, str]:
        if role == "system":
            assert agency is not None
            return server_agency_headers(server.base_url, server.env, server.cwd, agency)
        return server_person_headers(server.base_url, server.env, server.cwd, role, agency)

    # Each sign-in runs the broker CLI once or twice (seconds each); run them side by side.
    with ThreadPoolExecutor(max_workers=4) as pool:
        pending = {
            f"{role}:{agency or 'broker'}": pool.submit(sign_in, role, agency)
            for role, agency in ROLES
        }
    for label, future in pending.items():
        try:
            server.roles[label] = future.result()
        except NotImplementedError as missing:
            # A role whose accounts do not exist yet; the report names it.
            server.uncovered[label] = str(missing)


def start_server(database_url: str, folder: Path, **settings: str) -> LiveServer:
    """Start ``broker serve`` on a free port and wait until it is ready."""
    env = broker_env(database_url, folder)
    env["BROKER_ACCESS_TOKEN_SECONDS"] = "600"
    env.update({f"BROKER_{name.upper()}": value for name, value in settings.items()})
    port = free_port()
    log = folder / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [BROKER, "serve", "--port", str(port)],
            env=env,
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base_url}/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    server = LiveServer(base_url, env, folder, database_url, process, log)
    _role_headers(server)
    return server


def stop_server(server: LiveServer) -> None:
    """Terminate the server process and wait for it."""
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="module")
def live_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server on SQLite for a whole test module (starting one per test costs seconds)."""
    folder = tmp_path_factory.mktemp("live")
    server = start_server(f"sqlite:///{folder / 'accord.db'}", folder)
    try:
        yield server
    finally:
        stop_server(server)
