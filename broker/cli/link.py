"""``broker link FILE.csv [...] --out clusters.csv``: the linkage engine, offline, for DPOs.

One file is de-duplicated; several are linked across and within each. Records
are encoded under a linkage key (a fresh random one unless ``--key`` names a
linkage key file), linked by ``broker.link.engine.link_records``, and written
as ``record_id,cluster_id`` with each id prefixed by its file's stem. A row
with no usable identifier is not linked: it keeps a cluster of its own and is
counted in the report. Possible matches are never linked; ``--pairs`` lists
them with the matches.

Encoding (HMAC and Bloom filters per record) is the costly step before the
comparisons, so large inputs are encoded in worker processes: each worker
builds its own encoder from the key handed to it at start, and chunks of rows
go out in order and come back in order.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from broker.errors import Location, ValidationError

if TYPE_CHECKING:
    from broker.link.encode import Cascade, RecordEncoder
    from broker.link.files import InputRecord
    from broker.link.types import EncodedRecord

KEY_BYTES = 32
#: From this much input (about 20,000 rows), encoding and comparing run in
#: ``ENCODE_WORKERS`` processes (measured; see docs/linkage.md) and progress is shown.
PARALLEL_FROM_BYTES = 2_000_000
ENCODE_WORKERS = 2
CHUNK = 5_000

Files = Annotated[
    list[Path], typer.Argument(help="Input CSV files (canonical columns; record_id required)")
]
Out = Annotated[Path, typer.Option("--out", help="Where to write record_id,cluster_id")]
Pairs = Annotated[
    Path | None,
    typer.Option("--pairs", help="Also write left_record_id,right_record_id,score,band,rule"),
]
KeyOption = Annotated[
    Path | None,
    typer.Option("--key", help="Linkage key file (mode 600); default: a fresh random key"),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="Linkage configuration (YAML); default: built in")
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers", min=1, help="Processes for encoding and comparing; default: 2 on large inputs"
    ),
]
ReportOption = Annotated[
    Path | None, typer.Option("--report", help="Also write the report as JSON")
]

Row = tuple[str, str, dict[str, str]]
Encoded = tuple["EncodedRecord", tuple[str, ...]]
OnChunk = Callable[[Sequence["InputRecord"], Sequence[Encoded]], None]

_WORKER_ENCODER: RecordEncoder | None = None


def _start_worker(key: bytes, cascade: Cascade) -> None:
    global _WORKER_ENCODER  # noqa: PLW0603 - one encoder per worker process, built once
    from broker.link.encode import RecordEncoder

    _WORKER_ENCODER = RecordEncoder(key, cascade)


def _encode_chunk(rows: Sequence[Row]) -> list[Encoded]:
    assert _WORKER_ENCODER is not None  # set by _start_worker in this process
    encode = _WORKER_ENCODER.encode_with_notes
    return [encode(ref, source, identifiers) for ref, source, identifiers in rows]


def chunked(records: Iterable[InputRecord], size: int = CHUNK) -> Iterator[list[InputRecord]]:
    """``records`` in lists of ``size`` (the last shorter), read lazily."""
    chunk: list[InputRecord] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def encode_chunks(
    chunks: Iterable[Sequence[InputRecord]],
    key: bytes,
    cascade: Cascade,
    on_chunk: OnChunk,
    *,
    workers: int = 1,
) -> None:
    """Encode each chunk with its data-quality notes; ``on_chunk`` gets them in input order.

    ``workers`` above one encodes in that many processes, each with its own
    encoder built from ``key`` at start; at most two chunks per worker are in
    flight, so input is read no faster than it is encoded. The result is the
    same either way: encoding is deterministic under one key and cascade.
    """
    if workers <= 1:
        from broker.link.encode import RecordEncoder

        encode = RecordEncoder(key, cascade).encode_with_notes
        for chunk in chunks:
            on_chunk(chunk, [encode(r.ref, r.source, r.identifiers) for r in chunk])
        return
    in_flight: deque[tuple[Sequence[InputRecord], Future[list[Encoded]]]] = deque()
    shared = _Shared()
    with ProcessPoolExecutor(workers, initializer=_start_worker, initargs=(key, cascade)) as pool:
        for chunk in chunks:
            rows = [(r.ref, r.source, dict(r.identifiers)) for r in chunk]
            in_flight.append((chunk, pool.submit(_encode_chunk, rows)))
            if len(in_flight) >= 2 * workers:
                done, future = in_flight.popleft()
                on_chunk(done, shared(future.result()))
        while in_flight:
            done, future = in_flight.popleft()
            on_chunk(done, shared(future.result()))


class _Shared:
    """Makes equal tokens and Bloom bits of different records one object again.

    In one process the encoder's caches hand every record with the same year,
    district or name the same string and int; records that come back from a
    worker are fresh copies, which cost about 1.6 kB a record more (measured).
    The table is bounded like the encoder's caches: cleared when full.
    """

    LIMIT = 500_000

    def __init__(self) -> None:
        self._table: dict[object, object] = {}

    def __call__(self, encoded: list[Encoded]) -> list[Encoded]:
        table = self._table
        for record, _ in encoded:
            if len(table) >= self.LIMIT:
                table.clear()
            # Freshly unpickled and held by no one else, so they may be filled in place.
            for values in (record.tokens, record.blooms):
                assert isinstance(values, dict)
                for name, value in values.items():
                    values[name] = table.setdefault(value, value)
        return encoded


@contextmanager
def _progress(show: bool) -> Iterator[Progress]:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[done]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not show,
        transient=False,
    )
    with progress:
        yield progress


def _load_key(path: Path | None) -> tuple[bytes, str]:
    if path is None:
        return secrets.token_bytes(KEY_BYTES), "random"
    from broker.keys import load_linkage_key_file

    return load_linkage_key_file(path).key, "file"


def _check_paths(files: Sequence[Path], outputs: Sequence[Path | None]) -> None:
    from broker.link.files import check_sources, check_writable

    check_sources(files)
    inputs = {path.resolve() for path in files}
    given = [path for path in outputs if path is not None]
    for path in given:
        if path.resolve() in inputs:
            raise ValidationError(
                "an output would overwrite an input file; choose another name",
                code="link_output_is_input",
                location=Location(file=str(path)),
            )
        check_writable(path)
    if len({path.resolve() for path in given}) != len(given):
        raise ValidationError(
            "two outputs share one path; give each its own file",
            code="link_output_repeated",
        )


class _Collected:
    """What linking needs from the encoded rows: refs in input order, counts, usable records."""

    def __init__(self, files: Sequence[Path]) -> None:
        from broker.link.report import FileCounts

        self.refs: list[str] = []
        self.usable: list[EncodedRecord] = []
        self.linkable: dict[str, list[str]] = {path.stem: [] for path in files}
        self.counts = {path.stem: FileCounts(str(path), path.stem) for path in files}

    def __call__(self, chunk: Sequence[InputRecord], encoded: Sequence[Encoded]) -> None:
        from broker.link.report import NO_USABLE_IDENTIFIER

        for record, (encoded_record, notes) in zip(chunk, encoded, strict=True):
            # Identifiers are not kept past this point: only the ref and the encoding.
            self.refs.append(record.ref)
            counts = self.counts[record.source]
            counts.read += 1
            counts.note(record.line, notes)
            if NO_USABLE_IDENTIFIER not in notes:
                self.usable.append(encoded_record)
                self.linkable[record.source].append(record.ref)


def link(
    files: Files,
    out: Out,
    pairs: Pairs = None,
    key: KeyOption = None,
    config: ConfigOption = None,
    report: ReportOption = None,
    workers: WorkersOption = None,
) -> None:
    """Link or de-duplicate CSV files offline and report the estimated quality.

    One file is de-duplicated; several are linked across and within each.
    Possible matches are never linked: they are listed in --pairs for people to check.
    """
    from broker.link.cluster import cluster_id
    from broker.link.config import DEFAULT_CONFIG, load_linkage_config
    from broker.link.engine import link_records
    from broker.link.files import (
        check_readable,
        iter_input,
        write_clusters,
        write_pairs,
        write_text,
    )
    from broker.link.report import LinkReport, count_clusters, render

    _check_paths(files, (out, pairs, report))
    settings = DEFAULT_CONFIG if config is None else load_linkage_config(config)
    linkage_key, key_kind = _load_key(key)
    check_readable(files)  # a missing file fails before any work
    size = sum(path.stat().st_size for path in files)
    if workers is None:
        workers = ENCODE_WORKERS if size >= PARALLEL_FROM_BYTES else 1
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    collected = _Collected(files)

    with _progress(size >= PARALLEL_FROM_BYTES) as progress:
        task = progress.add_task("reading and encoding", total=None, done="")

        def on_chunk(chunk: Sequence[InputRecord], encoded: Sequence[Encoded]) -> None:
            collected(chunk, encoded)
            progress.update(task, done=f"{len(collected.refs):,} records")

        records = (record for path in files for record in iter_input(path))
        encode_chunks(
            chunked(records), linkage_key, settings.encoder_cascade(), on_chunk, workers=workers
        )
        seconds["reading_and_encoding"] = time.perf_counter() - started
        progress.update(task, total=1, completed=1)
        linking = progress.add_task(
            "linking", total=None, done=f"{len(collected.usable):,} records"
        )
        mark = time.perf_counter()
        result = link_records(collected.usable, settings, workers=workers)
        progress.update(linking, total=1, completed=1)
        seconds["linking"] = time.perf_counter() - mark

    mark = time.perf_counter()
    clusters = result.clusters
    # A rejected row is linked to nothing: a cluster of its own, so every row has one.
    write_clusters(out, ((ref, clusters.get(ref) or cluster_id(ref)) for ref in collected.refs))
    if pairs is not None:
        write_pairs(pairs, result.pairs)
    seconds["writing"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - started

    counts = collected.counts
    for source, refs in collected.linkable.items():
        count_clusters(counts[source], refs, clusters)
    quality = result.quality
    outcome = LinkReport(
        files=[counts[path.stem] for path in files],
        precision=quality.precision,
        recall=quality.recall,
        pairs_per_band=quality.pairs_per_band,
        records=len(collected.refs),
        clusters=len(set(clusters.values())) + sum(c.rejected for c in counts.values()),
        comparisons=result.comparisons,
        refused_links=quality.refused_links,
        key=key_kind,
        workers=workers,
        seconds=seconds,
    )
    console = Console(soft_wrap=True, highlight=False, emoji=False)
    render(outcome, console)
    if report is not None:
        write_text(report, outcome.to_json())
    console.print(f"clusters written to {out}" + (f", pairs to {pairs}" if pairs else ""))


def register(app: typer.Typer) -> None:
    """Add ``broker link`` to the ``broker`` command."""
    app.command("link")(link)
