"""``python -m bench``: run every figure and print one table.

``--quick`` is the smoke-test size; ``--records N`` sets how many records the
ingest figures load (and the lookup figure searches). The audit figures (5 to
8) and the HTTP figures (9 and 10, ``bench.http``) have sizes of their own,
smaller with ``--quick``; ``--no-http`` leaves the HTTP figures out.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import audit_log, audit_tree, ingest, lookup, tokenise
from bench import http as http_figures
from bench.workload import Row, school_records

DEFAULT_RECORDS = 20_000
QUICK_RECORDS = 2_000


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Accord's benchmark figures, each against its limit."
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes for a smoke test (about 2 minutes)"
    )
    parser.add_argument(
        "--no-http", action="store_true", help="leave out figures 9 and 10 (over HTTP)"
    )
    parser.add_argument(
        "--records",
        type=int,
        metavar="N",
        help=f"records to ingest (default {DEFAULT_RECORDS:,}; {QUICK_RECORDS:,} with --quick)",
    )
    arguments = parser.parse_args(argv)
    if arguments.records is not None and arguments.records < 1:
        parser.error("--records must be at least 1")
    return arguments


def results_table(rows: Sequence[Row], title: str) -> Table:
    """The one table ``python -m bench`` prints."""
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("backend")
    table.add_column("broker", justify="right")
    table.add_column("bare baseline", justify="right")
    table.add_column("ratio (broker/bare)", justify="right")
    table.add_column("notes")
    for row in rows:
        table.add_row(row.figure, row.backend, row.broker, row.bare, row.ratio, row.notes)
    return table


def http_rows(progress: Console, *, quick: bool) -> list[Row]:
    """Figures 9 and 10 (``bench.http``) at its default or quick sizes, as rows of this table."""
    options = http_figures.parse_arguments(["--quick"] if quick else [])
    rows = []
    for row in http_figures.run(options, progress):
        rows.append(
            Row(
                figure=row.figure,
                backend=f"{row.backend}, {row.workers} worker(s), {row.clients} client(s)",
                broker=row.broker,
                bare=row.bare,
                ratio=row.ratio,
                notes=f"target {row.target}; {row.notes}",
            )
        )
    return rows


def run_all(
    records: int,
    tokenise_records: int,
    lookups: int,
    progress: Console,
    *,
    quick: bool = False,
    http: bool = True,
) -> list[Row]:
    """Every figure, in figure order; all files live in one temp folder removed at the end.

    ``quick`` picks the audit and HTTP figures' smoke-test sizes; ``http`` False
    leaves out figures 9 and 10.
    """
    rows: list[Row] = []
    workload = school_records(records)
    with tempfile.TemporaryDirectory(prefix="accord-bench-") as temp:
        folder = Path(temp)
        (folder / "sqlite").mkdir()
        (folder / "postgres").mkdir()
        (folder / "audit-tree").mkdir()
        (folder / "audit-log").mkdir()
        progress.print(f"figure 1: ingesting {records:,} records on SQLite")
        outcome = ingest.run_sqlite(folder / "sqlite", workload)
        try:
            rows.extend(outcome.rows)
            progress.print("figure 2: ingesting on PostgreSQL")
            rows.extend(ingest.run_postgres(workload, folder / "postgres"))
            progress.print(f"figure 3: tokenising {tokenise_records:,} records")
            rows.extend(tokenise.run(tokenise_records))
            progress.print(f"figure 4: {lookups:,} lookups")
            rows.extend(lookup.run(outcome.store, lookups))
        finally:
            outcome.store.runtime.engine.dispose()
        progress.print("figures 5 and 6: audit Merkle tree proofs and rebuild")
        rows.extend(audit_tree.run(folder / "audit-tree", quick=quick))
        progress.print(
            "figures 7 and 8: audit appends, SQLite and PostgreSQL, and full verification"
        )
        rows.extend(audit_log.run(folder / "audit-log", quick=quick))
    if http:
        progress.print("figures 9 and 10: ingest and lookups over HTTP through broker serve")
        rows.extend(http_rows(progress, quick=quick))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    quick = arguments.quick
    records = arguments.records or (QUICK_RECORDS if quick else DEFAULT_RECORDS)
    progress = Console(stderr=True, style="dim")
    started = time.perf_counter()
    rows = run_all(
        records,
        tokenise_records=10_000 if quick else 50_000,
        lookups=100 if quick else 1_000,
        progress=progress,
        quick=quick,
        http=not arguments.no_http,
    )
    elapsed = time.perf_counter() - started
    title = f"Accord benchmark{' (quick)' if quick else ''}: broker against the bare limit"
    console = Console()
    if not console.is_terminal:  # a log or a pipe: do not squeeze the table into 80 columns
        console = Console(width=160)
    console.print(results_table(rows, title))
    progress.print(f"all figures in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
