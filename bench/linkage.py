"""``python -m bench.linkage``: linkage quality per corruption profile, and its speed.

For each profile (clean, moderate, hard) a town is generated with
``broker.synth.generate_town``, every agency's records are encoded with
``broker.link.encode.RecordEncoder`` under a fresh random key, linked with
``broker.link.engine.link_records`` and scored against the town's truth
(``bench.linkage_truth``): pairwise precision, recall and F1, twin pairs and
same-name-same-birthday strangers merged, the model's own estimates beside the
true figures, pairs per band and the possible-match queue. The exact-hash
baseline (one keyed token of given name, family name, date of birth and
postcode) is scored on the same records.

``--speed`` adds the speed run (``bench.linkage_speed``): two files of
500,000 records linked end to end, and one new record against 1,000,000
stored. ``--quick`` makes every size small, for a smoke test.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from bench.linkage_speed import run_speed, speed_table
from bench.linkage_truth import (
    PairScore,
    exact_key_clusters,
    merged_person_pairs,
    missed_by_mistake,
    pairwise_score,
    ref_of,
    town_truth,
)
from broker.link.encode import RecordEncoder
from broker.link.engine import link_records
from broker.link.types import Band, EncodedRecord
from broker.synth import AGENCIES, generate_town
from broker.synth_profiles import PROFILES

DEFAULT_PEOPLE = 20_000
QUICK_PEOPLE = 2_000
BASELINE_KEY = "name_dob_postcode"


@dataclass(frozen=True, slots=True)
class QualityRow:
    """One profile's figures, for the engine and the exact-hash baseline."""

    profile: str
    records: int
    people: int
    engine: PairScore
    baseline: PairScore
    twin_pairs: int
    twins_merged: int
    baseline_twins_merged: int
    stranger_pairs: int
    strangers_merged: int
    sibling_pairs: int
    siblings_merged: int
    baseline_strangers_merged: int
    estimated_precision: float
    estimated_recall: float
    per_band: dict[Band, int]
    queue_records: int
    refused_links: int
    comparisons: int
    encode_seconds: float
    link_seconds: float
    missed: dict[str, tuple[int, int]]


def encode_town(
    encoder: RecordEncoder, rows: dict[str, list[dict[str, str]]]
) -> list[EncodedRecord]:
    """Every agency's rows as encoded records, ref ``agency:record_id``, source the agency."""
    return [
        encoder.encode(ref_of(agency, row["record_id"]), agency, row)
        for agency in AGENCIES
        for row in rows[agency]
    ]


def quality_row(profile: str, people: int, seed: int, workers: int) -> QualityRow:
    """Generate, encode, link and score one profile's town."""
    town = generate_town(seed=seed, people=people, profile=profile)
    truth = town_truth(town)
    # A key from the seed, so a run can be repeated exactly (the data are synthetic).
    encoder = RecordEncoder(random.Random(seed).randbytes(32))
    started = time.perf_counter()
    records = encode_town(encoder, town.rows)
    encoded = time.perf_counter()
    result = link_records(records, workers=workers)
    linked = time.perf_counter()
    clusters = dict(result.clusters)
    baseline = exact_key_clusters({r.ref: r.tokens.get(BASELINE_KEY) for r in records})
    possible = [p for p in result.pairs if p.band is Band.POSSIBLE]
    queue = {ref for p in possible for ref in (p.left_ref, p.right_ref)}
    return QualityRow(
        profile=profile,
        records=len(records),
        people=len(set(truth.persons.values())),
        engine=pairwise_score(clusters, truth.persons),
        baseline=pairwise_score(baseline, truth.persons),
        twin_pairs=len(truth.twin_pairs),
        twins_merged=merged_person_pairs(clusters, truth.persons, truth.twin_pairs),
        baseline_twins_merged=merged_person_pairs(baseline, truth.persons, truth.twin_pairs),
        stranger_pairs=len(truth.stranger_pairs),
        strangers_merged=merged_person_pairs(clusters, truth.persons, truth.stranger_pairs),
        sibling_pairs=len(truth.sibling_pairs),
        siblings_merged=merged_person_pairs(clusters, truth.persons, truth.sibling_pairs),
        baseline_strangers_merged=merged_person_pairs(
            baseline, truth.persons, truth.stranger_pairs
        ),
        estimated_precision=result.quality.precision,
        estimated_recall=result.quality.recall,
        per_band=dict(result.quality.pairs_per_band),
        queue_records=len(queue),
        refused_links=result.quality.refused_links,
        comparisons=result.comparisons,
        encode_seconds=encoded - started,
        link_seconds=linked - encoded,
        missed=missed_by_mistake(clusters, truth.persons, truth.mistakes),
    )


