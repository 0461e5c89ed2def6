"""Figures 9 and 10: batch ingest and single lookups over HTTP, through real ``broker serve``.

``python -m bench.http`` runs them alone and prints one table. Three set-ups:
PostgreSQL (``BROKER_TEST_POSTGRES_URL``, default the local server) with one
and with two ``broker serve`` processes, and the embedded default, SQLite,
with one. The load generator is this process: asyncio clients with httpx,
each holding one keep-alive connection to one server (clients are spread
over the servers as a load balancer would), request bodies encoded before the
clock starts.

Figure 9 posts the first ``--ingest-records`` records of the synthetic school
workload (``bench.workload``) in batches of 1,000 from ``--clients`` clients
to an empty database. Its bare baseline is ``bench.ingest``'s loader
(normalise, HMAC tokens, AES-GCM, one bulk insert per 1,000) run in as many
processes as the set-up has workers, each into a database of its own.

Figure 10 first fills the store to ``--stored`` records over HTTP (untimed),
then times ``--lookups`` single lookups (social care, safeguarding triage,
four identifiers of a stored young person) from 1 and from 20 clients. Its
bare baseline is the same requests to ``bench.http_constant``, which answers
with a constant, on as many uvicorn processes.

The servers use the machine's clock, so the example agreement must be in
force (it runs to 31 March 2028). Each figure says how busy the servers,
PostgreSQL, the load generator and the whole machine were while it ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import secrets
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console, JustifyMethod
from rich.table import Table
from sqlalchemy.engine import make_url

from bench.bare import BareKit
from bench.http_servers import CpuMeter, CpuUse, Servers, brokers, constants
from bench.ingest import bare_postgres_ingest, bare_sqlite_ingest, check_same_tokens
from bench.ingest import postgres_url as admin_postgres_url
from bench.workload import (
    AGREEMENT,
    BATCH_SIZE,
    DATASET,
    LOOKUP_IDENTIFIERS,
    PROVIDER,
    PURPOSE,
    RECIPIENT,
    SEED,
    batches,
    bench_agreements_dir,
    format_ms,
    format_rate,
    percentile,
    rate,
    school_records,
    start_broker,
)
from broker.bootstrap import Runtime
from broker.client_auth import generate_client_key
from broker.db.uow import SqlUnitOfWorkFactory
from broker.keystore import DATA, KeySlot
from broker.token_client import ClientCredential, TokenClient

DEFAULT_STORED = 100_000
DEFAULT_INGEST = 20_000
DEFAULT_LOOKUPS = 1_000
DEFAULT_CLIENTS = 4
LOOKUP_CLIENTS = (1, 20)
WARM_UP = 50
INGEST_TARGET = 10_000.0  # records per second
INGEST_SHARE_TARGET = 0.5  # of the bare rate
LOOKUP_P99_TARGET = 0.020  # seconds, at 20 clients

BATCH_PATH = f"/v1/agreements/{AGREEMENT}/datasets/{DATASET}/batches"
LOOKUP_PATH = f"/v1/agreements/{AGREEMENT}/lookups"
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class HttpRow:
    """One line of the HTTP table."""

    figure: str
    backend: str
    workers: int
    clients: int
    broker: str
    bare: str
    ratio: str
    target: str
    notes: str
    cpu: CpuUse
    bare_cpu: CpuUse | None = None


@dataclass(frozen=True)
class Options:
    """What to run: sizes from the command line."""

    stored: int
    ingest_records: int
    lookups: int
    clients: int
    postgres: bool


@dataclass(frozen=True)
class Timed:
    """Wall-clock seconds of a measurement, each request's latency, and the CPU it used."""

    seconds: float
    latencies: list[float]
    cpu: CpuUse


# -- load generation ------------------------------------------------------------


