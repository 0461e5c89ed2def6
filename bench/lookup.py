"""Figure 4: service-level lookup latency on the SQLite store figure 1 filled.

The broker side calls ``Broker.lookup`` as social care in the safeguarding
triage purpose with a young person's given name, family name, date of birth
and postcode as a practitioner would type them: the policy decision,
normalisation, the token, the linkage queries, reading and unsealing the
partners' records, the release, the audit entry and its commit. The bare side
normalises the same identifiers, makes the same token and runs one indexed
SELECT on the bare table. Lookups alternate between the two sides so both
see the same machine.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from bench.bare import SELECT_BY_NDP, open_sqlite
from bench.ingest import FilledStore
from bench.workload import (
    AGREEMENT,
    LOOKUP_IDENTIFIERS,
    PURPOSE,
    RECIPIENT,
    SEED,
    Row,
    format_ms,
    latency_ratio,
    percentile,
)

WARM_UP = 20


def _describe(samples: Sequence[float]) -> str:
    return f"p50 {format_ms(percentile(samples, 0.5))}, p99 {format_ms(percentile(samples, 0.99))}"


def run(store: FilledStore, count: int) -> list[Row]:
    """Figure 4: p50 and p99 of ``count`` single lookups each side, after a short warm-up."""
    rng = random.Random(SEED + 4)
    chosen = [rng.choice(store.records) for _ in range(WARM_UP + count)]
    queries = [{name: record[name] for name in LOOKUP_IDENTIFIERS} for record in chosen]
    broker = store.runtime.broker
    connection = open_sqlite(store.bare_path)
    broker_times: list[float] = []
    bare_times: list[float] = []
    misses = 0
    try:
        for position, identifiers in enumerate(queries):
            started = time.perf_counter()
            result = broker.lookup(
                agency=RECIPIENT, agreement_id=AGREEMENT, purpose=PURPOSE, identifiers=identifiers
            )
            middle = time.perf_counter()
            found = connection.execute(
                SELECT_BY_NDP, (store.kit.ndp_token(identifiers),)
            ).fetchone()
            finished = time.perf_counter()
            if not result.matched or not result.holdings or found is None:
                misses += 1
            if position >= WARM_UP:
                broker_times.append(middle - started)
                bare_times.append(finished - middle)
    finally:
        connection.close()
    if misses:
        raise RuntimeError(f"{misses} lookups found nothing; the figure would time misses")
    return [
        Row(
            figure="4 lookup",
            backend="SQLite (temp file)",
            broker=_describe(broker_times),
            bare=_describe(bare_times),
            ratio=latency_ratio(percentile(broker_times, 0.5), percentile(bare_times, 0.5)),
            notes=f"{count:,} lookups (+{WARM_UP} warm-up) in {len(store.records):,} records",
        )
    ]
