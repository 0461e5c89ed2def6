"""The schema comes only from Alembic migrations, and they match the table definitions."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

import broker.db.tables  # noqa: F401
from broker.bootstrap import prepare_database
from broker.db.engine import create_database_engine
from broker.db.migrate import current_revision, head_revision, upgrade
from broker.errors import ConfigError


def test_upgrade_from_empty_reaches_head_and_matches_the_models(database_url: str) -> None:
    engine = create_database_engine(database_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
        assert diff == []
        upgrade(engine)  # a second upgrade is a no-op
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_a_database_newer_than_the_code_is_refused(database_url: str) -> None:
    engine = create_database_engine(database_url)
    try:
        upgrade(engine)
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(ConfigError, match="newer"):
            prepare_database(engine)
    finally:
        engine.dispose()