async def _drive(
    urls: Sequence[str],
    headers: dict[str, str],
    clients: int,
    path: str,
    phases: Sequence[Sequence[bytes]],
    *,
    before_last: Callable[[], None],
) -> tuple[float, list[float]]:
    """Post each phase's bodies from ``clients`` clients; the last phase's seconds and latencies.

    The same clients (so the same connections) serve every phase, so a
    warm-up phase leaves the timed one with its connections open.
    ``before_last`` runs just before the last phase starts.
    """
    sessions = [
        httpx.AsyncClient(base_url=urls[i % len(urls)], headers={**headers, **JSON}, timeout=300)
        for i in range(clients)
    ]
    latencies: list[float] = []

    async def client(session: httpx.AsyncClient, pending: Iterator[bytes]) -> None:
        for body in pending:
            started = time.perf_counter()
            # Every batch carries its own idempotency key (issue 8); lookups carry none.
            key = {"Idempotency-Key": str(uuid.uuid4())} if path.endswith("/batches") else {}
            response = await session.post(path, content=body, headers=key)
            latencies.append(time.perf_counter() - started)
            _check(response)

    try:
        seconds = 0.0
        for position, bodies in enumerate(phases):
            if position == len(phases) - 1:
                before_last()
            latencies.clear()
            pending = iter(bodies)  # shared: each client takes the next body when it is free
            started = time.perf_counter()
            await asyncio.gather(*(client(session, pending) for session in sessions))
            seconds = time.perf_counter() - started
        return seconds, list(latencies)
    finally:
        for session in sessions:
            await session.aclose()


def _check(response: httpx.Response) -> None:
    """Every timed request must have done its work: a failure would time an error path."""
    if response.status_code not in (200, 201):
        raise RuntimeError(f"{response.request.url.path}: {response.status_code} {response.text}")
    if response.status_code == 200 and not response.json().get("matched"):
        raise RuntimeError("a lookup found nothing; the figure would time a miss")


def drive(
    servers: Servers,
    headers: dict[str, str],
    clients: int,
    path: str,
    bodies: Sequence[bytes],
    *,
    warm_up: Sequence[bytes] = (),
    database_pids: Callable[[], Sequence[int]] | None = None,
) -> Timed:
    """Post ``bodies`` after an untimed ``warm_up``, timing each request and reading CPU use."""
    meter = CpuMeter(servers.pids, database_pids)
    phases = [warm_up, bodies] if warm_up else [bodies]
    seconds, latencies = asyncio.run(
        _drive(servers.urls, headers, clients, path, phases, before_last=meter.start)
    )
    return Timed(seconds, latencies, meter.stop())


def batch_bodies(records: Sequence[dict[str, str]]) -> list[bytes]:
    """Request bodies of 1,000 records each."""
    return [json.dumps({"records": batch}).encode() for batch in batches(records)]


def lookup_bodies(records: Sequence[dict[str, str]], count: int, seed: int) -> list[bytes]:
    """``count`` lookup bodies, each for a stored young person chosen at random."""
    rng = random.Random(seed)
    bodies = []
    for _ in range(count):
        record = rng.choice(records)
        identifiers = {name: record[name] for name in LOOKUP_IDENTIFIERS}
        bodies.append(json.dumps({"purpose": PURPOSE, "identifiers": identifiers}).encode())
    return bodies


# -- the set-ups ----------------------------------------------------------------


#: Records per slice of the untimed fill (one token each).
_FILL_SLICE = 50_000


@dataclass(frozen=True)
class Prepared:
    """A migrated database with keys, clients for the two agencies, and a bare loader's keys."""

    database_url: str
    key_file: Path
    linkage_key: bytes
    data_key: bytes
    provider: ClientCredential
    recipient: ClientCredential

    @property
    def kit(self) -> BareKit:
        """A bare loader holding the broker's linkage and data keys."""
        return BareKit(self.linkage_key, self.data_key)


def prepare(folder: Path, database_url: str, first: dict[str, str]) -> Prepared:
    """Migrate, make keys and register the agencies' clients in-process, before servers start."""
    folder.mkdir(parents=True)
    runtime = start_broker(folder, database_url)
    try:
        # As bench.ingest.bare_kit, but keeping the keys as bytes for the bare processes.
        store = runtime.broker._keystore
        with SqlUnitOfWorkFactory(runtime.engine)() as uow:
            linkage = store.linkage(uow.keys, AGREEMENT).key
            data = store.active(uow.keys, KeySlot(DATA, AGREEMENT)).key
        check_same_tokens(BareKit(linkage, data), first)
        provider = register_agency(runtime, PROVIDER)
        recipient = register_agency(runtime, RECIPIENT)
    finally:
        runtime.engine.dispose()
    return Prepared(database_url, folder / "broker.key", linkage, data, provider, recipient)


