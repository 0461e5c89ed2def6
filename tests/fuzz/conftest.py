"""Fixtures for the hostile-input tests: an in-process client and a live server.

The live server is ``broker serve`` in a subprocess (as in the functional
tests) with keys issued through the CLI for each role the tests cover.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from broker.bootstrap import Runtime
from broker.web.app import create_app
from tests.auth_helpers import agency_headers

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
