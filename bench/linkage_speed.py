"""The linkage speed run: two files linked end to end, and one new record against all stored.

Three stages, each in a fresh (spawned) process so that one stage's memory is
never counted in another's peak:

1. generate: a moderate-profile town (``generate_town``) big enough for the
   requested records plus the probes; its records, pooled across agencies,
   are written as ``a.csv`` and ``b.csv`` (half each) and ``probes.csv``.
2. link: read both files, encode every record with ``RecordEncoder``
   (``workers`` forked processes), ``link_records`` (block, compare, fit,
   score, cluster; ``workers`` compare processes). This is the end-to-end wall
   time and peak memory (``ru_maxrss`` of the process and of its largest
   child). Then, outside that time: comparisons per second of the similarity
   step alone (``compare`` over candidate pairs, one process), and each probe
   encoded and linked against every stored record through the ``BlockIndex``
   (candidates, compare, score, band), timed one by one.
3. the bare cost: the same number of HMAC-SHA256 calls the encoder made,
   each a one-shot ``hmac.digest``, timed in the link process.

Targets (issue 5): under 5 minutes and 6 GB for 1,000,000 records; under
20 ms at p99 for one record against 1,000,000.
"""

from __future__ import annotations

import csv
import hmac
import multiprocessing
import resource
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from broker.bloom import Encoder, bigrams
from broker.link.blocking import build_index
from broker.link.encode import RecordEncoder
from broker.link.engine import default_steps, link_records
from broker.link.types import Band, EncodedRecord
from broker.pseudonymise import Tokeniser
from broker.synth import AGENCIES, CANONICAL, MAX_PEOPLE, generate_town

PROBES = 1_000
# Moderate towns give about 1.14 records a person; a margin so the pool is never short.
_PEOPLE_PER_RECORD = 0.95
_CHUNK = 10_000
_SIMILARITY_PAIRS = 200_000
_BARE_CALLS_TIMED = 2_000_000
_BARE_MESSAGE_BYTES = 48  # about a framed token message: domain, lengths, a value or two


@dataclass(frozen=True, slots=True)
class SpeedFigures:
    """What the speed run measured."""

    records: int
    generate_seconds: float
    generate_cpu_seconds: float
    generate_people: int
    encode_seconds: float
    link_seconds: float
    cpu_seconds: float
    comparisons: int
    clusters: int
    peak_self_mb: float
    peak_encoded_mb: float
    peak_children_mb: float
    similarity_per_second: float
    hmac_calls: int
    bare_hmac_seconds: float
    bare_calls_timed: int
    probe_stored: int
    probe_p50_ms: float
    probe_p99_ms: float
    probe_link_p99_ms: float
    probe_cpu_p99_ms: float
    probe_hmac_calls: float
    probe_candidates_mean: float

    @property
    def total_seconds(self) -> float:
        """Encode and link: the end-to-end time the target is about."""
        return self.encode_seconds + self.link_seconds

    @property
    def bare_per_call(self) -> float:
        """Seconds per one-shot HMAC-SHA256 call."""
        return self.bare_hmac_seconds / self.hmac_calls if self.hmac_calls else 0.0