def register_agency(runtime: Runtime, agency: str) -> ClientCredential:
    """A client for ``agency`` with a key pair made here (a benchmark, not production)."""
    private_pem, public_pem = generate_client_key()
    made = runtime.broker.identity.register_client(agency, public_pem)
    return ClientCredential(made.client_id, made.key_id, made.alg, private_pem)


def bearer(credential: ClientCredential, servers: Servers) -> dict[str, str]:
    """Headers with a fresh token from the first server; every worker accepts it."""
    return {"Authorization": f"Bearer {TokenClient(credential, servers.urls[0]).token()}"}


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A new PostgreSQL database for this run, dropped afterwards."""
    import psycopg  # noqa: PLC0415 - optional: only the PostgreSQL set-ups need it

    name = f"accord_bench_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # our name: letters, digits, underscores
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def backend_pids(database_url: str) -> Callable[[], Sequence[int]]:
    """A reader of the PostgreSQL backends serving ``database_url`` (this reader's excepted)."""
    import psycopg  # noqa: PLC0415 - as above

    name = make_url(database_url).database

    def read() -> list[int]:
        with psycopg.connect(database_url, autocommit=True) as connection:
            rows = connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            ).fetchall()
        return [int(row[0]) for row in rows]

    return read


def postgres_version(admin_url: str) -> int | None:
    """The server's major version, or None when psycopg is missing or no server answers."""
    try:
        import psycopg  # noqa: PLC0415 - as above
    except ImportError:
        return None
    try:
        with psycopg.connect(admin_url, connect_timeout=3) as connection:
            return connection.info.server_version // 10000
    except psycopg.Error:
        return None


@dataclass(frozen=True)
class BareShare:
    """One bare process's part of a parallel load: its database, the keys and its records."""

    url: str
    linkage_key: bytes
    data_key: bytes
    records: list[dict[str, str]]


def _bare_child(share: BareShare, barrier: Barrier, results: Any) -> None:
    barrier.wait()  # every process starts loading at once
    kit = BareKit(share.linkage_key, share.data_key)
    results.put(bare_postgres_ingest(share.url, kit, share.records))


def bare_postgres_parallel(
    admin_url: str, prepared: Prepared, records: Sequence[dict[str, str]], processes: int
) -> float:
    """Records per second of the bare loader in ``processes`` processes, started together.

    Each process loads its share into a database of its own, so that the
    bare side never waits on the other's locks (the broker's workers share
    one database: this favours the baseline).
    """
    if processes == 1:
        with postgres_database(admin_url) as url:
            return rate(len(records), bare_postgres_ingest(url, prepared.kit, records))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    with _databases(admin_url, processes) as urls:
        shares = [
            BareShare(url, prepared.linkage_key, prepared.data_key, list(records[i::processes]))
            for i, url in enumerate(urls)
        ]
        children = [
            context.Process(target=_bare_child, args=(share, barrier, results)) for share in shares
        ]
        for child in children:
            child.start()
        seconds = [float(results.get(timeout=600)) for _ in children]
        for child in children:
            child.join()
    return rate(len(records), max(seconds))


@contextmanager
def _databases(admin_url: str, count: int) -> Iterator[list[str]]:
    if count == 0:
        yield []
        return
    with postgres_database(admin_url) as url, _databases(admin_url, count - 1) as rest:
        yield [url, *rest]


# -- figures --------------------------------------------------------------------


def _ingest_row(
    backend: str, workers: int, *, clients: int, timed: Timed, records: int, bare_rate: float
) -> HttpRow:
    broker_rate = rate(records, timed.seconds)
    share = broker_rate / bare_rate if bare_rate > 0 else 0.0
    met = broker_rate >= INGEST_TARGET and share >= INGEST_SHARE_TARGET
    slowest = max(timed.latencies)
    median = percentile(timed.latencies, 0.5)
    return HttpRow(
        figure="9 ingest (HTTP)",
        backend=backend,
        workers=workers,
        clients=clients,
        broker=format_rate(broker_rate),
        bare=f"{format_rate(bare_rate)} ({workers} proc.)",
        ratio=f"{share:.2f}",
        target=f"{'met' if met else 'missed'} (≥10 k rec/s and ≥0.50)",
        notes=(
            f"{records:,} records in batches of {BATCH_SIZE:,} into an empty store; batch "
            f"p50 {median * 1e3:.0f} ms, max {slowest * 1e3:.0f} ms"
        ),
        cpu=timed.cpu,
    )


