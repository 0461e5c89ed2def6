"""Encoding identifiers for linkage: each form's token, the cascade's keys, notes and blooms."""

from __future__ import annotations

import pytest

from broker.bloom import Encoder
from broker.link.blocking import BLOCKING_PASSES
from broker.link.encode import (
    DEFAULT_CASCADE,
    TOKEN_HEX,
    CascadeKey,
    RecordEncoder,
    normalise_address,
    swapped_day_month,
    validate_cascade,
)
from broker.pseudonymise import Tokeniser

KEY = bytes(range(32))
NHS = "9434765919"  # check digit passes
UPN = "H801200001001"  # check letter passes
FULL = {
    "given_name": "Jon",
    "family_name": "Smith",
    "date_of_birth": "2012-03-05",
    "sex": "male",
    "postcode": "sw1a1aa",
    "address_line": "1 High Street",
    "nhs_number": "943 476 5919",
    "upn": UPN,
}


def encode(identifiers: dict[str, str], key: bytes = KEY) -> dict[str, str]:
    return dict(RecordEncoder(key).encode("a:1", "a", identifiers).tokens)


def token(form: str, *values: str) -> str:
    return Tokeniser(KEY).token(f"link:{form}", values)[:TOKEN_HEX]


def test_each_form_is_the_keyed_token_of_its_normalised_value() -> None:
    tokens = encode(FULL)
    assert tokens["nhs"] == token("nhs", NHS)
    assert tokens["upn"] == token("upn", UPN)
    assert tokens["given"] == token("given", "jon")
    assert tokens["family"] == token("family", "smith")
    assert tokens["dob"] == token("dob", "2012-03-05")
    assert tokens["sex"] == token("sex", "M")
    assert tokens["postcode"] == token("postcode", "SW1A 1AA")
    assert tokens["given_initial"] == token("given_initial", "j")
    assert tokens["family_initial"] == token("family_initial", "s")
    assert tokens["given_phonetic"] == token("given_phonetic", "JAN")
    assert tokens["family_phonetic"] == token("family_phonetic", "SNAT")
    assert tokens["given_variant"] == token("given_variant", "jon")
    assert tokens["names_sorted"] == token("names_sorted", "jon smith")
    assert tokens["dob_year"] == token("dob_year", "2012")
    assert tokens["dob_year_month"] == token("dob_year_month", "2012-03")
    assert tokens["dob_swapped"] == token("dob", "2012-05-03")
    assert tokens["dob_unordered"] == token("dob_unordered", "2012-03-05")
    assert tokens["postcode_district"] == token("postcode_district", "SW1A")
    assert tokens["postcode_sector"] == token("postcode_sector", "SW1A 1")
    assert tokens["household"] == token("household", "1 high st|SW1A 1AA")
    assert all(len(value) == TOKEN_HEX for value in tokens.values())


def test_cascade_keys_hash_their_forms_together_and_a_one_form_key_is_that_form() -> None:
    tokens = encode(FULL)
    assert tokens["name_dob_postcode"] == token(
        "key:name_dob_postcode", "jon", "smith", "2012-03-05", "SW1A 1AA"
    )
    assert tokens["variant_dob_postcode"] == token(
        "key:variant_dob_postcode", "jon", "smith", "2012-03-05", "SW1A 1AA"
    )
    assert tokens["name_dob"] == token("key:name_dob", "jon", "smith", "2012-03-05")
    assert "nhs" in {key.name for key in DEFAULT_CASCADE}
    assert tokens["nhs"] == token("nhs", NHS)
    without_postcode = encode({**FULL, "postcode": ""})
    assert "name_dob_postcode" not in without_postcode
    assert "name_dob" in without_postcode


def test_tokens_of_different_forms_never_coincide_for_equal_values() -> None:
    tokens = encode({"given_name": "Smith", "family_name": "Smith", "date_of_birth": "2012-03-05"})
    assert tokens["given"] != tokens["family"]
    assert tokens["given_phonetic"] != tokens["family_phonetic"]


def test_the_coarse_blocking_forms_are_tokens_and_every_pass_reads_only_forms() -> None:
    tokens = encode(FULL)
    assert tokens["given_soundex"] == token("given_soundex", "J500")
    assert tokens["family_soundex"] == token("family_soundex", "S530")
    assert tokens["sorted_soundex"] == token("sorted_soundex", "J500 S530")
    assert tokens["variant_initial"] == token("variant_initial", "j")
    assert tokens["initials_sorted"] == token("initials_sorted", "js")
    assert tokens["dob_month_day"] == token("dob_month_day", "03-05")
    assert {form for forms in BLOCKING_PASSES.values() for form in forms} <= set(tokens)
    assert not [name for name in tokens if name.startswith("block")]
    # Blocking Soundex and initial of the given name are its variant group's.
    bill = encode({**FULL, "given_name": "Bill"})
    william = encode({**FULL, "given_name": "William"})
    assert bill["given_soundex"] == william["given_soundex"] == token("given_soundex", "W450")
    assert bill["variant_initial"] == william["variant_initial"]
    # The sorted codes and initials are of the names as given, so a swap keeps them.
    swapped = encode({**FULL, "given_name": "Smith", "family_name": "Jon"})
    assert swapped["sorted_soundex"] == tokens["sorted_soundex"]
    assert swapped["initials_sorted"] == tokens["initials_sorted"]


