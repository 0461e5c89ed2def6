"""Figures 7 and 8: appending to the audit log, and verifying all of it.

Figure 7 appends entries through the real path: a ``SqlUnitOfWork`` on the runtime's
engine and ``audit.log.append`` with the runtime's ``LogSigner`` (default policy: a signed
checkpoint every 100 entries or 60 seconds), either one entry per transaction or 100 per
transaction, on SQLite and, when a server answers, on a PostgreSQL database made for the
run and dropped afterwards. Each append locks the head, inserts the entry, reads the
right-edge nodes it needs, inserts the nodes it completes, reads the new root's nodes,
updates the head and asks whether a checkpoint is due. The bare side, taking turns with
the broker in rounds, inserts the same rows (same columns, same indexes, values built
beforehand) into a table of their own through the bare driver: no Merkle nodes, no head,
no checkpoints, no SQLAlchemy.

Figure 8 is ``AuditTrail.verify()`` over a log of 1,000,000 entries (50,000 with
``--quick``) in SQLite. The log is filled directly: entries sealed with
``audit.entries.seal_entry``, nodes from ``audit.tree.nodes_for_append`` over a
``MemoryNodeStore``, ``executemany`` into the real schema, the head set, and a checkpoint
signed with the runtime's key after every 100,000 entries and at the end. The bare side
reads the same rows with one ``SELECT`` and hashes each row's bytes once with SHA-256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from audit.entries import seal_entry
from audit.events import AuditEvent, LoggedEntry
from audit.log import append
from audit.tree import MemoryNodeStore, nodes_for_append, root_at
from bench.workload import (
    AGREEMENT,
    BENCH_CLOCK_AT,
    PURPOSE,
    RECIPIENT,
    Row,
    format_rate,
    rate,
    start_broker,
    throughput_ratio,
)
from broker.bootstrap import Runtime
from broker.db.uow import SqlUnitOfWorkFactory

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
APPEND_BATCH = 100
ROUNDS = 5
SINGLE_ENTRIES = 1_000
QUICK_SINGLE_ENTRIES = 200
BATCHED_ENTRIES = 3_000
QUICK_BATCHED_ENTRIES = 500
VERIFY_ENTRIES = 1_000_000
QUICK_VERIFY_ENTRIES = 50_000
CHECKPOINT_EVERY = 100_000
VERIFY_TARGET_SECONDS = 60.0

# The columns SqlAudit.append writes, in this order; the bare table has exactly these.
COLUMNS = (
    "seq",
    "at",
    "actor",
    "action",
    "outcome",
    "reason_code",
    "agreement_id",
    "agreement_version",
    "purpose",
    "dataset_id",
    "request_id",
    "subject_id",
    "detail",
    "leaf_hash",
)
ENTRY_INSERT = (
    f"INSERT INTO audit_entry ({', '.join(COLUMNS)}) "  # noqa: S608 (constants only)
    f"VALUES ({', '.join('?' * len(COLUMNS))})"
)
# The audit_entry table as the migrations leave it, under another name; valid on both
# databases.
BARE_SCHEMA = (
    "CREATE TABLE bare_audit_entry ("
    " seq INTEGER NOT NULL, at VARCHAR(40) NOT NULL, actor VARCHAR(64) NOT NULL,"
    " action VARCHAR(32) NOT NULL, outcome VARCHAR(16) NOT NULL, reason_code VARCHAR(64),"
    " agreement_id VARCHAR(64), agreement_version INTEGER, purpose VARCHAR(64),"
    " dataset_id VARCHAR(64), request_id VARCHAR(64), subject_id VARCHAR(40),"
    " detail TEXT NOT NULL, leaf_hash VARCHAR(64) NOT NULL, PRIMARY KEY (seq))",
    "CREATE INDEX ix_bare_audit_entry_actor ON bare_audit_entry (actor)",
    "CREATE INDEX ix_bare_audit_entry_subject_id ON bare_audit_entry (subject_id)",
)
_FIELDS = ("attendance_pct", "persistent_absence", "excluded", "sen_support")


# -- the entries -----------------------------------------------------------------


def audit_event(number: int) -> AuditEvent:
    """A deterministic event shaped like the broker's own: mostly lookups, some ingests."""
    if number % 10 == 0:
        return AuditEvent(
            actor="school",
            action="ingest",
            outcome="permitted",
            agreement_id=AGREEMENT,
            agreement_version=1,
            dataset_id="school-attendance",
            detail={
                "batch_id": f"bat_{number:032x}",
                "records": 1000,
                "quality_issues": {"postcode_compact": 3},
            },
        )
    matched = number % 4 != 0
    released = [f"school-attendance.{name}" for name in _FIELDS[: 1 + number % 4]]
    return AuditEvent(
        actor=RECIPIENT,
        action="lookup",
        outcome="permitted",
        agreement_id=AGREEMENT,
        agreement_version=1,
        purpose=PURPOSE,
        request_id=f"req_{number:032x}",
        detail={
            "matched": matched,
            "subject": f"sub_{number * 7919:032x}" if matched else None,
            "rule": "name_dob_postcode" if matched else None,
            "released": [{"field": name, "form": "banded"} for name in released] if matched else [],
            "providers": ["school"] if matched else [],
            "warnings": [],
        },
    )


