"""One engine factory for SQLite (WAL, serialised writers) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from broker.errors import ConfigError


def database_kind(url: str) -> str:
    """``"sqlite"`` or ``"postgresql"``."""
    return make_url(url).get_backend_name()


def create_database_engine(url: str) -> Engine:
    """An engine for ``url``; creates the SQLite file's folder if needed.

    SQLite transactions begin with ``BEGIN IMMEDIATE`` so that two writers never
    deadlock upgrading a read lock, and the audit log stays linear.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=True
        )
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        # Server-side prepared statements switch to generic plans after five runs, and a
        # generic plan cannot use the index for a long "token IN (...)" list.
        return create_engine(
            parsed,
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=10,
            connect_args={"prepare_threshold": None},
        )
    raise ConfigError("BROKER_DATABASE_URL must name a sqlite or postgresql database")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so that "begin" below is the only BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Overwrite freed content, so a destroyed wrapped key does not linger in free pages.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