def test_a_failed_nhs_check_digit_drops_only_the_nhs_number_and_says_so() -> None:
    record, notes = RecordEncoder(KEY).encode_with_notes(
        "a:1", "a", {**FULL, "nhs_number": "9434765918"}
    )
    assert notes == ("nhs_number_check_failed",)
    assert "nhs" not in record.tokens
    assert record.tokens["given"] == token("given", "jon")


@pytest.mark.parametrize("placeholder", ["0000000000", "999 999 9999", "5555555555"])
def test_an_nhs_number_of_one_repeated_digit_is_a_placeholder_and_dropped(
    placeholder: str,
) -> None:
    record, notes = RecordEncoder(KEY).encode_with_notes(
        "a:1", "a", {**FULL, "nhs_number": placeholder}
    )
    assert notes == ("nhs_number_placeholder",)
    assert "nhs" not in record.tokens


def test_a_failed_upn_check_letter_drops_the_upn() -> None:
    record, notes = RecordEncoder(KEY).encode_with_notes(
        "a:1", "a", {**FULL, "upn": "A801200001001"}
    )
    assert notes == ("upn_check_failed",)
    assert "upn" not in record.tokens


def test_a_postcode_outside_the_uk_shape_is_kept_as_a_string_and_noted() -> None:
    record, notes = RecordEncoder(KEY).encode_with_notes(
        "a:1", "a", {**FULL, "postcode": " d02  x285 "}
    )
    assert notes == ("postcode_not_uk",)
    assert record.tokens["postcode"] == token("postcode", "D02X285")
    assert "postcode_district" not in record.tokens
    assert "postcode_sector" not in record.tokens
    assert record.tokens["household"] == token("household", "1 high st|D02X285")
    assert record.blooms["postcode"] == Encoder(KEY).field_bits("postcode", "D02X285", "")


def test_sector_and_district_are_shared_by_nearby_postcodes() -> None:
    home = encode(FULL)
    same_sector = encode({**FULL, "postcode": "SW1A 1AB"})
    same_district = encode({**FULL, "postcode": "SW1A 2AA"})
    assert home["postcode"] != same_sector["postcode"]
    assert home["postcode_sector"] == same_sector["postcode_sector"]
    assert home["postcode_sector"] != same_district["postcode_sector"]
    assert home["postcode_district"] == same_district["postcode_district"]


@pytest.mark.parametrize(
    ("iso", "swapped"),
    [
        ("2012-03-05", "2012-05-03"),
        ("2012-12-01", "2012-01-12"),
        ("2012-03-13", None),  # day 13 cannot be a month
        ("2012-04-04", None),  # swapping changes nothing
        ("2012-11-30", None),
    ],
)
def test_day_and_month_swap_only_where_both_could_be_months(iso: str, swapped: str | None) -> None:
    assert swapped_day_month(iso) == swapped
    tokens = encode({**FULL, "date_of_birth": iso})
    if swapped is None:
        assert "dob_swapped" not in tokens
        assert tokens["dob_unordered"] == token("dob_unordered", iso)
    else:
        assert tokens["dob_swapped"] == encode({**FULL, "date_of_birth": swapped})["dob"]
        assert tokens["dob_unordered"] == token("dob_unordered", min(iso, swapped))


def test_swapped_names_share_names_sorted_and_variants_share_a_group() -> None:
    swapped = encode({**FULL, "given_name": "Smith", "family_name": "Jon"})
    assert swapped["names_sorted"] == encode(FULL)["names_sorted"]
    assert swapped["swapped_names_dob_postcode"] == encode(FULL)["swapped_names_dob_postcode"]
    bill = encode({**FULL, "given_name": "Bill"})
    william = encode({**FULL, "given_name": "William"})
    assert bill["given"] != william["given"]
    assert bill["given_variant"] == william["given_variant"]
    assert bill["variant_dob_postcode"] == william["variant_dob_postcode"]


