"""Comparing two encoded records: each field's levels and the strongest rule they share."""

from __future__ import annotations

import pytest

from broker.link.compare import NAME_NEAR, compare, make_comparer
from broker.link.encode import CascadeKey, RecordEncoder
from broker.link.types import COMPARED_FIELDS, EncodedRecord, Level

KEY = bytes(range(32))
ENCODER = RecordEncoder(KEY)
BASE = {
    "given_name": "Oliver",
    "family_name": "Hughes",
    "date_of_birth": "2012-03-05",
    "sex": "M",
    "postcode": "LS6 2AB",
    "nhs_number": "9434765919",
    "upn": "H801200001001",
}
M, D, N, A = Level.MISSING, Level.DISAGREE, Level.NEAR, Level.AGREE


def rec(**changes: str) -> EncodedRecord:
    return ENCODER.encode("a:1", "a", {**BASE, **changes})


def level(field: str, left: EncodedRecord, right: EncodedRecord) -> Level:
    levels, _ = compare(left, right)
    assert compare(right, left)[0] == levels
    return levels[COMPARED_FIELDS.index(field)]


def test_a_record_agrees_with_itself_on_every_field_and_shares_its_strongest_key() -> None:
    assert compare(rec(), rec()) == ((A, A, A, A, A, A, A), "nhs")


def test_absent_fields_are_missing_never_disagreement() -> None:
    empty = ENCODER.encode("b:1", "b", {"given_name": "Oliver", "date_of_birth": "2012-03-05"})
    assert compare(rec(), empty) == ((M, M, A, M, A, M, M), None)


@pytest.mark.parametrize("field", ["nhs_number", "upn"])
def test_national_identifiers_agree_disagree_or_are_missing(field: str) -> None:
    other = {"nhs_number": "4010232137", "upn": "X801200001002"}
    name = "nhs_number" if field == "nhs_number" else "upn"
    assert level(name, rec(), rec(**{field: other[field]})) == D
    assert level(name, rec(), rec(**{field: ""})) == M
    # An NHS number failing its check digit is dropped, so it is missing, not different.
    assert level("nhs_number", rec(), rec(nhs_number="9434765918")) == M


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        ("Oliver", A),
        ("OLIVER", A),
        ("Olivr", N),  # a dropped letter: Dice 0.8
        ("Olliver", N),  # NYSIIS is equal
        ("Jack", D),
        ("Noah", D),
    ],
)
def test_given_names(other: str, expected: Level) -> None:
    assert level("given_name", rec(), rec(given_name=other)) == expected


@pytest.mark.parametrize(
    ("left", "right"), [("Jayden", "Hayden"), ("Mason", "Jason"), ("Nathan", "Ethan")]
)
def test_alike_names_with_different_first_letters_disagree(left: str, right: str) -> None:
    # Twins' names: as alike by Dice as a typo but not by the first letter.
    one, other = rec(given_name=left), rec(given_name=right)
    bits, more = one.blooms["given_name"], other.blooms["given_name"]
    assert 2 * (bits & more).bit_count() >= NAME_NEAR * (bits.bit_count() + more.bit_count())
    assert level("given_name", one, other) == D


def test_name_variants_nearly_agree() -> None:
    assert level("given_name", rec(given_name="William"), rec(given_name="Bill")) == N


@pytest.mark.parametrize(("other", "expected"), [("Hughes", A), ("Hughs", N), ("Patel", D)])
def test_family_names(other: str, expected: Level) -> None:
    assert level("family_name", rec(), rec(family_name=other)) == expected


def test_swapped_given_and_family_names_nearly_agree_on_both() -> None:
    swapped = rec(given_name="Hughes", family_name="Oliver", nhs_number="", upn="")
    levels, rule = compare(rec(nhs_number="", upn=""), swapped)
    assert levels == (M, M, N, N, A, A, A)
    assert rule == "swapped_names_dob_postcode"


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        ("2012-03-05", A),
        ("2012-05-03", N),  # day and month swapped
        ("2012-03-28", N),  # same year and month
        ("2013-03-05", N),  # one digit of the year: Dice above DOB_NEAR
        ("2012-04-05", N),  # one digit of the month
        ("2009-11-21", D),
        ("2014-07-19", D),
    ],
)
def test_dates_of_birth(other: str, expected: Level) -> None:
    assert level("date_of_birth", rec(), rec(date_of_birth=other)) == expected


@pytest.mark.parametrize(("other", "expected"), [("M", A), ("F", D), ("U", M), ("", M)])
def test_sex(other: str, expected: Level) -> None:
    assert level("sex", rec(), rec(sex=other)) == expected


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        ("ls62ab", A),
        ("LS6 2XY", N),  # same sector
        ("LS6 9XY", N),  # same district
        ("LS16 2AB", D),
        ("M1 1AE", D),
        ("", M),
    ],
)
def test_postcodes(other: str, expected: Level) -> None:
    assert level("postcode", rec(), rec(postcode=other)) == expected


def test_postcodes_outside_the_uk_shape_agree_only_when_equal() -> None:
    assert level("postcode", rec(postcode="D02 X285"), rec(postcode="d02x 285")) == A
    assert level("postcode", rec(postcode="D02 X285"), rec(postcode="D02 X286")) == D


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({}, "nhs"),
        ({"nhs_number": ""}, "upn"),
        ({"nhs_number": "", "upn": ""}, "name_dob_postcode"),
        ({"nhs_number": "", "upn": "", "given_name": "Olivér"}, "name_dob_postcode"),
        ({"nhs_number": "", "upn": "", "date_of_birth": "2012-05-03"}, "name_dob_swapped_postcode"),
        (
            {"nhs_number": "", "upn": "", "postcode": "LS6 2XY", "given_name": "Olliver"},
            "phonetic_dob_sector",
        ),
        ({"nhs_number": "", "upn": "", "postcode": "M1 1AE"}, "name_dob"),
        ({"nhs_number": "", "upn": "", "postcode": "M1 1AE", "given_name": "Jack"}, None),
    ],
)
def test_the_strongest_shared_key_is_the_rule(changes: dict[str, str], rule: str | None) -> None:
    plain = rec(
        nhs_number=changes.get("nhs_number", BASE["nhs_number"]),
        upn=changes.get("upn", BASE["upn"]),
    )
    assert compare(plain, rec(**changes))[1] == rule
    assert compare(rec(**changes), plain)[1] == rule


def test_a_name_variant_shares_the_variant_key() -> None:
    levels, rule = compare(
        rec(given_name="William", nhs_number="", upn=""),
        rec(given_name="Bill", nhs_number="", upn=""),
    )
    assert levels == (M, M, N, A, A, A, A)
    assert rule == "variant_dob_postcode"


def test_twins_share_no_rule() -> None:
    twin = rec(given_name="Amelia", sex="F", nhs_number="4010232137", upn="")
    levels, rule = compare(rec(upn=""), twin)
    assert levels == (D, M, D, A, A, D, A)
    assert rule is None


def test_a_comparer_reports_the_keys_of_its_own_cascade() -> None:
    cascade = (CascadeKey("name_only", ("given", "family"), 2),)
    encoder = RecordEncoder(KEY, cascade)
    plain = {**BASE, "nhs_number": "", "upn": ""}
    left = encoder.encode("a:1", "a", plain)
    right = encoder.encode("b:1", "b", {**plain, "date_of_birth": "2001-01-01"})
    assert make_comparer(cascade)(left, right)[1] == "name_only"
    assert compare(left, right)[1] is None  # the default cascade's keys were never made