def _lookup_cells(timed: Timed) -> str:
    per_second = len(timed.latencies) / timed.seconds
    return (
        f"{per_second:,.0f}/s, p50 {format_ms(percentile(timed.latencies, 0.5))}, "
        f"p99 {format_ms(percentile(timed.latencies, 0.99))}"
    )


def _lookup_row(
    backend: str, workers: int, *, clients: int, broker: Timed, bare: Timed, stored: int
) -> HttpRow:
    p50, p99 = percentile(broker.latencies, 0.5), percentile(broker.latencies, 0.99)
    bare_p50, bare_p99 = percentile(bare.latencies, 0.5), percentile(bare.latencies, 0.99)
    throughput = (len(broker.latencies) / broker.seconds) / (len(bare.latencies) / bare.seconds)
    target = "n/a"
    if clients == max(LOOKUP_CLIENTS):
        target = f"{'met' if p99 < LOOKUP_P99_TARGET else 'missed'} (p99 < 20 ms)"
    return HttpRow(
        figure="10 lookup (HTTP)",
        backend=backend,
        workers=workers,
        clients=clients,
        broker=_lookup_cells(broker),
        bare=_lookup_cells(bare),
        ratio=f"{throughput:.2f} of the rate; p50 ×{p50 / bare_p50:.1f}, p99 ×{p99 / bare_p99:.1f}",
        target=target,
        notes=(
            f"{len(broker.latencies):,} lookups (+{WARM_UP} warm-up) in {stored:,} stored records"
        ),
        cpu=broker.cpu,
        bare_cpu=bare.cpu,
    )


