"""Figure 3: tokenising throughput on one core, the broker's path against bare HMAC.

Each record holds six identifiers as an extract types them (mixed case,
nicknames, apostrophes, compact postcodes, spaced NHS numbers) and yields all
five match-key tokens: NHS number, UPN, name + date of birth + postcode, and
the two fuzzy keys (given-name group, names in sorted order). The broker side
does what ingest and the at-source adapter do: ``normalise_identifiers`` for
the dataset, then ``record_tokens`` with one ``Tokeniser`` (the linkage key's
HMAC object, keyed once) for the whole batch. A second row times the
tokenising step alone, ``record_tokens`` on identifiers already normalised:
that is the issue's figure, HMAC over the same bytes against bare HMAC. The bare side
calls ``hmac.digest`` over the identical messages, built beforehand, and keeps
the raw digests; so the ratio is the price of everything around the HMAC.

``python -m bench.tokenise [--quick] [--records N]`` runs this figure alone.
"""

from __future__ import annotations

import argparse
import gc
import hmac
import random
import secrets
import time
from collections.abc import Callable, Mapping, Sequence

from agreements.models import Dataset, FieldSpec
from bench.workload import SEED, Row, format_rate, rate, throughput_ratio
from broker.ingest import normalise_identifiers
from broker.linkage import MATCH_KEYS, record_tokens
from broker.normalise import nhs_check_digit, upn_check_letter
from broker.pseudonymise import Tokeniser, encode_parts

REPEATS = 5
DEFAULT_RECORDS = 50_000
QUICK_RECORDS = 10_000
ALL_KEYS = tuple(key.name for key in MATCH_KEYS)
DATASET = Dataset(
    id="bench",
    provider="bench",
    identifiers=("given_name", "family_name", "date_of_birth", "postcode", "nhs_number", "upn"),
    fields=(FieldSpec(name="note", type="string", classification="personal"),),
)
# Nicknames and formal names side by side, so the variant key has work to do.
_GIVEN = (
    "Amira", "Bill", "William", "Katie", "Catherine", "Zoë", "jayden", "MOHAMMED", "Isla",
    "Connor", "Aaliyah", "Theo", "Ruby", "Alfie", "Becky", "Josh", "Olivia", "Liv", "Sam", "Alex",
)  # fmt: skip
_FAMILY = ("Okafor", "O'Brien", "Smith-Jones", "KHAN", "Kowalski", "Osei", "Taylor", "Begum")


def _nhs_number(rng: random.Random) -> str:
    while True:
        first = f"{rng.randrange(10**9):09d}"
        check = nhs_check_digit(first)
        if check is not None:
            return f"{first[:3]} {first[3:6]} {first[6:]}{check}"


def raw_identifiers(count: int, seed: int = SEED) -> list[dict[str, str]]:
    """``count`` records of identifiers as an extract holds them, each yielding every key."""
    rng = random.Random(seed)
    people: list[dict[str, str]] = []
    for index in range(count):
        rest = f"823{index:09d}"
        district, inward = f"NS{rng.randint(1, 29)}", f"{rng.randint(0, 9)}AB"
        people.append(
            {
                "given_name": rng.choice(_GIVEN),
                "family_name": rng.choice(_FAMILY),
                "date_of_birth": f"20{rng.randint(8, 15):02d}-{rng.randint(1, 12):02d}-"
                f"{rng.randint(1, 28):02d}",
                "postcode": rng.choice(
                    (f"{district} {inward}", f"{district}{inward}", f"{district} {inward}".lower())
                ),
                "nhs_number": _nhs_number(rng),
                "upn": upn_check_letter(rest) + rest,
            }
        )
    return people


