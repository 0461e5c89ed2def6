"""Shared fixtures: a fixed clock, a fresh database per test on SQLite and PostgreSQL.

PostgreSQL tests run whenever a server answers at BROKER_TEST_POSTGRES_URL
(default postgresql://postgres@127.0.0.1:5432/test). Outside CI they are skipped
when none answers; in CI (CI set) a missing server fails the run instead.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from broker.bootstrap import Runtime, build_runtime
from broker.clock import FixedClock
from broker.config import Settings, load_settings

EXAMPLES = Path(__file__).resolve().parent.parent / "agreements" / "examples"
POSTGRES_URL = os.environ.get(
    "BROKER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
_postgres_state: dict[str, bool] = {}


def postgres_available() -> bool:
    """Whether a PostgreSQL server answers (checked once per worker)."""
    if "up" not in _postgres_state:
        try:
            with psycopg.connect(POSTGRES_URL, connect_timeout=3):
                _postgres_state["up"] = True
        except psycopg.Error:
            _postgres_state["up"] = False
    return _postgres_state["up"]


def require_postgres() -> None:
    """Skip (locally) or fail (in CI) when no PostgreSQL server answers."""
    if postgres_available():
        return
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL does not answer at {POSTGRES_URL}; CI never skips these tests")
    pytest.skip("no PostgreSQL server answers; set BROKER_TEST_POSTGRES_URL")


def _fresh_postgres() -> Iterator[str]:
    name = f"accord_test_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: one SQLite file or one new PostgreSQL database per test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'accord.db'}"
        return
    require_postgres()
    yield from _fresh_postgres()


@pytest.fixture
def clock() -> FixedClock:
    """A clock fixed inside the example agreement's life."""
    return FixedClock(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for a broker on the test database with its own key file.

    Only the main example agreement is installed, so that adding examples does
    not change what integration tests count.
    """
    folder = tmp_path / "agreements"
    folder.mkdir()
    shutil.copy(EXAMPLES / "sv-early-identification.yaml", folder)
    return load_settings(
        database_url=database_url,
        key_file=tmp_path / "keys" / "broker.key",
        agreements_dir=folder,
    )


@pytest.fixture
def runtime(settings: Settings, clock: FixedClock) -> Iterator[Runtime]:
    """A prepared broker runtime (database migrated, keys loaded)."""
    built = build_runtime(settings, clock=clock)
    yield built
    built.engine.dispose()
