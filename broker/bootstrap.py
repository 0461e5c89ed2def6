"""Wiring: settings in, a ready Broker out. Only this module and the app factory join the layers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from agreements.registry import load_directory
from broker.clock import Clock, SystemClock
from broker.config import Settings, default_agreements_dir
from broker.db.engine import create_database_engine
from broker.db.migrate import current_revision, head_revision, known_revisions, upgrade
from broker.db.uow import SqlUnitOfWorkFactory
from broker.errors import ConfigError, KeyFileError, StorageError
from broker.identity import identity_config
from broker.keys import (
    MASTER_KEY_VARIABLE,
    KeyRing,
    master_key_from_environment,
    open_or_create_key_file,
)
from broker.service import Broker, Limits, LogSchedule


@dataclass
class Runtime:
    """What a running broker holds: the service and the engine under it."""

    broker: Broker
    engine: Engine
    settings: Settings


def prepare_database(engine: Engine) -> None:
    """Upgrade the schema to this code's head; refuse a database newer than the code."""
    try:
        current = current_revision(engine)
        if current is not None and current not in known_revisions():
            raise ConfigError(
                "the database schema is newer than this version of the broker; upgrade the broker"
            )
        if current != head_revision():
            upgrade(engine)
    except SQLAlchemyError as exc:
        raise StorageError(
            "the database could not be reached or prepared; check BROKER_DATABASE_URL"
        ) from exc


def _check_key_file_private(path: Path) -> None:
    """Refuse a key file that other users of the machine could read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    except OSError:
        raise KeyFileError("key file could not be read (check BROKER_KEY_FILE)") from None
    if mode & 0o077:
        raise KeyFileError("key file is readable by other users; restrict it with chmod 600")


def _master_key(settings: Settings, units: SqlUnitOfWorkFactory, clock: Clock) -> KeyRing:
    """The master key from the configured provider; a new key file only beside an empty database."""
    if settings.key_provider == "env":
        if settings.master_key is None:
            raise KeyFileError(f"BROKER_KEY_PROVIDER is env but {MASTER_KEY_VARIABLE} is not set")
        return master_key_from_environment(settings.master_key.get_secret_value())
    if not settings.key_file.exists():
        # Never create a new key beside a database that already holds data.
        with units() as uow:
            if uow.meta.key_check() is not None:
                raise ConfigError(
                    "BROKER_KEY_FILE does not exist but the database was written with a key; "
                    "restore the key file"
                )
    return open_or_create_key_file(settings.key_file, at=clock.now())


def build_runtime(
    settings: Settings, *, clock: Clock | None = None, install_agreements: bool = True
) -> Runtime:
    """Open and migrate the database, load agreements and keys, and check they belong together.

    ``install_agreements=False`` skips the agreements folder, for operator
    commands (such as registering approver keys) that must work before the
    folder's agreements can be installed.
    """
    clock = clock or SystemClock()
    if settings.environment == "production" and (
        settings.agreements_dir.resolve() == default_agreements_dir().resolve()
    ):
        raise ConfigError(
            "BROKER_AGREEMENTS_DIR points at the shipped example agreements, which are for "
            "demonstration only; set it to your partnership's signed agreements"
        )
    if settings.key_provider == "file":
        _check_key_file_private(settings.key_file)
    files = load_directory(settings.agreements_dir) if install_agreements else []
    engine = create_database_engine(settings.database_url)
    try:
        prepare_database(engine)
        units = SqlUnitOfWorkFactory(engine)
        master = _master_key(settings, units, clock)
        broker = Broker(
            keys=master,
            units=units,
            clock=clock,
            limits=Limits(
                max_batch_records=settings.max_batch_records,
                max_field_length=settings.max_field_length,
            ),
            log=LogSchedule(
                origin=settings.log_origin,
                every_entries=settings.checkpoint_every_entries,
                every_seconds=settings.checkpoint_every_seconds,
            ),
            identity=identity_config(settings),
        )
        if install_agreements:
            broker.agreements.install_files(
                files, require_registered_keys=settings.environment == "production"
            )
        broker.ensure_agreement_keys()
    except BaseException:
        engine.dispose()
        raise
    return Runtime(broker=broker, engine=engine, settings=settings)