def normalised(people: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """The broker's normalised identifiers of each record (every one must be usable)."""
    out = []
    for person in people:
        found = normalise_identifiers(person, DATASET)
        if found.invalid or found.unusable:
            raise RuntimeError("the workload holds an identifier the broker refuses")
        out.append(found.values)
    return out


def messages(people: Sequence[Mapping[str, str]]) -> list[bytes]:
    """Exactly the bytes ``record_tokens`` will hash, five per record, built beforehand."""
    return [
        encode_parts(f"token:{key.name}", key.values(person) or [])
        for person in people
        for key in MATCH_KEYS
    ]


def _best_of(repeats: int, sides: Sequence[Callable[[], None]]) -> list[float]:
    """Each side's shortest of ``repeats`` runs in CPU seconds, the sides taking turns.

    CPU time rather than wall time, because the figure is a rate per core: time
    spent waiting while other processes use the core is not this work's. The
    cyclic garbage collector is off while a side runs, as ``timeit`` has it, so
    that a collection prompted by one side's allocations is not charged to
    whichever side happens to be running. Taking turns means both sides see the
    same machine; the shortest run is the one least disturbed by everything
    else running on it.
    """
    best = [float("inf")] * len(sides)
    for _ in range(repeats):
        for position, work in enumerate(sides):
            gc.collect()
            gc.disable()
            try:
                started = time.process_time()
                work()
                best[position] = min(best[position], time.process_time() - started)
            finally:
                gc.enable()
    return best


def run(count: int) -> list[Row]:
    """Figure 3: records per second on one core for each side, best of five runs each."""
    key = secrets.token_bytes(32)
    people = raw_identifiers(count)
    values = normalised(people)
    bare_messages = messages(values)
    sample = record_tokens(key, values[0], ALL_KEYS)
    if list(sample) != list(ALL_KEYS):
        raise RuntimeError("the workload does not yield every match key")
    if list(sample.values()) != [
        hmac.digest(key, m, "sha256").hex() for m in bare_messages[: len(ALL_KEYS)]
    ]:
        raise RuntimeError(
            "bare messages differ from the broker's; the baseline is not like for like"
        )

    def normalise_and_tokenise() -> None:
        tokeniser = Tokeniser(key)
        for person in people:
            record_tokens(tokeniser, normalise_identifiers(person, DATASET).values, ALL_KEYS)

    def tokens_only() -> None:
        tokeniser = Tokeniser(key)
        for identifiers in values:
            record_tokens(tokeniser, identifiers, ALL_KEYS)

    def bare_side() -> None:
        digest = hmac.digest
        for message in bare_messages:
            digest(key, message, "sha256")

    seconds = _best_of(REPEATS, [tokens_only, normalise_and_tokenise, bare_side])
    bare_rate = rate(count, seconds[-1])
    shape = f"{count:,} records × {len(ALL_KEYS)} tokens, best of {REPEATS} (CPU time)"
    rows = [
        ("3 tokenise", "the tokenising step: record_tokens on normalised identifiers"),
        (
            "3 normalise + tokenise",
            "raw identifiers normalised, then tokenised, as ingest and the adapter do",
        ),
    ]
    return [
        Row(
            figure=figure,
            backend="CPU, 1 core",
            broker=format_rate(rate(count, side_seconds)),
            bare=format_rate(bare_rate),
            ratio=throughput_ratio(rate(count, side_seconds), bare_rate),
            notes=f"{what}; {shape}",
        )
        for (figure, what), side_seconds in zip(rows, seconds[:-1], strict=True)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run figure 3 alone: ``python -m bench.tokenise [--quick] [--records N]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.tokenise")
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_RECORDS:,} records (a few seconds)"
    )
    parser.add_argument(
        "--records", type=int, metavar="N", help=f"records (default {DEFAULT_RECORDS:,})"
    )
    arguments = parser.parse_args(argv)
    if arguments.records is not None and arguments.records < 1:
        parser.error("--records must be at least 1")
    count = arguments.records or (QUICK_RECORDS if arguments.quick else DEFAULT_RECORDS)
    for row in run(count):
        print(" | ".join([row.figure, row.backend, row.broker, row.bare, row.ratio, row.notes]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
