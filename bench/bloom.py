"""Keyed Bloom-filter encodings and Dice comparisons per second, against bare HMAC.

Records come from ``bench.workload.school_records`` and are normalised before
timing, so only encoding is timed. The broker side makes one record-level
encoding per record with one ``broker.bloom.Encoder`` (the linkage key's HMAC
object keyed once and copied per bigram). The bare side calls ``hmac.digest``
over the identical framed bigram messages, built beforehand, and keeps the raw
digests; so the ratio is the price of framing, copying and setting bits.
Comparisons are Dice coefficients between a record's encoding and the next
record's, against bare ``int`` AND and popcount over the same filters.

``python -m bench.bloom [--quick] [--records N]`` runs this alone; it is not a
row of ``python -m bench``.
"""

from __future__ import annotations

import argparse
import gc
import hmac
import secrets
import time
from collections.abc import Callable

from bench.workload import format_rate, rate, school_records, throughput_ratio
from broker.bloom import ENCODED_FIELDS, Encoder, Encoding, bigrams, birth_year_salt, dice
from broker.normalise import normalise_date, normalise_name, normalise_postcode
from broker.pseudonymise import encode_parts

REPEATS = 5
DEFAULT_RECORDS = 20_000
QUICK_RECORDS = 2_000


def _normalised(count: int) -> list[dict[str, str]]:
    return [
        {
            "given_name": normalise_name(raw["given_name"]),
            "family_name": normalise_name(raw["family_name"]),
            "date_of_birth": normalise_date(raw["date_of_birth"]),
            "postcode": normalise_postcode(raw["postcode"]),
        }
        for raw in school_records(count)
    ]


def _best(work: Callable[[], object]) -> float:
    # The fastest of several runs: the least disturbed by the rest of the machine.
    times = []
    for _ in range(REPEATS):
        gc.collect()
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def run(count: int) -> None:
    """Time encodings and comparisons over ``count`` records and print one table."""
    key = secrets.token_bytes(32)
    records = _normalised(count)
    salts = [birth_year_salt(record["date_of_birth"]) for record in records]
    encoder = Encoder(key)
    messages = [
        encode_parts(f"bloom:{field}", [salt, gram])
        for record, salt in zip(records, salts, strict=True)
        for field in ENCODED_FIELDS
        for gram in bigrams(record[field])
    ]

    def encode_all() -> list[Encoding]:
        return [encoder.encode_record(r, s) for r, s in zip(records, salts, strict=True)]

    def bare_hmac() -> list[bytes]:
        return [hmac.digest(key, message, "sha256") for message in messages]

    encoded = encode_all()
    pairs = list(zip(encoded, encoded[1:] + encoded[:1], strict=True))
    raw_pairs = [(left.bits, right.bits) for left, right in pairs]

    def compare_all() -> list[float]:
        return [dice(left, right) for left, right in pairs]

    def bare_compare() -> list[int]:
        return [(left & right).bit_count() for left, right in raw_pairs]

    encode_rate = rate(count, _best(encode_all))
    bare_rate = rate(count, _best(bare_hmac))
    dice_rate = rate(count, _best(compare_all))
    popcount_rate = rate(count, _best(bare_compare))
    per_record = len(messages) / count
    print(f"records: {count:,}; bigram messages: {len(messages):,} ({per_record:.1f} a record)")
    print(f"{'':32}{'broker':>16}{'bare':>16}  ratio")
    print(
        f"{'record encodings':32}{format_rate(encode_rate):>16}{format_rate(bare_rate):>16}"
        f"  {throughput_ratio(encode_rate, bare_rate)}"
    )
    print(
        f"{'Dice comparisons':32}{format_rate(dice_rate).replace('rec', 'cmp'):>16}"
        f"{format_rate(popcount_rate).replace('rec', 'cmp'):>16}"
        f"  {throughput_ratio(dice_rate, popcount_rate)}"
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.bloom``: parse the options and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RECORDS:,} records")
    parser.add_argument("--records", type=int, default=None, help="how many records to encode")
    args = parser.parse_args(argv)
    count = args.records or (QUICK_RECORDS if args.quick else DEFAULT_RECORDS)
    run(count)


if __name__ == "__main__":
    main()