def entry_time(number: int) -> str:
    """Entry times a millisecond apart, as the broker's clock writes them."""
    return (BENCH_CLOCK_AT + timedelta(milliseconds=number)).isoformat(timespec="microseconds")


def entry_row(entry: LoggedEntry) -> tuple[Any, ...]:
    """The values ``SqlAudit.append`` writes for ``entry``, in ``COLUMNS`` order."""
    event = entry.event
    subject = event.detail.get("subject")
    return (
        entry.seq,
        entry.at,
        event.actor,
        event.action,
        event.outcome,
        event.reason_code,
        event.agreement_id,
        event.agreement_version,
        event.purpose,
        event.dataset_id,
        event.request_id,
        subject if isinstance(subject, str) else None,
        json.dumps(event.detail, sort_keys=True, separators=(",", ":")),
        entry.leaf_hash,
    )


def _groups(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


# -- figure 7: appends -------------------------------------------------------------


class BareTable:
    """The bare side of figure 7: one driver connection, one table, explicit transactions."""

    def __init__(self, connection: Any, placeholder: str, begin: str | None) -> None:
        self.connection = connection
        self.begin = begin
        marks = ", ".join([placeholder] * len(COLUMNS))
        columns = ", ".join(COLUMNS)
        self.insert = f"INSERT INTO bare_audit_entry ({columns}) VALUES ({marks})"  # noqa: S608
        for statement in BARE_SCHEMA:
            connection.execute(statement)
        connection.commit()

    def commit_rows(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert ``rows`` in one transaction: one ``execute`` for one row, else executemany."""
        cursor = self.connection.cursor()
        if self.begin is not None:
            cursor.execute(self.begin)
        if len(rows) == 1:
            cursor.execute(self.insert, rows[0])
        else:
            cursor.executemany(self.insert, rows)
        self.connection.commit()


def open_bare_sqlite(path: Path) -> BareTable:
    """A SQLite file with the broker's settings (WAL, synchronous NORMAL, BEGIN IMMEDIATE)."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return BareTable(connection, "?", "BEGIN IMMEDIATE")


@dataclass
class AppendTimes:
    """Seconds each side spent, and how many entries each committed."""

    broker: float = 0.0
    bare: float = 0.0
    entries: int = 0
    checkpoints: int = 0


def time_appends(
    runtime: Runtime, bare: BareTable, entries: int, per_transaction: int, first_bare_seq: int
) -> AppendTimes:
    """``entries`` appends each side, ``per_transaction`` per commit, in ``ROUNDS`` turns."""
    units = SqlUnitOfWorkFactory(runtime.engine)
    signer = runtime.broker.audit.signer
    with units() as uow:
        size_before, _ = uow.audit.head()
        checkpoints_before = len(uow.audit.checkpoints())
    numbers = list(range(entries))
    events = [(audit_event(n), entry_time(n)) for n in numbers]
    # The bare rows are built beforehand, from the same events sealed at the bare positions.
    rows = [entry_row(seal_entry(first_bare_seq + n, at, e)) for n, (e, at) in enumerate(events)]
    transactions = _groups(range(entries), per_transaction)
    times = AppendTimes(entries=entries)
    per_round = -(-len(transactions) // ROUNDS)
    for turn in range(0, len(transactions), per_round):
        chosen = transactions[turn : turn + per_round]
        started = time.perf_counter()
        for group in chosen:
            with units() as uow:
                for n in group:
                    event, at = events[n]
                    append(uow.audit, event, at=at, signer=signer)
                uow.commit()
        middle = time.perf_counter()
        for group in chosen:
            bare.commit_rows([rows[n] for n in group])
        finished = time.perf_counter()
        times.broker += middle - started
        times.bare += finished - middle
    with units() as uow:
        size_after, _ = uow.audit.head()
        times.checkpoints = len(uow.audit.checkpoints()) - checkpoints_before
    if size_after - size_before != entries:
        raise RuntimeError("the log did not grow by one entry per append")
    return times


def append_rows(runtime: Runtime, bare: BareTable, backend: str, quick: bool) -> list[Row]:
    """Figure 7 on one database: one entry per transaction, then 100 per transaction."""
    rows: list[Row] = []
    next_bare = 1
    sizes = (
        (1, QUICK_SINGLE_ENTRIES if quick else SINGLE_ENTRIES),
        (APPEND_BATCH, QUICK_BATCHED_ENTRIES if quick else BATCHED_ENTRIES),
    )
    every = runtime.broker.audit.signer.every_entries
    for per_transaction, entries in sizes:
        times = time_appends(runtime, bare, entries, per_transaction, next_bare)
        next_bare += entries
        broker_rate, bare_rate = rate(entries, times.broker), rate(entries, times.bare)
        rows.append(
            Row(
                figure=f"7 audit append, {per_transaction}/commit",
                backend=backend,
                broker=format_rate(broker_rate),
                bare=format_rate(bare_rate),
                ratio=throughput_ratio(broker_rate, bare_rate),
                notes=f"{entries:,} entries in {entries // per_transaction:,} commits, "
                f"{times.checkpoints} checkpoints signed (every {every}); "
                "bare: the same rows, same indexes",
            )
        )
    return rows


def run_append_sqlite(folder: Path, quick: bool) -> list[Row]:
    """Figure 7 on SQLite: the broker's file and the bare file side by side in ``folder``."""
    runtime = start_broker(folder, f"sqlite:///{folder / 'broker.db'}")
    bare = open_bare_sqlite(folder / "bare.db")
    try:
        return append_rows(runtime, bare, "SQLite (temp file)", quick)
    finally:
        bare.connection.close()
        runtime.engine.dispose()


def postgres_url() -> str:
    """The server the figure uses: BROKER_TEST_POSTGRES_URL, as for the PostgreSQL tests."""
    return os.environ.get("BROKER_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


@contextmanager
def fresh_postgres(admin: Any, admin_url: str) -> Iterator[str]:
    """A new database on the server, dropped afterwards whatever happens."""
    name = f"accord_bench_{secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')  # name is ours: letters and hex only
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_append_postgres(folder: Path, quick: bool) -> list[Row]:
    """Figure 7 on PostgreSQL; one skipped row when psycopg or a server is missing."""
    skipped = "7 audit append"
    try:
        import psycopg  # noqa: PLC0415 - optional: the figure is skipped without it
    except ImportError:
        return [Row(skipped, "PostgreSQL", "skipped (psycopg not installed)", "", "", "")]
    admin_url = postgres_url()
    try:
        admin = psycopg.connect(admin_url, connect_timeout=3, autocommit=True)
    except psycopg.Error:
        return [Row(skipped, "PostgreSQL", "skipped (no server)", "", "", "")]
    with admin:
        backend = f"PostgreSQL {admin.info.server_version // 10000} (local)"
        with fresh_postgres(admin, admin_url) as url:
            runtime = start_broker(folder, url)
            try:
                with psycopg.connect(url) as connection:
                    bare = BareTable(connection, "%s", None)
                    return append_rows(runtime, bare, backend, quick)
            finally:
                runtime.engine.dispose()


# -- figure 8: full verification -------------------------------------------------


def _right_edge(size: int) -> set[tuple[int, int]]:
    """The perfect subtrees along the right edge of a tree of ``size`` leaves."""
    return {
        (level, (size >> level) - 1) for level in range(size.bit_length()) if (size >> level) & 1
    }


def fill_log(runtime: Runtime, total: int) -> int:
    """Grow the runtime's SQLite log to ``total`` entries; returns the checkpoints signed.

    Carries on from the entries the broker wrote at start-up, so the log is one log.
    Each chunk ends at a multiple of ``CHECKPOINT_EVERY`` (or at ``total``), commits,
    and then the broker signs a checkpoint of it with its own key.
    """
    connection = runtime.engine.raw_connection()  # the engine's own settings (WAL, autocommit)
    signed = 0
    try:
        cursor = connection.cursor()
        (size,) = cursor.execute("SELECT size FROM audit_head WHERE id = 1").fetchone()
        store = MemoryNodeStore()
        for level, index, value in cursor.execute("SELECT level, idx, hash FROM merkle_node"):
            store.nodes[level, index] = bytes(value)
        while size < total:
            end = min(total, (size // CHECKPOINT_EVERY + 1) * CHECKPOINT_EVERY)
            entries = [
                seal_entry(n, entry_time(n), audit_event(n)) for n in range(size + 1, end + 1)
            ]
            nodes = nodes_for_append(store, size, [bytes.fromhex(e.leaf_hash) for e in entries])
            store.put_nodes(nodes)
            root = root_at(store, end)
            cursor.execute("BEGIN IMMEDIATE")
            cursor.executemany(ENTRY_INSERT, [entry_row(e) for e in entries])
            cursor.executemany("INSERT INTO merkle_node (level, idx, hash) VALUES (?, ?, ?)", nodes)
            cursor.execute(
                "UPDATE audit_head SET size = ?, head_hash = ? WHERE id = 1", (end, root.hex())
            )
            cursor.execute("COMMIT")
            # Only the right edge is ever read again, by the next nodes_for_append.
            store.nodes = {key: store.nodes[key] for key in _right_edge(end)}
            size = end
            runtime.broker.audit.checkpoint_now()
            signed += 1
    finally:
        connection.close()
    return signed


def bare_read(path: Path) -> tuple[int, float]:
    """Rows read and seconds: one ``SELECT`` in ``seq`` order, SHA-256 of each row's bytes."""
    connection = sqlite3.connect(path)
    sha256 = hashlib.sha256
    rows = 0
    try:
        started = time.perf_counter()
        for row in connection.execute(
            f"SELECT {', '.join(COLUMNS)} FROM audit_entry ORDER BY seq"  # noqa: S608 (constants)
        ):
            sha256(repr(row).encode()).digest()
            rows += 1
        return rows, time.perf_counter() - started
    finally:
        connection.close()


def _timed(work: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def verify_row(folder: Path, total: int) -> Row:
    """Figure 8: ``AuditTrail.verify()`` over ``total`` entries against a bare read and hash."""
    path = folder / "verify.db"
    runtime = start_broker(folder, f"sqlite:///{path}")
    try:
        _, fill_seconds = _timed(lambda: fill_log(runtime, total))
        verified, verify_seconds = _timed(runtime.broker.audit.verify)
        read, bare_seconds = bare_read(path)
    finally:
        runtime.engine.dispose()
    if verified.size != total or read != total:
        raise RuntimeError(f"verified {verified.size} and read {read} entries, not {total}")
    broker_rate, bare_rate = rate(total, verify_seconds), rate(total, bare_seconds)
    within = "within" if verify_seconds < VERIFY_TARGET_SECONDS else "OVER"
    return Row(
        figure="8 audit verify",
        backend="SQLite (temp file), 1 core",
        broker=f"{verify_seconds:.1f} s ({format_rate(broker_rate)})",
        bare=f"{bare_seconds:.1f} s ({format_rate(bare_rate)})",
        ratio=throughput_ratio(broker_rate, bare_rate),
        notes=f"{total:,} entries, {verified.checkpoints} signed checkpoints checked; "
        f"target < {VERIFY_TARGET_SECONDS:.0f} s ({within}); log filled in {fill_seconds:.1f} s; "
        "bare: SELECT, sha256 of each row",
    )


def run(folder: Path, quick: bool = False) -> list[Row]:
    """Figures 7 and 8; every file lives under ``folder``, each database is dropped after."""
    for name in ("append-sqlite", "append-postgres", "verify"):
        (folder / name).mkdir()
    rows = run_append_sqlite(folder / "append-sqlite", quick)
    rows.extend(run_append_postgres(folder / "append-postgres", quick))
    rows.append(verify_row(folder / "verify", QUICK_VERIFY_ENTRIES if quick else VERIFY_ENTRIES))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run figures 7 and 8 alone: ``python -m bench.audit_log [--quick]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.audit_log")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="accord-bench-") as temp:
        for row in run(Path(temp), quick=arguments.quick):
            print(" | ".join([row.figure, row.backend, row.broker, row.bare, row.ratio, row.notes]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
