"""Figures 1 and 2: service-level batch ingest throughput, SQLite and PostgreSQL.

The broker side calls ``Broker.ingest_batch`` with batches of 1,000 records:
validation, normalisation, tokens, linkage lookups, sealing, the ORM inserts
and two audit entries, one transaction per batch. The bare side does the raw
work of ``bench.bare`` and inserts one row per record, also one transaction
per batch (``executemany`` on SQLite, ``COPY`` on PostgreSQL).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from bench.bare import COPY, INSERT, POSTGRES_SCHEMA, SQLITE_SCHEMA, BareKit, open_sqlite
from bench.workload import (
    AGREEMENT,
    BATCH_SIZE,
    DATASET,
    PROVIDER,
    Row,
    batches,
    format_rate,
    rate,
    start_broker,
    throughput_ratio,
)
from broker.bootstrap import Runtime
from broker.db.uow import SqlUnitOfWorkFactory
from broker.keystore import DATA, KeySlot
from broker.linkage import record_tokens
from broker.normalise import normalise_date, normalise_name, normalise_postcode, normalise_upn

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class FilledStore:
    """The SQLite stores figure 1 filled, kept open for the lookup figure."""

    runtime: Runtime
    bare_path: Path
    kit: BareKit
    records: Sequence[dict[str, str]]


@dataclass
class IngestOutcome:
    """Figure 1's row, and the stores it filled."""

    rows: list[Row]
    store: FilledStore


def _notes(records: int, broker_batches: Sequence[float], extra: str = "") -> str:
    """Records and batches, and how the broker's rate moved from its first batch to its last."""
    count = len(broker_batches)
    trend = (
        f"; broker batch 1 → {count}: {rate(BATCH_SIZE, broker_batches[0]) / 1e3:.1f} → "
        f"{rate(BATCH_SIZE, broker_batches[-1]) / 1e3:.1f} k rec/s"
        if count > 1
        else ""
    )
    return f"{records:,} records in {count} batches of {BATCH_SIZE:,}{trend}{extra}"


def broker_ingest(runtime: Runtime, records: Sequence[dict[str, str]]) -> list[float]:
    """Seconds the broker takes for each batch of ``records``."""
    broker = runtime.broker
    seconds: list[float] = []
    for batch in batches(records):
        started = time.perf_counter()
        broker.ingest_batch(
            agency=PROVIDER, agreement_id=AGREEMENT, dataset_id=DATASET, records=batch
        )
        seconds.append(time.perf_counter() - started)
    return seconds


def bare_kit(runtime: Runtime) -> BareKit:
    """A bare loader holding the same linkage and data keys as the broker."""
    store = runtime.broker._keystore  # the bench alone reaches in: it must hold the same keys
    with SqlUnitOfWorkFactory(runtime.engine)() as uow:
        linkage = store.linkage(uow.keys, AGREEMENT)
        data = store.active(uow.keys, KeySlot(DATA, AGREEMENT))
    return BareKit(linkage.key, data.key)


def check_same_tokens(kit: BareKit, record: dict[str, str]) -> None:
    """Untimed: the bare tokens must be the broker's, or the comparison means nothing."""
    _, upn_token, ndp_token, _ = kit.row(record)
    broker_tokens = record_tokens(
        kit.linkage_key,
        {
            "given_name": normalise_name(record["given_name"]),
            "family_name": normalise_name(record["family_name"]),
            "date_of_birth": normalise_date(record["date_of_birth"]),
            "postcode": normalise_postcode(record["postcode"]),
            "upn": normalise_upn(record["upn"]),
        },
        ("upn", "name_dob_postcode"),  # the two the bare loader makes
    )
    if broker_tokens != {"upn": upn_token, "name_dob_postcode": ndp_token}:
        raise RuntimeError(
            "bare tokens differ from the broker's; the baseline is not like for like"
        )


