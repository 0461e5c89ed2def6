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

import inspect
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from broker.errors import Location, ValidationError

if TYPE_CHECKING:
    from broker.link.config import LinkageConfig
    from broker.link.encode import Cascade, RecordEncoder
    from broker.link.engine import LinkResult
    from broker.link.files import InputFile, InputRecord
    from broker.link.report import FileCounts
    from broker.link.types import EncodedRecord

KEY_BYTES = 32
#: From this many records, encoding runs in ``ENCODE_WORKERS`` processes (measured; see docs).
PARALLEL_FROM = 20_000
ENCODE_WORKERS = 2
CHUNK = 5_000
#: From this much input (about 20,000 rows), progress is shown on stderr.
PROGRESS_FROM_BYTES = 2_000_000

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

_WORKER_ENCODER: RecordEncoder | None = None


def _start_worker(key: bytes, cascade: Cascade) -> None:
    global _WORKER_ENCODER  # noqa: PLW0603 - one encoder per worker process, built once
    from broker.link.encode import RecordEncoder

    _WORKER_ENCODER = RecordEncoder(key, cascade)


def _encode_chunk(rows: Sequence[Row]) -> list[Encoded]:
    assert _WORKER_ENCODER is not None  # set by _start_worker in this process
    encode = _WORKER_ENCODER.encode_with_notes
    return [encode(ref, source, identifiers) for ref, source, identifiers in rows]


def _chunks(records: Sequence[InputRecord]) -> Iterator[list[Row]]:
    for start in range(0, len(records), CHUNK):
        yield [(r.ref, r.source, dict(r.identifiers)) for r in records[start : start + CHUNK]]


def encode_all(
    records: Sequence[InputRecord],
    key: bytes,
    cascade: Cascade,
    *,
    workers: int,
    advance: Callable[[int], None] = lambda _: None,
) -> list[Encoded]:
    """Each record encoded with its data-quality notes, in input order.

    ``workers`` above one encodes chunks in that many processes; the result is
    identical (encoding is deterministic under one key and cascade).
    """
    out: list[Encoded] = []
    if workers <= 1:
        from broker.link.encode import RecordEncoder

        encoder = RecordEncoder(key, cascade)
        for start in range(0, len(records), CHUNK):
            chunk = records[start : start + CHUNK]
            out.extend(encoder.encode_with_notes(r.ref, r.source, r.identifiers) for r in chunk)
            advance(len(chunk))
        return out
    with ProcessPoolExecutor(
        max_workers=workers, initializer=_start_worker, initargs=(key, cascade)
    ) as pool:
        for encoded in pool.map(_encode_chunk, _chunks(records)):
            out.extend(encoded)
            advance(len(encoded))
    return out


@contextmanager
def _progress(show: bool) -> Iterator[Progress]:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not show,
        transient=False,
    )
    with progress:
        yield progress


def _link(
    link_records: Callable[..., LinkResult],
    records: Sequence[EncodedRecord],
    settings: LinkageConfig,
    workers: int,
) -> LinkResult:
    # Comparing in forked workers arrived in the engine after this command; older engines
    # take no ``workers`` and compare in one process.
    if workers > 1 and "workers" in inspect.signature(link_records).parameters:
        return link_records(records, settings, workers=workers)
    return link_records(records, settings)


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


def _encode_inputs(
    inputs: Sequence[InputFile],
    key: bytes,
    settings: LinkageConfig,
    progress: Progress,
    seconds: dict[str, float],
    workers: int | None,
) -> tuple[list[EncodedRecord], dict[str, FileCounts], int]:
    """Encode every row; count notes per file. Returns the linkable records, counts, workers."""
    from broker.link.report import NO_USABLE_IDENTIFIER, FileCounts

    records = [record for one in inputs for record in one.records]
    if workers is None:
        workers = ENCODE_WORKERS if len(records) >= PARALLEL_FROM else 1
    task = progress.add_task("encoding", total=len(records))
    mark = time.perf_counter()
    encoded = encode_all(
        records,
        key,
        settings.encoder_cascade(),
        workers=workers,
        advance=lambda n: progress.advance(task, n),
    )
    seconds["encoding"] = time.perf_counter() - mark
    counts = {one.source: FileCounts(str(one.path), one.source) for one in inputs}
    usable = []
    for record, (encoded_record, notes) in zip(records, encoded, strict=True):
        file_counts = counts[record.source]
        file_counts.read += 1
        file_counts.note(record.line, notes)
        if NO_USABLE_IDENTIFIER not in notes:
            usable.append(encoded_record)
    return usable, counts, workers


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
    from broker.link.files import read_input, write_clusters, write_pairs, write_text
    from broker.link.report import LinkReport, count_clusters, render

    _check_paths(files, (out, pairs, report))
    settings = DEFAULT_CONFIG if config is None else load_linkage_config(config)
    linkage_key, key_kind = _load_key(key)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    show = sum(path.stat().st_size for path in files if path.is_file()) > PROGRESS_FROM_BYTES

    with _progress(show) as progress:
        reading = progress.add_task("reading", total=len(files))
        inputs: list[InputFile] = []
        for path in files:
            inputs.append(read_input(path))
            progress.advance(reading)
        seconds["reading"] = time.perf_counter() - started
        usable, counts, used = _encode_inputs(
            inputs, linkage_key, settings, progress, seconds, workers
        )
        linking = progress.add_task("linking", total=1)
        mark = time.perf_counter()
        result = _link(link_records, usable, settings, used)
        progress.advance(linking)
        seconds["linking"] = time.perf_counter() - mark

    mark = time.perf_counter()
    clusters = result.clusters
    records = [record for one in inputs for record in one.records]
    # A rejected row is linked to nothing: a cluster of its own, so every row has one.
    write_clusters(out, ((r.ref, clusters.get(r.ref) or cluster_id(r.ref)) for r in records))
    if pairs is not None:
        write_pairs(pairs, result.pairs)
    seconds["writing"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - started

    for one in inputs:
        linked_refs = [r.ref for r in one.records if r.ref in clusters]
        count_clusters(counts[one.source], linked_refs, clusters)
    quality = result.quality
    outcome = LinkReport(
        files=[counts[one.source] for one in inputs],
        precision=quality.precision,
        recall=quality.recall,
        pairs_per_band=quality.pairs_per_band,
        records=len(records),
        clusters=len(set(clusters.values())) + sum(c.rejected for c in counts.values()),
        comparisons=result.comparisons,
        refused_links=quality.refused_links,
        key=key_kind,
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
