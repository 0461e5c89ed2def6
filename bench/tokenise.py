"""Figure 3: tokenising throughput on one core, ``record_tokens`` against bare HMAC.

Both sides start from identifiers that are already normalised and produce the
three match-key tokens of each record (NHS number, UPN, name + date of birth
+ postcode). The broker builds each message with ``encode_parts`` and returns
hex tokens in a dict; the bare side calls ``hmac.digest`` over the identical
messages, built beforehand, and keeps the raw digests. So the ratio is the
price of the recipe around the HMAC, not of the HMAC itself.
"""

from __future__ import annotations

import hmac
import random
import secrets
import time
from collections.abc import Callable, Sequence

from bench.workload import SEED, Row, format_rate, rate, throughput_ratio
from broker.linkage import MATCH_KEYS, record_tokens
from broker.normalise import nhs_check_digit, upn_check_letter
from broker.pseudonymise import encode_parts

REPEATS = 5
_GIVEN = ("amira", "jayden", "zoe", "mohammed", "isla", "connor", "aaliyah", "theo", "ruby")
_FAMILY = ("okafor", "obrien", "smithjones", "khan", "kowalski", "osei", "taylor", "begum")


def _nhs_number(rng: random.Random) -> str:
    while True:
        first = f"{rng.randrange(10**9):09d}"
        check = nhs_check_digit(first)
        if check is not None:
            return f"{first}{check}"


def normalised_identifiers(count: int, seed: int = SEED) -> list[dict[str, str]]:
    """``count`` records of normalised identifiers that yield all three match keys."""
    rng = random.Random(seed)
    people: list[dict[str, str]] = []
    for index in range(count):
        rest = f"823{index:09d}"
        people.append(
            {
                "given_name": rng.choice(_GIVEN),
                "family_name": rng.choice(_FAMILY),
                "date_of_birth": f"20{rng.randint(8, 15):02d}-{rng.randint(1, 12):02d}-"
                f"{rng.randint(1, 28):02d}",
                "postcode": f"NS{rng.randint(1, 29)} {rng.randint(0, 9)}AB",
                "nhs_number": _nhs_number(rng),
                "upn": upn_check_letter(rest) + rest,
            }
        )
    return people


def messages(people: Sequence[dict[str, str]]) -> list[bytes]:
    """Exactly the bytes ``record_tokens`` will hash, three per record, built beforehand."""
    return [
        encode_parts(f"token:{key.name}", [person[name] for name in key.identifiers])
        for person in people
        for key in MATCH_KEYS
    ]


def _best_of(repeats: int, sides: Sequence[Callable[[], None]]) -> list[float]:
    """Each side's shortest of ``repeats`` timed runs, the sides taking turns.

    Taking turns means both sides see the same machine; the shortest run is the
    one least disturbed by everything else running on it.
    """
    best = [float("inf")] * len(sides)
    for _ in range(repeats):
        for position, work in enumerate(sides):
            started = time.perf_counter()
            work()
            best[position] = min(best[position], time.perf_counter() - started)
    return best


def run(count: int) -> list[Row]:
    """Figure 3: records per second for both sides, best of five runs each."""
    key = secrets.token_bytes(32)
    people = normalised_identifiers(count)
    bare_messages = messages(people)
    sample = record_tokens(key, people[0])
    if len(sample) != len(MATCH_KEYS):
        raise RuntimeError("the workload does not yield every match key")
    if list(sample.values()) != [hmac.digest(key, m, "sha256").hex() for m in bare_messages[:3]]:
        raise RuntimeError(
            "bare messages differ from the broker's; the baseline is not like for like"
        )

    def broker_side() -> None:
        for person in people:
            record_tokens(key, person)

    def bare_side() -> None:
        digest = hmac.digest
        for message in bare_messages:
            digest(key, message, "sha256")

    broker_seconds, bare_seconds = _best_of(REPEATS, [broker_side, bare_side])
    broker_rate, bare_rate = rate(count, broker_seconds), rate(count, bare_seconds)
    return [
        Row(
            figure="3 tokenise",
            backend="CPU, 1 core",
            broker=format_rate(broker_rate),
            bare=format_rate(bare_rate),
            ratio=throughput_ratio(broker_rate, bare_rate),
            notes=f"{count:,} records × {len(MATCH_KEYS)} tokens, best of {REPEATS}",
        )
    ]
