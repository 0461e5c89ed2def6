"""Fixed examples of keyed Bloom-filter encodings: near names, near dates, framing and levels."""

from __future__ import annotations

import hmac

import pytest

from broker.bloom import (
    FIELD_WEIGHTS,
    FILTER_BITS,
    ComparisonLevel,
    Encoder,
    Encoding,
    bigram_positions,
    bigrams,
    birth_year_salt,
    comparison_level,
    dice,
)
from broker.normalise import normalise_date, normalise_name, normalise_postcode
from broker.pseudonymise import encode_parts

KEY = bytes(range(32))
SALT = "2011"


@pytest.fixture
def encoder() -> Encoder:
    return Encoder(KEY)


def field_dice(encoder: Encoder, field: str, left: str, right: str) -> float:
    return dice(encoder.encode_field(field, left, SALT), encoder.encode_field(field, right, SALT))


def test_bigrams_are_padded_and_postcodes_lose_their_space() -> None:
    assert bigrams("jon") == {"_j", "jo", "on", "n_"}
    assert bigrams("SW1A 1AA") == bigrams("SW1A1AA")
    assert bigrams("") == frozenset()


def test_smith_and_smyth_nearly_agree(encoder: Encoder) -> None:
    smith = encoder.encode_field("family_name", normalise_name("Smith"), SALT)
    smyth = encoder.encode_field("family_name", normalise_name("Smyth"), SALT)
    # Four of six bigrams shared: about 2/3, and Bloom collisions only add.
    assert 0.6 <= dice(smith, smyth) < 1
    assert comparison_level(smith, smyth) is ComparisonLevel.NEARLY_AGREE


def test_jon_and_john_nearly_agree(encoder: Encoder) -> None:
    jon = encoder.encode_field("given_name", normalise_name("Jon"), SALT)
    john = encoder.encode_field("given_name", normalise_name("John"), SALT)
    assert comparison_level(jon, john) is ComparisonLevel.NEARLY_AGREE


def test_unrelated_names_disagree(encoder: Encoder) -> None:
    smith = encoder.encode_field("family_name", "smith", SALT)
    okafor = encoder.encode_field("family_name", "okafor", SALT)
    assert dice(smith, okafor) < 0.3
    assert comparison_level(smith, okafor) is ComparisonLevel.DISAGREE


def test_swapped_day_and_month_nearly_agree(encoder: Encoder) -> None:
    march = encoder.encode_field("date_of_birth", normalise_date("2011-03-04"), SALT)
    april = encoder.encode_field("date_of_birth", normalise_date("2011-04-03"), SALT)
    assert comparison_level(march, april) is ComparisonLevel.NEARLY_AGREE


def test_equal_values_agree_and_missing_is_missing(encoder: Encoder) -> None:
    left = encoder.encode_field("postcode", normalise_postcode("sw1a1aa"), SALT)
    right = encoder.encode_field("postcode", normalise_postcode("SW1A 1AA"), SALT)
    assert comparison_level(left, right) is ComparisonLevel.AGREE
    assert comparison_level(left, None) is ComparisonLevel.MISSING
    assert comparison_level(Encoding(0), right) is ComparisonLevel.MISSING


def test_record_is_the_union_of_its_fields(encoder: Encoder) -> None:
    record = {"given_name": "amira", "family_name": "okafor", "date_of_birth": "2011-03-04",
              "postcode": "LS1 4AP", "nhs_number": "9434765919"}  # fmt: skip
    fields = encoder.encode_fields(record, birth_year_salt(record["date_of_birth"]))
    union = 0
    for encoding in fields.values():
        union |= encoding.bits
    assert set(fields) == set(FIELD_WEIGHTS)
    assert encoder.encode_record(record, "2011").bits == union


def test_encoder_matches_the_reference_recipe(encoder: Encoder) -> None:
    expected = 0
    for gram in bigrams("okafor"):
        for position in bigram_positions(KEY, "family_name", SALT, gram):
            expected |= 1 << position
    assert encoder.field_bits("family_name", "okafor", SALT) == expected


def test_positions_are_read_from_one_hmac_of_the_framed_bigram() -> None:
    digest = hmac.digest(KEY, encode_parts("bloom:given_name", [SALT, "_j"]), "sha256")
    first = int.from_bytes(digest[:2], "big") % FILTER_BITS
    assert first in bigram_positions(KEY, "given_name", SALT, "_j")
    assert len(bigram_positions(KEY, "given_name", SALT, "_j")) <= FIELD_WEIGHTS["given_name"]


def test_unknown_field_is_refused(encoder: Encoder) -> None:
    with pytest.raises(ValueError, match="not an encoded field"):
        encoder.field_bits("nhs_numbr", "943", SALT)


def test_encoding_round_trips_through_bytes_and_checks_its_length(encoder: Encoder) -> None:
    encoding = encoder.encode_field("given_name", "olivia", SALT)
    assert Encoding.from_bytes(encoding.to_bytes()) == encoding
    assert len(encoding.to_bytes()) == FILTER_BITS // 8
    with pytest.raises(ValueError, match="FILTER_BITS bits"):
        Encoding(1 << FILTER_BITS)
    with pytest.raises(ValueError, match="FILTER_BITS / 8 bytes"):
        Encoding.from_bytes(b"\0")


def test_birth_year_salt() -> None:
    assert birth_year_salt("2011-03-04") == "2011"
    assert birth_year_salt("") == ""


def test_two_empty_encodings_have_dice_one() -> None:
    assert dice(Encoding(0), Encoding(0)) == 1.0
