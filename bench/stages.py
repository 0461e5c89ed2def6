"""Where the time of one HTTP ingest batch and one HTTP lookup goes, stage by stage.

``python -m bench.stages`` fills a store in-process (untimed), then sends
ingest batches of 1,000 new records and single lookups through the real app
(``create_app``, in-process with Starlette's test client, so no sockets or
uvicorn), one at a time. The broker's own pipeline stages are timed through
its ``Instruments`` hook (validate, normalise, tokenise, link, store, decide,
release, audit); the service call and authentication are timed around them,
and the same requests are sent to ``bench.http_constant`` through the same
test client, so what the web layer adds beyond a bare route is what remains.
The request log is not configured in-process, so its formatting is not in
these figures (``broker serve`` writes it). ``--profile`` adds cProfile's
busiest functions in the service calls. PostgreSQL by default (``BROKER_TEST_POSTGRES_URL``), or
``--sqlite``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table

from bench.http import BATCH_PATH, LOOKUP_PATH, postgres_database, register_agency
from bench.http_constant import create_app as constant_app
from bench.ingest import postgres_url
from bench.workload import (
    AGREEMENT,
    DATASET,
    LOOKUP_IDENTIFIERS,
    PROVIDER,
    PURPOSE,
    RECIPIENT,
    SEED,
    batches,
    school_records,
    start_broker,
)
from broker.bootstrap import Runtime
from broker.instruments import STAGES, Stage
from broker.token_client import sign_assertion
from broker.web.app import create_app

Sample = dict[str, float]


class StageTimer:
    """An ``Instruments`` that adds up the seconds spent in each stage; counts nothing."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    @contextmanager
    def _timed(self, name: Stage) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started

    def stage(self, name: Stage) -> AbstractContextManager[None]:
        """Time one stage."""
        return self._timed(name)

    def records_ingested(self, count: int, *, agreement: str, dataset: str) -> None:
        """Not counted here."""

    def links_made(self, count: int, *, agreement: str, rule: str) -> None:
        """Not counted here."""

    def released(self, *, agreement: str, purpose: str) -> None:
        """Not counted here."""

    def refused(self, code: str, *, action: str) -> None:
        """Not counted here."""


