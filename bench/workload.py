"""What every figure shares: the synthetic workload, a broker in a temp folder, result rows.

The workload is school-attendance records as a school's extract holds them
(strings, mixed case, compact postcodes), distinct by construction and the
same on every run for a given seed.
"""

from __future__ import annotations

import functools
import random
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import agreements
from agreements.demo_approvals import approve_for_demo
from broker.bootstrap import Runtime, build_runtime
from broker.clock import FixedClock
from broker.config import load_settings
from broker.keys import create_key_file
from broker.normalise import upn_check_letter

AGREEMENT = "sv-early-identification"
DATASET = "school-attendance"
PROVIDER = "school"
RECIPIENT = "social-care"
PURPOSE = "safeguarding-triage"
BATCH_SIZE = 1000
SEED = 20261126

# Inside the example agreement's life (effective 2026-01-01, expires 2028-03-31), so the
# figures do not depend on the machine's date; reading a fixed clock costs what reading
# the system clock does.
BENCH_CLOCK_AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
EXAMPLES_DIR = Path(agreements.__file__).parent / "examples"
# A benchmark is a flood by design: its copies of the examples lift the rate limits and
# lookup budgets (issue 8), which would otherwise refuse most of its requests.
BENCH_LIMITS = (
    "limits:\n"
    "  rates:\n"
    + "".join(
        f"    {kind}: {{per_minute: 1000000, burst: 1000000}}\n"
        for kind in ("ingest", "rekey", "lookup", "aggregate", "notification")
    )
    + "  lookup_budget:\n"
    "    per_day: 10000000\n"
)


@functools.cache
def bench_agreements_dir() -> Path:
    """The example agreements with BENCH_LIMITS, re-signed for demonstration (once a process)."""
    folder = Path(tempfile.mkdtemp(prefix="accord-bench-agreements-"))
    for example in sorted(EXAMPLES_DIR.glob("*.yaml")):
        text = example.read_text(encoding="utf-8")
        start, end = text.index("\nlimits:\n") + 1, text.index("\napprovals:\n")
        copy = folder / example.name
        copy.write_text(text[:start] + BENCH_LIMITS + text[end:], encoding="utf-8")
        approve_for_demo(copy)
    return folder


IDENTIFIERS = ("given_name", "family_name", "date_of_birth", "sex", "postcode", "upn")
FIELDS = (
    "attendance_pct",
    "persistent_absence",
    "suspensions_this_year",
    "excluded",
    "alternative_provision",
    "sen_support",
)
LOOKUP_IDENTIFIERS = ("given_name", "family_name", "date_of_birth", "postcode")

_GIVEN_NAMES = (
    "Amira Aaliyah Abdul Adam Aisha Alfie Amelia Archie Ava Ayaan Bilal Callum Charlie Chloe "
    "Connor Daisy Daniel Demi Dylan Ebony Eliza Ella Ethan Evie Fatima Finley Freya George "
    "Grace Hamza Harper Harry Hassan Isaac Isla Ivy Jack Jacob Jayden Jessica Kai Kayden Leah "
    "Leo Lily Logan Lucas Maisie Mason Maya Mia Mohammed Muhammad Nathan Noah Olivia Oscar "
    "Poppy Reggie Riley Rosie Ruby Ryan Sienna Sofia Theo Tyler Zainab Zara Zoë Zuzanna"
)
_FAMILY_NAMES = (
    "Okafor Ahmed Ali Anderson Bailey Begum Bennett Brown Campbell Clarke Cooper Davies Evans "
    "Fletcher Green Hall Harris Hughes Hussain Iqbal Jackson James Johnson Jones Kaur Khan "
    "Kowalski Lewis Martin Mensah Mitchell Moore Morgan Murphy Nowak O'Brien Osei Owusu Patel "
    "Phillips Price Rahman Roberts Robinson Scott Shah Singh Smith-Jones Taylor Thomas Thompson "
    "Turner Walker Ward Watson White Williams Wilson Wood Wright Young"
)
_GIVEN = tuple(_GIVEN_NAMES.split())
_FAMILY = tuple(_FAMILY_NAMES.split())
_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    figure: str
    backend: str
    broker: str
    bare: str
    ratio: str
    notes: str