def bare_sqlite_ingest(path: Path, kit: BareKit, records: Sequence[dict[str, str]]) -> float:
    """Seconds the bare loader takes: normalise, tokenise, seal, executemany per batch."""
    connection = open_sqlite(path)
    try:
        connection.executescript(SQLITE_SCHEMA)
        started = time.perf_counter()
        for batch in batches(records):
            rows = [kit.row(record) for record in batch]
            connection.execute("BEGIN")
            connection.executemany(INSERT, rows)
            connection.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        connection.close()


def run_sqlite(folder: Path, records: Sequence[dict[str, str]]) -> IngestOutcome:
    """Figure 1. The stores stay open in ``folder`` for figure 4; the caller disposes of them."""
    runtime = start_broker(folder, f"sqlite:///{folder / 'broker.db'}")
    kit = bare_kit(runtime)
    check_same_tokens(kit, records[0])
    bare_path = folder / "bare.db"
    bare_seconds = bare_sqlite_ingest(bare_path, kit, records)
    broker_batches = broker_ingest(runtime, records)
    broker_rate = rate(len(records), sum(broker_batches))
    bare_rate = rate(len(records), bare_seconds)
    row = Row(
        figure="1 ingest",
        backend="SQLite (temp file)",
        broker=format_rate(broker_rate),
        bare=format_rate(bare_rate),
        ratio=throughput_ratio(broker_rate, bare_rate),
        notes=_notes(len(records), broker_batches),
    )
    return IngestOutcome(rows=[row], store=FilledStore(runtime, bare_path, kit, records))


# -- PostgreSQL ------------------------------------------------------------------


def postgres_url() -> str:
    """The server the figure uses: BROKER_TEST_POSTGRES_URL, as for the PostgreSQL tests."""
    return os.environ.get("BROKER_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _skipped(why: str) -> Row:
    return Row("2 ingest", "PostgreSQL", f"skipped ({why})", "", "", "")


def bare_postgres_ingest(url: str, kit: BareKit, records: Sequence[dict[str, str]]) -> float:
    """Seconds the bare loader takes on PostgreSQL: normalise, tokenise, seal, COPY per batch."""
    import psycopg  # noqa: PLC0415 - an optional dependency, imported only when a server is used

    with psycopg.connect(url) as connection:
        connection.execute(POSTGRES_SCHEMA)
        connection.commit()
        started = time.perf_counter()
        for batch in batches(records):
            rows = [kit.row(record) for record in batch]
            with connection.transaction(), connection.cursor() as cursor, cursor.copy(COPY) as copy:
                for row in rows:
                    copy.write_row(row)
        return time.perf_counter() - started


def run_postgres(records: Sequence[dict[str, str]], folder: Path) -> list[Row]:
    """Figure 2, on a database of its own that is dropped afterwards; skipped with no server."""
    try:
        import psycopg  # noqa: PLC0415 - optional: the figure is skipped without it
    except ImportError:
        return [_skipped("psycopg not installed")]
    admin_url = postgres_url()
    try:
        with psycopg.connect(admin_url, connect_timeout=3, autocommit=True) as admin:
            version = admin.info.server_version // 10000
            name = f"accord_bench_{secrets.token_hex(6)}"
            admin.execute(f'CREATE DATABASE "{name}"')  # name is ours: letters and hex only
    except psycopg.Error:
        return [_skipped("no server")]
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        runtime = start_broker(folder, url)
        try:
            kit = bare_kit(runtime)
            bare_seconds = bare_postgres_ingest(url, kit, records)
            broker_batches = broker_ingest(runtime, records)
        finally:
            runtime.engine.dispose()
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    broker_rate = rate(len(records), sum(broker_batches))
    bare_rate = rate(len(records), bare_seconds)
    return [
        Row(
            figure="2 ingest",
            backend=f"PostgreSQL {version} (local)",
            broker=format_rate(broker_rate),
            bare=format_rate(bare_rate),
            ratio=throughput_ratio(broker_rate, bare_rate),
            notes=_notes(len(records), broker_batches, "; bare uses COPY"),
        )
    ]
