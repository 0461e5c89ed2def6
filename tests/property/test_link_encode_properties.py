"""Properties of linkage encoding, blocking and comparison over random identifiers and keys."""

from __future__ import annotations

import random
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.bloom import Encoding, dice
from broker.link.blocking import BlockIndex, candidate_pairs
from broker.link.compare import compare
from broker.link.encode import RecordEncoder
from broker.link.types import EncodedRecord, Level
from broker.normalise import nhs_check_digit

keys = st.binary(min_size=32, max_size=32)
# A small pool makes shared blocks, near names and equal values common.
GIVEN = ["Oliver", "Olivia", "Jack", "Jak", "William", "Bill", "Noah", "Nia", "Zoë", "Amelia"]
FAMILY = ["Hughes", "Hughs", "Smith", "Smyth", "O'Brien", "Patel", "Nowak", "Smith-Jones"]
names = st.one_of(st.sampled_from(GIVEN + FAMILY), st.text("abcdefghij", min_size=1, max_size=8))
dates = st.dates(min_value=date(2008, 1, 1), max_value=date(2010, 12, 31)).map(date.isoformat)
postcodes = st.sampled_from(["LS6 2AB", "ls62ab", "LS6 2XY", "LS6 9AA", "M1 1AE", "D02 X285"])


def _nhs(nine: str) -> str:
    check = nhs_check_digit(nine)
    return nine + str(check) if check is not None else nine + "0"  # the latter fails its check


nhs_numbers = st.sampled_from(["943476591", "401023213", "123456788"]).map(_nhs)
identifiers = st.fixed_dictionaries(
    {},
    optional={
        "given_name": names,
        "family_name": names,
        "date_of_birth": dates,
        "sex": st.sampled_from(["M", "F", "U"]),
        "postcode": postcodes,
        "address_line": st.sampled_from(["1 High Street", "1 high st", "2 Low Road"]),
        "nhs_number": nhs_numbers,
    },
)
ENCODER = RecordEncoder(bytes(range(32)))


def encode_all(batch: list[dict[str, str]]) -> list[EncodedRecord]:
    return [ENCODER.encode(f"s:{n}", "s", ids) for n, ids in enumerate(batch)]


@given(identifiers, identifiers)
def test_compare_is_symmetric(left: dict[str, str], right: dict[str, str]) -> None:
    a, b = ENCODER.encode("a:1", "a", left), ENCODER.encode("b:1", "b", right)
    assert compare(a, b) == compare(b, a)


@given(identifiers)
def test_a_record_compared_with_itself_agrees_wherever_it_has_a_value(ids: dict[str, str]) -> None:
    record = ENCODER.encode("a:1", "a", ids)
    levels, rule = compare(record, record)
    assert set(levels) <= {Level.AGREE, Level.MISSING}
    assert all(dice(Encoding(bits), Encoding(bits)) == 1.0 for bits in record.blooms.values())
    if "name_dob" in record.tokens or "nhs" in record.tokens:
        assert rule is not None


@given(keys, keys, identifiers)
def test_encoding_is_deterministic_and_depends_on_the_key(
    key: bytes, other: bytes, ids: dict[str, str]
) -> None:
    first = RecordEncoder(key).encode("a:1", "a", ids)
    assert RecordEncoder(key).encode("a:1", "a", ids) == first
    if other != key:
        second = RecordEncoder(other).encode("a:1", "a", ids)
        assert not set(first.tokens.values()) & set(second.tokens.values())
        shared_bits = [first.blooms[f] == second.blooms[f] for f in first.blooms]
        assert not any(shared_bits)


@settings(max_examples=60)
@given(st.lists(identifiers, max_size=14), st.randoms(), st.integers(2, 5))
def test_candidate_pairs_are_once_each_ordered_and_independent_of_input_order(
    batch: list[dict[str, str]], rng: random.Random, max_block: int
) -> None:
    records = encode_all(batch)
    found = list(candidate_pairs(records, max_block))
    assert len(found) == len(set(found))
    assert all(0 <= left < right < len(records) for left, right in found)
    shuffled = records[:]
    rng.shuffle(shuffled)
    again = list(candidate_pairs(shuffled, max_block))

    def as_refs(pairs: list[tuple[int, int]], order: list[EncodedRecord]) -> set[frozenset[str]]:
        return {frozenset((order[a].ref, order[b].ref)) for a, b in pairs}

    assert as_refs(found, records) == as_refs(again, shuffled)


@settings(max_examples=60)
@given(st.lists(identifiers, max_size=14), st.integers(2, 5))
def test_the_index_gives_the_batch_pairs(batch: list[dict[str, str]], max_block: int) -> None:
    records = encode_all(batch)
    index = BlockIndex(max_block)
    for position, record in enumerate(records):
        index.add(position, record)
    from_index = {
        (min(position, other), max(position, other))
        for position, record in enumerate(records)
        for other in index.candidates(record)
        if other != position
    }
    assert from_index == set(candidate_pairs(records, max_block))