def test_sex_not_known_makes_no_token_and_an_unknown_code_is_noted() -> None:
    assert "sex" not in encode({**FULL, "sex": "U"})
    record, notes = RecordEncoder(KEY).encode_with_notes("a:1", "a", {**FULL, "sex": "zebra"})
    assert notes == ("sex_invalid",)
    assert "sex" not in record.tokens


def test_unreadable_dates_and_names_are_noted_and_dropped() -> None:
    record, notes = RecordEncoder(KEY).encode_with_notes(
        "a:1", "a", {**FULL, "date_of_birth": "2012-02-30", "given_name": "123"}
    )
    assert notes == ("given_name_invalid", "date_of_birth_invalid")
    assert not {"dob", "given", "name_dob_postcode"} & set(record.tokens)


@pytest.mark.parametrize(
    ("identifiers", "usable"),
    [
        ({"postcode": "SW1A 1AA", "sex": "F"}, False),
        ({"given_name": "Jon", "family_name": "Smith"}, True),
        ({"given_name": "Jon", "postcode": "SW1A 1AA", "sex": "M"}, False),
        ({"given_name": "Jon", "date_of_birth": "2012-03-05"}, True),
        ({"nhs_number": NHS}, True),
        ({"upn": UPN}, True),
        ({"nhs_number": "9434765918", "postcode": "SW1A 1AA"}, False),
    ],
)
def test_no_usable_identifier_is_noted(identifiers: dict[str, str], usable: bool) -> None:
    _, notes = RecordEncoder(KEY).encode_with_notes("a:1", "a", identifiers)
    assert ("no_usable_identifier" in notes) is not usable


def test_household_needs_an_address_and_a_postcode_and_ignores_how_it_is_typed() -> None:
    assert normalise_address("1, High  STREET") == "1 high st"
    assert normalise_address("Flat 2, Café Road") == "flat 2 cafe rd"
    assert encode(FULL)["household"] == encode({**FULL, "address_line": "1 high st."})["household"]
    assert "household" not in encode({**FULL, "postcode": ""})
    assert "household" not in encode({**FULL, "address_line": ""})


def test_blooms_are_the_unsalted_field_encodings_of_the_normalised_values() -> None:
    blooms = RecordEncoder(KEY).encode("a:1", "a", FULL).blooms
    encoder = Encoder(KEY)
    assert blooms == {
        "given_name": encoder.field_bits("given_name", "jon", ""),
        "family_name": encoder.field_bits("family_name", "smith", ""),
        "date_of_birth": encoder.field_bits("date_of_birth", "2012-03-05", ""),
        "postcode": encoder.field_bits("postcode", "SW1A 1AA", ""),
    }
    # A wrong year of birth leaves the name encodings untouched.
    other_year = RecordEncoder(KEY).encode("a:1", "a", {**FULL, "date_of_birth": "2013-03-05"})
    assert other_year.blooms["given_name"] == blooms["given_name"]


def test_the_encoder_uses_its_cascade() -> None:
    cascade = (CascadeKey("nhs", ("nhs",), 3), CascadeKey("name_only", ("given", "family"), 1))
    record = RecordEncoder(KEY, cascade).encode("a:1", "a", FULL)
    assert record.tokens["name_only"] == token("key:name_only", "jon", "smith")
    assert "name_dob_postcode" not in record.tokens


@pytest.mark.parametrize(
    ("cascade", "message"),
    [
        ((), "at least one key"),
        ((CascadeKey("x", ("given",), 1), CascadeKey("x", ("family",), 1)), "declared twice"),
        ((CascadeKey("x", ("shoe_size",), 1),), "form that does not exist"),
        ((CascadeKey("x", (), 1),), "form that does not exist"),
        ((CascadeKey("dob", ("given", "dob"), 1),), "named like a form"),
        ((CascadeKey("x", ("given",), 4),), "strength 1, 2 or 3"),
        ((CascadeKey("x", ("given",), 1), CascadeKey("y", ("family",), 2)), "strongest first"),
    ],
)
def test_a_bad_cascade_is_refused_saying_why(cascade: tuple[CascadeKey, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_cascade(cascade)
    with pytest.raises(ValueError, match=message):
        RecordEncoder(KEY, cascade)


def test_the_default_cascade_is_valid_and_every_key_holds_the_given_name_in_some_form() -> None:
    assert validate_cascade(DEFAULT_CASCADE) == DEFAULT_CASCADE
    name_forms = {"given", "given_variant", "given_phonetic", "names_sorted"}
    for key in DEFAULT_CASCADE:
        if key.strength < 3:
            assert name_forms & set(key.forms), key.name


def test_another_key_shares_no_token_and_the_same_key_repeats_them() -> None:
    first = encode(FULL)
    assert encode(FULL) == first
    other = encode(FULL, key=bytes(32))
    assert set(other) == set(first)
    assert not set(other.values()) & set(first.values())
