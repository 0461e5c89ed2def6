"""Readiness: 503 while migrations are pending or the database does not answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from broker.bootstrap import Runtime
from broker.db.engine import create_database_engine
from broker.db.migrate import current_revision, head_revision
from broker.startup import SchemaWatch
from broker.web.app import create_app


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def _stamp(runtime: Runtime, revision: str) -> None:
    with runtime.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})


def test_ready_at_the_code_s_head(client: TestClient, runtime: Runtime) -> None:
    assert current_revision(runtime.engine) == head_revision()
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


def test_not_ready_while_migrations_are_pending(client: TestClient, runtime: Runtime) -> None:
    _stamp(runtime, "0005")
    response = client.get("/ready")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "migrations_pending"
    assert "broker db upgrade" in error["message"]
    _stamp(runtime, head_revision())
    assert client.get("/ready").status_code == 200


def test_still_ready_when_a_newer_version_has_migrated_the_database(
    client: TestClient, runtime: Runtime
) -> None:
    # Additive migrations run before the new workers start; the old ones keep serving.
    _stamp(runtime, "9999")
    assert client.get("/ready").status_code == 200


def test_not_ready_when_the_version_table_is_missing(client: TestClient, runtime: Runtime) -> None:
    with runtime.engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
    # No version table reads as an empty database: every migration is pending.
    assert client.get("/ready").json()["error"]["code"] == "migrations_pending"


def test_not_ready_when_the_database_does_not_answer(client: TestClient) -> None:
    closed = create_database_engine("postgresql://postgres@127.0.0.1:1/x")
    app = client.app
    assert isinstance(app, FastAPI)
    app.state.schema = SchemaWatch(closed)
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "storage_failed"