def _metrics(row: QualityRow) -> list[tuple[str, str]]:
    bands = row.per_band
    return [
        ("records (people)", f"{row.records:,} ({row.people:,})"),
        ("precision", f"{row.engine.precision:.4f}"),
        ("recall", f"{row.engine.recall:.4f}"),
        ("F1", f"{row.engine.f1:.4f}"),
        ("model's estimated precision", f"{row.estimated_precision:.4f}"),
        ("model's estimated recall", f"{row.estimated_recall:.4f}"),
        ("twin pairs merged", f"{row.twins_merged} of {row.twin_pairs}"),
        ("same-name-same-birthday strangers merged",
         f"{row.strangers_merged} of {row.stranger_pairs}"),
        ("other sibling pairs merged", f"{row.siblings_merged} of {row.sibling_pairs}"),
        ("pairs: match / possible / non-match",
         f"{bands.get(Band.MATCH, 0):,} / {bands.get(Band.POSSIBLE, 0):,} / "
         f"{bands.get(Band.NON_MATCH, 0):,}"),
        ("links refused by the chaining guard", f"{row.refused_links:,}"),
        ("possible-match queue: pairs (records)",
         f"{bands.get(Band.POSSIBLE, 0):,} ({row.queue_records:,})"),
        ("exact-hash baseline precision", f"{row.baseline.precision:.4f}"),
        ("exact-hash baseline recall", f"{row.baseline.recall:.4f}"),
        ("exact-hash baseline F1", f"{row.baseline.f1:.4f}"),
        ("exact-hash twins / strangers merged",
         f"{row.baseline_twins_merged} / {row.baseline_strangers_merged}"),
        ("comparisons", f"{row.comparisons:,}"),
        ("encode + link seconds", f"{row.encode_seconds:.1f} + {row.link_seconds:.1f}"),
    ]  # fmt: skip


def quality_table(rows: Sequence[QualityRow]) -> Table:
    """The quality table, a column per profile: true figures, the model's estimates, baseline.

    Targets (issue 5): precision >= 0.999 and recall >= 0.99 on moderate;
    precision >= 0.995 and recall >= 0.95 on hard; no twin pair merged.
    """
    table = Table(title="Linkage quality against the synthetic town's truth (record pairs)")
    table.add_column("figure")
    for row in rows:
        table.add_column(row.profile, justify="right")
    columns = [_metrics(row) for row in rows]
    for k, (name, _) in enumerate(columns[0] if columns else []):
        table.add_row(name, *(column[k][1] for column in columns))
    return table


def missed_table(rows: Sequence[QualityRow]) -> Table:
    """True pairs the engine missed, by the mistakes their records carry (where recall goes)."""
    table = Table(title="True pairs missed, by a mistake on either record (missed of pairs)")
    table.add_column("mistake")
    for row in rows:
        table.add_column(row.profile, justify="right")
    names = sorted({name for row in rows for name in row.missed})
    for name in names:
        cells = []
        for row in rows:
            missed, total = row.missed.get(name, (0, 0))
            cells.append(f"{missed:,} of {total:,} ({missed / total:.1%})" if total else "-")
        table.add_row(name, *cells)
    return table


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line of ``python -m bench.linkage``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.linkage",
        description="Linkage quality per corruption profile, and (--speed) its speed.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument(
        "--people",
        type=int,
        metavar="N",
        help=f"people per quality town (default {DEFAULT_PEOPLE:,}; {QUICK_PEOPLE:,} with --quick)",
    )
    parser.add_argument("--seed", type=int, default=1, help="the towns' seed (default 1)")
    parser.add_argument(
        "--profiles", nargs="+", choices=tuple(PROFILES), default=list(PROFILES), metavar="P"
    )
    parser.add_argument("--workers", type=int, default=2, help="compare processes (default 2)")
    parser.add_argument(
        "--speed",
        action="store_true",
        help="also the speed run: 2 x 500,000 records, and one record against 1,000,000",
    )
    parser.add_argument(
        "--speed-records",
        type=int,
        metavar="N",
        help="records in the speed run, split into two files (default 1,000,000; 20,000 quick)",
    )
    parser.add_argument("--no-quality", action="store_true", help="leave out the quality run")
    arguments = parser.parse_args(argv)
    if arguments.people is not None and arguments.people < 2:
        parser.error("--people must be at least 2")
    return arguments


def main(argv: Sequence[str] | None = None) -> None:
    """Run the quality bench (and the speed run if asked) and print the tables."""
    arguments = parse_arguments(argv)
    console = Console()
    if not arguments.no_quality:
        people = arguments.people or (QUICK_PEOPLE if arguments.quick else DEFAULT_PEOPLE)
        rows = []
        for profile in arguments.profiles:
            console.log(f"quality: {profile}, {people:,} people")
            rows.append(quality_row(profile, people, arguments.seed, arguments.workers))
        console.print(quality_table(rows))
        console.print(missed_table(rows))
    if arguments.speed:
        records = arguments.speed_records or (20_000 if arguments.quick else 1_000_000)
        console.print(speed_table(run_speed(records, arguments.seed, arguments.workers, console)))


if __name__ == "__main__":
    main()