class Run:
    """One run of every set-up, sharing the workload, a temp folder and a progress console."""

    def __init__(self, options: Options, folder: Path, progress: Console) -> None:
        self.options = options
        self.folder = folder
        self.progress = progress
        self.records = school_records(options.stored)
        self.timed_records = self.records[: options.ingest_records]
        self.rows: list[HttpRow] = []

    def _ingest(
        self, servers: Servers, prepared: Prepared, records: Sequence[dict[str, str]], **kw: Any
    ) -> Timed:
        headers = bearer(prepared.provider, servers)
        bodies = batch_bodies(records)
        return drive(servers, headers, self.options.clients, BATCH_PATH, bodies, **kw)

    def _fill(self, servers: Servers, prepared: Prepared) -> None:
        rest = self.records[self.options.ingest_records :]
        if not rest:
            return
        self.progress.print(f"  filling the store to {self.options.stored:,} records (untimed)")
        started = time.perf_counter()
        # In slices, each with a fresh token: a long fill outlives one (300 s by default).
        for at in range(0, len(rest), _FILL_SLICE):
            self._ingest(servers, prepared, rest[at : at + _FILL_SLICE])
        self.progress.print(f"  filled in {time.perf_counter() - started:.0f} s")

    def _lookups(
        self,
        servers: Servers,
        headers: dict[str, str],
        clients: int,
        database_pids: Callable[[], Sequence[int]] | None = None,
    ) -> Timed:
        seed = SEED + 10 + clients
        bodies = lookup_bodies(self.records, WARM_UP + self.options.lookups, seed)
        return drive(
            servers,
            headers,
            clients,
            LOOKUP_PATH,
            bodies[WARM_UP:],
            warm_up=bodies[:WARM_UP],
            database_pids=database_pids,
        )

    def _lookup_rows(
        self,
        backend: str,
        workers: int,
        servers: Servers,
        prepared: Prepared,
        pids: Callable[[], Sequence[int]] | None,
    ) -> None:
        broker_times = {
            clients: self._lookups(servers, bearer(prepared.recipient, servers), clients, pids)
            for clients in LOOKUP_CLIENTS
        }
        with constants(workers, folder=self.folder) as bare_servers:
            for clients in LOOKUP_CLIENTS:
                bare = self._lookups(bare_servers, {"Authorization": "Bearer bare"}, clients)
                self.rows.append(
                    _lookup_row(
                        backend,
                        workers,
                        clients=clients,
                        broker=broker_times[clients],
                        bare=bare,
                        stored=self.options.stored,
                    )
                )

    def postgres(self, version: int) -> None:
        """Figures 9 and 10 on PostgreSQL with one and with two workers."""
        admin = admin_postgres_url()
        backend = f"PostgreSQL {version} (local)"
        timed = self.timed_records
        self.progress.print("PostgreSQL, 1 worker: ingest into an empty store")
        with postgres_database(admin) as url:
            prepared = prepare(self.folder / "pg-1", url, timed[0])
            with brokers(1, **self._server_args(prepared, "pg-1")) as servers:
                one = self._ingest(servers, prepared, timed, database_pids=backend_pids(url))
        bare_one = bare_postgres_parallel(admin, prepared, timed, 1)
        self.rows.append(self._ingest_result(backend, 1, one, bare_one))

        self.progress.print("PostgreSQL, 2 workers: ingest into an empty store")
        with postgres_database(admin) as url:
            prepared = prepare(self.folder / "pg-2", url, timed[0])
            pids = backend_pids(url)
            with brokers(2, **self._server_args(prepared, "pg-2")) as servers:
                two = self._ingest(servers, prepared, timed, database_pids=pids)
                self._fill(servers, prepared)
                self.progress.print("PostgreSQL, 2 workers: lookups")
                self._lookup_rows(backend, 2, servers, prepared, pids)
            bare_two = bare_postgres_parallel(admin, prepared, timed, 2)
            self.rows.append(self._ingest_result(backend, 2, two, bare_two))
            self.progress.print("PostgreSQL, 1 worker: lookups on the same store")
            with brokers(1, **self._server_args(prepared, "pg-2")) as servers:
                self._lookup_rows(backend, 1, servers, prepared, pids)

    def sqlite(self) -> None:
        """Figures 9 and 10 on the embedded default: one worker on a SQLite file."""
        folder = self.folder / "sqlite"
        backend = "SQLite (temp file)"
        timed_records = self.timed_records
        self.progress.print("SQLite, 1 worker: ingest into an empty store")
        prepared = prepare(folder, f"sqlite:///{folder / 'accord.db'}", timed_records[0])
        with brokers(1, **self._server_args(prepared, "sqlite")) as servers:
            timed = self._ingest(servers, prepared, timed_records)
            self._fill(servers, prepared)
            self.progress.print("SQLite, 1 worker: lookups")
            self._lookup_rows(backend, 1, servers, prepared, None)
        bare_rate = rate(
            len(timed_records), bare_sqlite_ingest(folder / "bare.db", prepared.kit, timed_records)
        )
        self.rows.append(self._ingest_result(backend, 1, timed, bare_rate))

    def _ingest_result(self, backend: str, workers: int, timed: Timed, bare_rate: float) -> HttpRow:
        return _ingest_row(
            backend,
            workers,
            clients=self.options.clients,
            timed=timed,
            records=len(self.timed_records),
            bare_rate=bare_rate,
        )

    def _server_args(self, prepared: Prepared, name: str) -> dict[str, Any]:
        logs = self.folder / f"{name}-logs"
        logs.mkdir(exist_ok=True)
        return {
            "database_url": prepared.database_url,
            "key_file": prepared.key_file,
            "agreements_dir": bench_agreements_dir(),
            "folder": logs,
        }


def run(options: Options, progress: Console) -> list[HttpRow]:
    """Every set-up; ingest rows first, then lookup rows, each in set-up order."""
    version = postgres_version(admin_postgres_url()) if options.postgres else None
    with tempfile.TemporaryDirectory(prefix="accord-bench-http-") as temp:
        current = Run(options, Path(temp), progress)
        if version is not None:
            current.postgres(version)
        elif options.postgres:
            progress.print("PostgreSQL: skipped (no server answers)")
        current.sqlite()
    # Ingest rows, then lookup rows; PostgreSQL before SQLite, fewer workers and clients first.
    return sorted(
        current.rows,
        key=lambda r: (
            int(r.figure.split()[0]),
            r.backend.startswith("SQLite"),
            r.workers,
            r.clients,
        ),
    )