def _postcode(rng: random.Random) -> str:
    district = f"NS{rng.randint(1, 29)}"
    inward = f"{rng.randint(0, 9)}{rng.choice(_INWARD_LETTERS)}{rng.choice(_INWARD_LETTERS)}"
    # As extracts hold them: sometimes compact, sometimes lower case.
    style = rng.randint(0, 2)
    if style == 0:
        return f"{district} {inward}"
    if style == 1:
        return f"{district}{inward}"
    return f"{district} {inward}".lower()


def _upn(index: int) -> str:
    rest = f"{823:03d}{index:09d}"
    return upn_check_letter(rest) + rest


def _name(rng: random.Random, pool: Sequence[str]) -> str:
    name = rng.choice(pool)
    return name.upper() if rng.random() < 0.1 else name


def school_records(count: int, seed: int = SEED) -> list[dict[str, str]]:
    """``count`` distinct school-attendance records; the same list for the same seed."""
    rng = random.Random(seed)
    first_dob = date(2008, 9, 1)
    seen: set[tuple[str, str, str, str]] = set()
    records: list[dict[str, str]] = []
    while len(records) < count:
        given, family = _name(rng, _GIVEN), _name(rng, _FAMILY)
        dob = (first_dob + timedelta(days=rng.randrange(8 * 365))).isoformat()
        postcode = _postcode(rng)
        identity = (given.casefold(), family.casefold(), dob, postcode.replace(" ", "").upper())
        if identity in seen:
            continue
        seen.add(identity)
        index = len(records)
        attendance = round(rng.uniform(40.0, 100.0), 1)
        records.append(
            {
                "record_id": f"sch-{index:07d}",
                "given_name": given,
                "family_name": family,
                "date_of_birth": dob,
                "sex": rng.choice("FM"),
                "postcode": postcode,
                "upn": _upn(index),
                "attendance_pct": f"{attendance}",
                "persistent_absence": "true" if attendance < 90 else "false",
                "suspensions_this_year": str(rng.choice((0, 0, 0, 1, 2))),
                "excluded": rng.choice(("false", "false", "false", "true")),
                "alternative_provision": rng.choice(("false", "false", "true")),
                "sen_support": rng.choice(("false", "true")),
            }
        )
    return records


def batches(records: Sequence[dict[str, str]], size: int = BATCH_SIZE) -> Iterator[list[Any]]:
    """The records in consecutive batches of ``size``."""
    for start in range(0, len(records), size):
        yield list(records[start : start + size])


def start_broker(folder: Path, database_url: str) -> Runtime:
    """A broker on ``database_url`` with a new key file in ``folder`` and the example agreements."""
    key_file = folder / "broker.key"
    create_key_file(key_file, at=BENCH_CLOCK_AT)
    settings = load_settings(
        database_url=database_url, key_file=key_file, agreements_dir=bench_agreements_dir()
    )
    return build_runtime(settings, clock=FixedClock(BENCH_CLOCK_AT))


# -- formatting ----------------------------------------------------------------


def rate(records: int, seconds: float) -> float:
    """Records per second (0 when nothing was timed)."""
    return records / seconds if seconds > 0 else 0.0


def format_rate(per_second: float) -> str:
    """A rate with a unit that keeps three significant figures readable."""
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f} M rec/s"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.1f} k rec/s"
    return f"{per_second:.0f} rec/s"


def format_ms(seconds: float) -> str:
    """A latency in milliseconds (microseconds below 0.1 ms)."""
    if seconds < 1e-4:
        return f"{seconds * 1e6:.0f} µs"
    return f"{seconds * 1e3:.2f} ms"


def throughput_ratio(broker: float, bare: float) -> str:
    """broker/bare for rates: below 1 the broker is slower."""
    if bare <= 0 or broker <= 0:
        return "n/a"
    return f"{broker / bare:.2f} ({bare / broker:.1f}× slower)"


def latency_ratio(broker: float, bare: float) -> str:
    """broker/bare for latencies: above 1 the broker is slower."""
    if bare <= 0:
        return "n/a"
    return f"{broker / bare:.1f} (p50s)"


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (0..1) of ``samples``, interpolated."""
    if len(samples) == 1:
        return samples[0]
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[round(fraction * 100) - 1]