def _generate(records: int, seed: int, out: str) -> tuple[float, float, int]:
    started, cpu = time.perf_counter(), time.process_time()
    people = min(MAX_PEOPLE, int((records + PROBES) * _PEOPLE_PER_RECORD) + 100)
    town = generate_town(seed=seed, people=people, profile="moderate")
    generated, generated_cpu = time.perf_counter() - started, time.process_time() - cpu
    pool = [(agency, row) for agency in AGENCIES for row in town.rows[agency]]
    if len(pool) < records + PROBES:
        raise SystemExit(f"the town made {len(pool):,} records, fewer than asked")
    # Alternate agencies' records between the files, so each file holds every agency.
    files: dict[str, list[dict[str, str]]] = {"a": [], "b": [], "probes": []}
    for k, (agency, row) in enumerate(pool[: records + PROBES]):
        name = "probes" if k >= records else ("a" if k % 2 == 0 else "b")
        files[name].append({**row, "record_id": f"{agency}-{row['record_id']}"})
    for name, rows in files.items():
        with (Path(out) / f"{name}.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CANONICAL, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    return generated, generated_cpu, people


def _read(path: Path, source: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """Each row as (ref, source, the canonical values): tuples, since a dict a row
    for a million rows would cost more memory than the linking itself."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        if tuple(next(reader)) != CANONICAL:
            raise SystemExit(f"{path.name} does not have the canonical columns")
        return [(f"{source}:{values[0]}", source, tuple(values)) for values in reader]


class _HmacCount:
    """Counts the HMAC-SHA256 calls an encoder makes, by wrapping the two places that make them.

    ``Tokeniser._hmac_hex`` makes one per token it computes (cached tokens make
    none); ``Encoder.field_bits`` makes one per bigram of the value.
    """

    calls = 0

    @classmethod
    def install(cls) -> Callable[[], None]:
        token, bits = Tokeniser._hmac_hex, Encoder.field_bits

        def counted_token(self: Tokeniser, message: bytes) -> str:
            cls.calls += 1
            return token(self, message)

        def counted_bits(self: Encoder, field: str, value: str, salt: str) -> int:
            cls.calls += len(bigrams(value))
            return bits(self, field, value, salt)

        Tokeniser._hmac_hex = counted_token  # type: ignore[method-assign]
        Encoder.field_bits = counted_bits  # type: ignore[method-assign]

        def restore() -> None:
            Tokeniser._hmac_hex = token  # type: ignore[method-assign]
            Encoder.field_bits = bits  # type: ignore[method-assign]

        return restore


# Set in the link process before forking the encoders; read by them, never pickled.
_ROWS: list[tuple[str, str, tuple[str, ...]]] = []
_KEY = b""


def _encode_range(bounds: tuple[int, int]) -> tuple[list[EncodedRecord], int]:
    # One encoder per chunk, as a separate process would have: its caches start cold.
    encoder = RecordEncoder(_KEY)
    before = _HmacCount.calls
    out = [
        encoder.encode(ref, source, dict(zip(CANONICAL, values, strict=True)))
        for ref, source, values in _ROWS[bounds[0] : bounds[1]]
    ]
    return out, _HmacCount.calls - before


def _encode_all(workers: int) -> tuple[list[EncodedRecord], int]:
    n = len(_ROWS)
    ranges = [(start, min(start + _CHUNK * 10, n)) for start in range(0, n, _CHUNK * 10)]
    restore = _HmacCount.install()
    try:
        if workers > 1 and len(ranges) > 1:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                parts = pool.map(_encode_range, ranges, chunksize=1)
        else:
            parts = [_encode_range(r) for r in ranges]
    finally:
        restore()
    records = [record for part, _ in parts for record in part]
    return records, sum(count for _, count in parts)


def _similarity_rate(records: Sequence[EncodedRecord], index: Any) -> float:
    compare = default_steps()[1]
    pairs: list[tuple[EncodedRecord, EncodedRecord]] = []
    for position, record in enumerate(records):
        pairs.extend((records[o], record) for o in index.candidates(record) if o < position)
        if len(pairs) >= _SIMILARITY_PAIRS:
            break
    started = time.perf_counter()
    for left, right in pairs:
        compare(left, right)
    return len(pairs) / (time.perf_counter() - started)


def _bare(calls: int) -> tuple[float, int]:
    key = secrets.token_bytes(32)
    messages = [secrets.token_bytes(_BARE_MESSAGE_BYTES) for _ in range(1024)]
    timed = min(calls, _BARE_CALLS_TIMED)
    digest = hmac.digest
    started = time.perf_counter()
    for k in range(timed):
        digest(key, messages[k & 1023], "sha256")
    elapsed = time.perf_counter() - started
    return (elapsed * calls / timed if timed else 0.0), timed


def _link(workers: int, out: str) -> dict[str, Any]:
    global _ROWS, _KEY  # noqa: PLW0603 - handed to forked encoders without pickling
    folder = Path(out)
    _KEY = secrets.token_bytes(32)
    started = time.perf_counter()
    _ROWS = _read(folder / "a.csv", "a") + _read(folder / "b.csv", "b")
    records, hmac_calls = _encode_all(workers)
    encoded = time.perf_counter()
    encoded_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"speed: encoded {len(records):,} in {encoded - started:.1f} s; linking", flush=True)
    _ROWS = []
    result = link_records(records, workers=workers)
    linked = time.perf_counter()
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    self_mb, children_mb = own.ru_maxrss / 1024, children.ru_maxrss / 1024
    # CPU of this process and its encoders and comparers: on a shared machine the
    # wall time also holds the time other work took the cores.
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    clusters = len(set(result.clusters.values()))
    model, comparisons = result.model, result.comparisons
    del result
    print(f"speed: linked in {linked - encoded:.1f} s; probing", flush=True)
    assert model is not None  # link_records always returns the model it used
    index = build_index(records)
    rate = _similarity_rate(records, index)
    compare = default_steps()[1]
    encoder = RecordEncoder(_KEY)
    probes = [
        (ref, source, dict(zip(CANONICAL, values, strict=True)))
        for ref, source, values in _read(folder / "probes.csv", "probe")
    ]
    for _ref, source, row in probes[:10]:
        encoder.encode("warm", source, row)  # the broker's encoder is warm too
    probe_total, probe_link, probe_cpu, candidates = [], [], [], 0
    restore = _HmacCount.install()
    before = _HmacCount.calls
    try:
        for ref, source, row in probes:
            begin, begin_cpu = time.perf_counter(), time.process_time()
            probe = encoder.encode(ref, source, row)
            middle = time.perf_counter()
            found = index.candidates(probe)
            for other in found:
                levels, rule = compare(records[other], probe)
                model.band(model.score(levels, rule)[1]) is Band.MATCH  # noqa: B015
            end = time.perf_counter()
            probe_cpu.append(time.process_time() - begin_cpu)
            probe_total.append(end - begin)
            probe_link.append(end - middle)
            candidates += len(found)
    finally:
        restore()
    probe_calls = (_HmacCount.calls - before) / len(probe_total)
    bare_seconds, bare_timed = _bare(hmac_calls)
    return {
        "records": len(records),
        "encode_seconds": encoded - started,
        "link_seconds": linked - encoded,
        "cpu_seconds": cpu,
        "comparisons": comparisons,
        "clusters": clusters,
        "peak_self_mb": self_mb,
        "peak_encoded_mb": encoded_mb,
        "peak_children_mb": children_mb,
        "similarity_per_second": rate,
        "hmac_calls": hmac_calls,
        "bare_hmac_seconds": bare_seconds,
        "bare_calls_timed": bare_timed,
        "probe_stored": len(records),
        "probe_p50_ms": statistics.median(probe_total) * 1000,
        "probe_p99_ms": _percentile(probe_total, 0.99) * 1000,
        "probe_link_p99_ms": _percentile(probe_link, 0.99) * 1000,
        "probe_cpu_p99_ms": _percentile(probe_cpu, 0.99) * 1000,
        "probe_hmac_calls": probe_calls,
        "probe_candidates_mean": candidates / len(probe_total),
    }


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _call_and_send(function: Callable[..., Any], args: tuple[Any, ...], sender: Any) -> None:
    sender.send(function(*args))
    sender.close()


def _in_fresh_process(function: Callable[..., Any], *args: Any) -> Any:
    # A plain (not daemonic) process, since the link stage forks encoders and comparers.
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_call_and_send, args=(function, args, sender))
    process.start()
    sender.close()
    try:
        result = receiver.recv()
    except EOFError:
        raise SystemExit("a speed stage failed; its error is printed above") from None
    finally:
        process.join()
    return result


def run_speed(records: int, seed: int, workers: int, console: Console) -> SpeedFigures:
    """Generate, then link end to end in a fresh process, then probe; see the module docstring."""
    with tempfile.TemporaryDirectory(prefix="accord-linkage-speed-") as out:
        console.log(f"speed: generating {records:,} records and {PROBES:,} probes")
        seconds, cpu, people = _in_fresh_process(_generate, records, seed, out)
        console.log(f"speed: generated in {seconds:.1f} s; encoding and linking")
        measured = _in_fresh_process(_link, workers, out)
    return SpeedFigures(
        generate_seconds=seconds, generate_cpu_seconds=cpu, generate_people=people, **measured
    )


def _rows(f: SpeedFigures) -> Iterator[tuple[str, str, str, str]]:
    per_call = f.bare_per_call
    bare_probe = f.probe_hmac_calls * per_call * 1000
    yield (
        f"link {f.records:,} records (two files) end to end",
        f"{f.total_seconds:.1f} s (encode {f.encode_seconds:.1f} + link {f.link_seconds:.1f})",
        f"{f.bare_hmac_seconds:.1f} s for {f.hmac_calls:,} HMACs "
        f"(x{f.total_seconds / f.bare_hmac_seconds:.0f})"
        if f.bare_hmac_seconds
        else "-",
        "under 300 s",
    )
    yield (
        "  CPU time of it (process and children; reading the files included)",
        f"{f.cpu_seconds:.1f} s",
        f"x{f.cpu_seconds / f.bare_hmac_seconds:.0f}" if f.bare_hmac_seconds else "-",
        "-",
    )
    yield (
        "peak memory (process; largest child; process once encoded)",
        f"{f.peak_self_mb:,.0f} MB; {f.peak_children_mb:,.0f} MB; {f.peak_encoded_mb:,.0f} MB",
        "-",
        "under 6 GB",
    )
    yield (
        "comparisons (clusters)",
        f"{f.comparisons:,} ({f.clusters:,})",
        "-",
        "-",
    )
    yield (
        "similarity step, one process",
        f"{f.similarity_per_second:,.0f} comparisons/s",
        "-",
        "-",
    )
    yield (
        f"one record against {f.probe_stored:,} stored, p50 / p99 ({PROBES:,} probes)",
        f"{f.probe_p50_ms:.2f} / {f.probe_p99_ms:.2f} ms",
        f"{bare_probe:.3f} ms for {f.probe_hmac_calls:.0f} HMACs "
        f"(p99 x{f.probe_p99_ms / bare_probe:.0f})"
        if bare_probe
        else "-",
        "p99 under 20 ms",
    )
    yield (
        "  p99 of its CPU time; p99 linking alone (no encoding); mean candidates",
        f"{f.probe_cpu_p99_ms:.2f} ms; {f.probe_link_p99_ms:.2f} ms; {f.probe_candidates_mean:.1f}",
        "-",
        "-",
    )
    yield (
        f"generate_town of {f.generate_people:,} people (moderate); its CPU time",
        f"{f.generate_seconds:.1f} s; {f.generate_cpu_seconds:.1f} s",
        "-",
        "about 2 minutes",
    )


def speed_table(figures: SpeedFigures) -> Table:
    """The speed figures, each beside the bare HMAC cost of the same run and its target."""
    table = Table(title="Linkage speed (bare: the same HMAC-SHA256 calls, one-shot hmac.digest)")
    for name in ("figure", "measured", "bare HMAC cost (ratio)", "target"):
        table.add_column(name)
    for row in _rows(figures):
        table.add_row(*row)
    return table