def results_table(rows: Sequence[HttpRow], title: str) -> Table:
    """The table ``python -m bench.http`` prints."""
    table = Table(title=title)
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("figure", "left"),
        ("backend", "left"),
        ("workers", "right"),
        ("clients", "right"),
        ("broker", "right"),
        ("bare baseline", "right"),
        ("ratio (broker/bare)", "right"),
        ("target", "left"),
        ("notes", "left"),
    )
    for name, justify in columns:
        table.add_column(name, justify=justify)
    for row in rows:
        table.add_row(
            row.figure,
            row.backend,
            str(row.workers),
            str(row.clients),
            row.broker,
            row.bare,
            row.ratio,
            row.target,
            row.notes,
        )
    return table


def cpu_table(rows: Sequence[HttpRow]) -> Table:
    """Where the CPU went during each measurement, in cores kept busy on average."""
    table = Table(title=f"CPU during each measurement (cores busy on average, of {os.cpu_count()})")
    for name in ("figure", "backend", "workers", "clients", "side"):
        table.add_column(name)
    for name in ("servers", "PostgreSQL", "load generator", "whole machine", "other work"):
        table.add_column(name, justify="right")
    for row in rows:
        sides = [("broker", row.cpu)] + ([("bare", row.bare_cpu)] if row.bare_cpu else [])
        for side, cpu in sides:
            ours = cpu.servers + (cpu.database or 0.0) + cpu.load
            table.add_row(
                row.figure,
                row.backend,
                str(row.workers),
                str(row.clients),
                side,
                f"{cpu.servers:.2f}",
                "" if cpu.database is None else f"{cpu.database:.2f}",
                f"{cpu.load:.2f}",
                f"{cpu.machine:.2f}",
                f"{max(cpu.machine - ours, 0.0):.2f}",
            )
    return table


def parse_arguments(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.http",
        description="Batch ingest and lookups over HTTP through real broker serve processes.",
    )
    parser.add_argument(
        "--stored",
        type=int,
        default=None,
        metavar="N",
        help=f"records stored before the lookups (default {DEFAULT_STORED:,}; the issue's "
        "figure is 1000000)",
    )
    parser.add_argument(
        "--ingest-records",
        type=int,
        default=None,
        metavar="N",
        help=f"records timed in the ingest figure (default {DEFAULT_INGEST:,})",
    )
    parser.add_argument(
        "--lookups",
        type=int,
        default=None,
        metavar="N",
        help=f"timed lookups per row (default {DEFAULT_LOOKUPS:,})",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=DEFAULT_CLIENTS,
        metavar="N",
        help=f"concurrent ingest clients (default {DEFAULT_CLIENTS})",
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument(
        "--quick", action="store_true", help="smoke-test sizes: 5,000 stored, 200 lookups"
    )
    arguments = parser.parse_args(argv)
    quick = arguments.quick
    stored = arguments.stored or (5_000 if quick else DEFAULT_STORED)
    ingest = arguments.ingest_records or min(stored, 5_000 if quick else DEFAULT_INGEST)
    lookups = arguments.lookups or (200 if quick else DEFAULT_LOOKUPS)
    if min(stored, ingest, lookups, arguments.clients) < 1:
        parser.error("sizes and --clients must be at least 1")
    if ingest > stored:
        parser.error("--ingest-records cannot exceed --stored (the timed records are stored too)")
    return Options(stored, ingest, lookups, arguments.clients, not arguments.no_postgres)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_arguments(argv)
    progress = Console(stderr=True, style="dim")
    started = time.perf_counter()
    rows = run(options, progress)
    elapsed = time.perf_counter() - started
    console = Console()
    if not console.is_terminal:  # a log or a pipe: do not squeeze the table into 80 columns
        console = Console(width=200)
    title = (
        f"Accord over HTTP: broker against the bare limit ({options.stored:,} stored records, "
        f"{options.ingest_records:,} timed ingest records)"
    )
    console.print(results_table(rows, title))
    console.print(cpu_table(rows))
    progress.print(f"all HTTP figures in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