class Spans:
    """Seconds spent inside chosen broker methods, optionally under cProfile.

    The app runs routes in worker threads, where a profiler started in this
    thread would see nothing; wrapping the service methods puts the profiler
    in the thread that does the work.
    """

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.profiler: cProfile.Profile | None = None

    def wrap(self, owner: Any, method: str, label: str) -> None:
        """Replace ``owner.method`` with a timed (and, when profiling, profiled) call."""
        inner = getattr(owner, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            profiler = self.profiler
            started = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            try:
                return inner(*args, **kwargs)
            finally:
                if profiler is not None:
                    profiler.disable()
                self.seconds[label] += time.perf_counter() - started

        setattr(owner, method, timed)


def _bearer(runtime: Runtime, agency: str) -> dict[str, str]:
    """Headers with a token minted the real way: a registered client's signed assertion."""
    identity = runtime.broker.identity
    issuer = identity.config.policy.issuer
    credential = register_agency(runtime, agency)
    assertion = sign_assertion(credential, issuer, now=identity.now().timestamp())
    token = identity.issue_client_token(assertion, audiences={issuer})
    return {"Authorization": f"Bearer {token.access_token}"}


def _measure(timer: StageTimer, spans: Spans, send: Callable[[], None], repeats: int) -> Sample:
    """Mean seconds per request, in total, per stage and per wrapped method."""
    timer.seconds.clear()
    spans.seconds.clear()
    started = time.perf_counter()
    for _ in range(repeats):
        send()
    total = time.perf_counter() - started
    sample = {name: seconds / repeats for name, seconds in timer.seconds.items()}
    sample.update({name: seconds / repeats for name, seconds in spans.seconds.items()})
    sample["total"] = total / repeats
    return sample


def _mean(send: Callable[[], object], repeats: int) -> float:
    """Mean seconds of ``send``."""
    started = time.perf_counter()
    for _ in range(repeats):
        send()
    return (time.perf_counter() - started) / repeats


def _stage_table(title: str, sample: Sample) -> Table:
    table = Table(title=title)
    table.add_column("part")
    table.add_column("ms per request", justify="right")
    table.add_column("share", justify="right")
    total = sample["total"]

    def add(name: str, seconds: float) -> None:
        table.add_row(name, f"{seconds * 1e3:.2f}", f"{seconds / total:.0%}")

    inside = 0.0
    for name in STAGES:
        if name in sample:
            inside += sample[name]
            add(f"stage: {name}", sample[name])
    service = sample.get("service", 0.0)
    auth = sample.get("auth", 0.0)
    bare = sample.get("constant", 0.0)
    add(
        "service call outside the stages (transaction, commit, registry, decision)",
        service - inside,
    )
    add("authentication (token signature, then the client's status read)", auth)
    add(
        "web layer beyond a bare route (middleware, schemas)",
        total - service - auth - bare,
    )
    add("test client and a bare FastAPI route (bench.http_constant, same body)", bare)
    table.add_row("whole request", f"{total * 1e3:.2f}", "100%")
    return table


def _profile(spans: Spans, send: Callable[[], None], repeats: int, top: int) -> str:
    spans.profiler = cProfile.Profile()
    try:
        for _ in range(repeats):
            send()
    finally:
        profiler, spans.profiler = spans.profiler, None
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def run(
    database_url: str,
    folder: Path,
    *,
    stored: int,
    batches_timed: int,
    lookups: int,
    profile: bool,
    console: Console,
) -> None:
    """Fill, then time batches and lookups through the app; print the stage tables."""
    records = school_records(stored + batches_timed * 1000)
    runtime = start_broker(folder, database_url)
    try:
        console.print(f"filling the store with {stored:,} records (untimed)", style="dim")
        for batch in batches(records[:stored]):
            runtime.broker.ingest_batch(
                agency=PROVIDER, agreement_id=AGREEMENT, dataset_id=DATASET, records=batch
            )
        provider = _bearer(runtime, PROVIDER)
        recipient = _bearer(runtime, RECIPIENT)
        app = create_app(runtime)
        timer = StageTimer()
        runtime.broker.instruments = timer  # after create_app, which installs its own
        spans = Spans()
        spans.wrap(runtime.broker, "ingest_batch", "service")
        spans.wrap(runtime.broker, "lookup", "service")
        spans.wrap(runtime.broker, "authenticate", "auth")
        fresh_batches = list(batches(records[stored:]))
        fresh = iter(fresh_batches)
        rng = random.Random(SEED + 20)

        def ingest(client: TestClient) -> Callable[[], None]:
            def send() -> None:
                # Every batch carries its own idempotency key (issue 8).
                headers = {**provider, "Idempotency-Key": str(uuid.uuid4())}
                response = client.post(BATCH_PATH, json={"records": next(fresh)}, headers=headers)
                if response.status_code != 201:
                    raise RuntimeError(response.text)

            return send

        def lookup(client: TestClient) -> Callable[[], None]:
            def send() -> None:
                record = rng.choice(records[:stored])
                body: dict[str, Any] = {
                    "purpose": PURPOSE,
                    "identifiers": {n: record[n] for n in LOOKUP_IDENTIFIERS},
                }
                response = client.post(LOOKUP_PATH, json=body, headers=recipient)
                if response.status_code != 200 or not response.json()["matched"]:
                    raise RuntimeError(response.text)

            return send

        with TestClient(app) as client, TestClient(constant_app()) as bare:
            lookup(client)()  # warm up: first request builds FastAPI's caches
            halves = batches_timed // 2 if profile else batches_timed
            ingest_sample = _measure(timer, spans, ingest(client), max(halves, 1))
            lookup_sample = _measure(timer, spans, lookup(client), lookups)
            lookup(bare)()
            ingest_sample["constant"] = _mean(
                lambda: bare.post(BATCH_PATH, json={"records": fresh_batches[0]}),
                max(halves, 1),
            )
            lookup_sample["constant"] = _mean(lookup(bare), lookups)
            console.print(_stage_table("one ingest batch of 1,000 records", ingest_sample))
            console.print(_stage_table("one lookup", lookup_sample))
            if profile:
                spare = max(batches_timed - halves, 1)
                console.print("cProfile of the service calls, ingest batches, by own time:")
                console.print(_profile(spans, ingest(client), spare, 25), markup=False)
                console.print("cProfile of the service calls, lookups, by own time:")
                console.print(_profile(spans, lookup(client), lookups, 25), markup=False)
    finally:
        runtime.engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.stages",
        description="Stage timings of one HTTP ingest batch and one lookup, in-process.",
    )
    parser.add_argument("--stored", type=int, default=20_000, metavar="N")
    parser.add_argument("--batches", type=int, default=10, metavar="N", help="timed batches")
    parser.add_argument("--lookups", type=int, default=300, metavar="N", help="timed lookups")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--profile", action="store_true", help="also print cProfile's top")
    arguments = parser.parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    with tempfile.TemporaryDirectory(prefix="accord-bench-stages-") as temp, ExitStack() as stack:
        folder = Path(temp)
        if arguments.sqlite:
            url = f"sqlite:///{folder / 'accord.db'}"
        else:
            url = stack.enter_context(postgres_database(postgres_url()))
        console.print(f"backend: {'SQLite' if arguments.sqlite else 'PostgreSQL'}", style="dim")
        run(
            url,
            folder,
            stored=arguments.stored,
            batches_timed=arguments.batches,
            lookups=arguments.lookups,
            profile=arguments.profile,
            console=console,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
