"""Properties of keyed Bloom-filter encodings over random names, dates, postcodes and keys."""

from __future__ import annotations

from datetime import date

from hypothesis import assume, given
from hypothesis import strategies as st

from broker.bloom import FILTER_BITS, Encoder, Encoding, bigrams, birth_year_salt, dice

LETTERS = "abcdefghijklmnopqrstuvwxyz"
keys = st.binary(min_size=32, max_size=32)
names = st.text(alphabet=LETTERS, min_size=2, max_size=12)
# Real names seldom repeat a bigram; "aaaaa" has three bigrams, so one typo moves it further.
typical_names = st.text(alphabet=LETTERS, min_size=5, max_size=10).filter(
    lambda name: len(bigrams(name)) == len(name) + 1
)
dates = st.dates(min_value=date(1990, 1, 1), max_value=date(2025, 12, 31)).map(date.isoformat)
postcodes = st.builds(
    lambda area, district, digit, unit: f"{area}{district} {digit}{unit}",
    st.sampled_from(["LS", "M", "B", "SW", "NE", "CF"]),
    st.integers(1, 30),
    st.integers(0, 9),
    st.text(alphabet="ABDEFGHJLNPQRSTUWXYZ", min_size=2, max_size=2),
)
records = st.fixed_dictionaries(
    {"given_name": names, "family_name": names, "date_of_birth": dates, "postcode": postcodes}
)
encodings = st.integers(min_value=0, max_value=(1 << FILTER_BITS) - 1).map(Encoding)


def encode(key: bytes, record: dict[str, str]) -> Encoding:
    return Encoder(key).encode_record(record, birth_year_salt(record["date_of_birth"]))


@given(keys, records)
def test_a_record_is_wholly_similar_to_itself(key: bytes, record: dict[str, str]) -> None:
    assert dice(encode(key, record), encode(key, record)) == 1.0


@given(encodings, encodings)
def test_dice_is_symmetric_and_bounded(left: Encoding, right: Encoding) -> None:
    assert dice(left, right) == dice(right, left)
    assert 0.0 <= dice(left, right) <= 1.0


@given(keys, keys, records)
def test_another_key_gives_unrelated_bits(one: bytes, other: bytes, record: dict[str, str]) -> None:
    assume(one != other)
    left, right = encode(one, record), encode(other, record)
    # Unrelated filters overlap by |A||B|/N bits on average; five standard deviations spare.
    chance = 2 * left.weight * right.weight / (FILTER_BITS * (left.weight + right.weight))
    assert dice(left, right) < chance + 0.15


@given(
    keys,
    records,
    st.tuples(typical_names, st.integers(0, 9), st.sampled_from(LETTERS)),
    st.sampled_from(["given_name", "family_name"]),
)
def test_one_typo_keeps_the_record_similar(
    key: bytes, record: dict[str, str], typo_at: tuple[str, int, str], field: str
) -> None:
    name, at, letter = typo_at
    at %= len(name)
    typo = name[:at] + letter + name[at + 1 :]
    clean, typed = {**record, field: name}, {**record, field: typo}
    assert dice(encode(key, clean), encode(key, typed)) > 0.8
    encoder, salt = Encoder(key), birth_year_salt(record["date_of_birth"])
    one, two = encoder.encode_field(field, name, salt), encoder.encode_field(field, typo, salt)
    # One substitution in n letters keeps n - 1 of n + 1 bigrams: at least 2/3 from five letters.
    assert dice(one, two) >= 0.6


@given(keys, records)
def test_equal_input_gives_equal_encodings(key: bytes, record: dict[str, str]) -> None:
    copy = {field: str(value) for field, value in record.items()}
    assert encode(key, record) == Encoder(key).encode_record(copy, record["date_of_birth"][:4])


@given(keys, records, st.integers(1900, 2100))
def test_the_salt_changes_the_encoding(key: bytes, record: dict[str, str], year: int) -> None:
    salt = birth_year_salt(record["date_of_birth"])
    assume(str(year) != salt)
    encoder = Encoder(key)
    salted, resalted = encoder.encode_record(record, salt), encoder.encode_record(record, str(year))
    assert salted != resalted
    chance = 2 * salted.weight * resalted.weight / (FILTER_BITS * (salted.weight + resalted.weight))
    assert dice(salted, resalted) < chance + 0.15
