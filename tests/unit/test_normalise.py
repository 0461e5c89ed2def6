"""Examples for the identifier normalisers in broker.normalise."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest

from broker import normalise
from broker.errors import IdentifierError

# ---------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Zoë", "zoe"),
        ("ZOË", "zoe"),
        ("Zoe\u0308", "zoe"),  # decomposed diaeresis
        ("  Amira  ", "amira"),
        ("Dr Zoë", "zoe"),
        ("Dr. Zoë", "zoe"),
        ("Mrs Smith-Jones", "smithjones"),
        ("Major", "major"),
        ("Major Smith", "majorsmith"),  # "major" is not a title
        ("Straße", "strasse"),
    ],
)
def test_normalise_name_examples(raw: str, expected: str) -> None:
    assert normalise.normalise_name(raw) == expected


@pytest.mark.parametrize("variant", ["OBrien", "O Brien", "O\u2019Brien", "o'brien", "O`Brien"])
def test_apostrophe_and_spacing_variants_are_equal(variant: str) -> None:
    assert normalise.normalise_name(variant) == normalise.normalise_name("O'Brien") == "obrien"


@pytest.mark.parametrize(
    ("lower", "upper"),
    [("Yıldız", "YILDIZ"), ("Işık", "IŞIK"), ("Ζωή", "ΖΩΉ"), ("ᾳ", "ᾼ"), ("Straße", "STRASSE")],
)
def test_upper_case_entry_gives_the_same_name(lower: str, upper: str) -> None:
    # Police systems often hold surnames in capitals; case must not split a person in two.
    assert normalise.normalise_name(lower) == normalise.normalise_name(upper)
    assert normalise.normalise_name(lower) == normalise.normalise_name(lower.upper())


@pytest.mark.parametrize("variant", ["Smith Jones", "Smith\u2013Jones", "smith  -  jones"])
def test_hyphenated_names_equal_spaced(variant: str) -> None:
    assert normalise.normalise_name(variant) == normalise.normalise_name("Smith-Jones")


def test_name_parts_drop_titles_only_at_front() -> None:
    assert normalise.name_parts("Dr  Zoë O'Brien-Smith") == ("zoe", "obrien", "smith")
    assert normalise.name_parts("Zoë Dr") == ("zoe", "dr")
    assert normalise.name_parts("Mr Mrs Smith") == ("smith",)


def test_a_lone_title_is_kept_as_a_name() -> None:
    assert normalise.normalise_name("Major") == "major"
    assert normalise.normalise_name("Dr") == "dr"


@pytest.mark.parametrize("raw", ["", "   ", "123", "-'-", "...."])
def test_name_without_letters_is_rejected(raw: str) -> None:
    with pytest.raises(IdentifierError, match="no letters"):
        normalise.normalise_name(raw)


def test_name_longer_than_limit_is_rejected() -> None:
    normalise.normalise_name("a" * normalise.MAX_IDENTIFIER_LENGTH)
    with pytest.raises(IdentifierError, match="longer than"):
        normalise.normalise_name("a" * (normalise.MAX_IDENTIFIER_LENGTH + 1))


def test_name_that_expands_past_limit_is_rejected() -> None:
    # U+FDFA is one character whose compatibility decomposition is eighteen.
    # Accepting it would give a canonical form that is itself refused as too long.
    with pytest.raises(IdentifierError, match="longer than"):
        normalise.normalise_name("\ufdfa" * 20)


@pytest.mark.parametrize("bad", ["\x00", "\u202e", "\x1b", "\u200b", "\ue000", "\n"])
def test_name_with_control_or_formatting_characters_is_rejected(bad: str) -> None:
    with pytest.raises(IdentifierError, match="control or formatting") as caught:
        normalise.normalise_name(f"Zo{bad}e")
    assert "Zo" not in caught.value.message


def test_name_with_tab_is_accepted() -> None:
    assert normalise.normalise_name("Zoe\tSmith") == "zoesmith"


# ---------------------------------------------------------------------------- postcodes


@pytest.mark.parametrize(
    "raw", ["SW1A 1AA", "sw1a1aa", " SW1A  1AA ", "Sw1A\t1aA", "s w 1 a 1 a a"]
)
def test_postcode_variants_normalise(raw: str) -> None:
    assert normalise.normalise_postcode(raw) == "SW1A 1AA"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("m11ae", "M1 1AE"), ("B338TH", "B33 8TH"), ("cr26xh", "CR2 6XH"), ("gir0aa", "GIR 0AA")],
)
def test_postcode_shapes(raw: str, expected: str) -> None:
    assert normalise.normalise_postcode(raw) == expected


def test_postcode_district_and_sector() -> None:
    assert normalise.postcode_district("sw1a1aa") == "SW1A"
    assert normalise.postcode_sector("sw1a1aa") == "SW1A 1"
    assert normalise.postcode_district("M1 1AE") == "M1"
    assert normalise.postcode_sector("B33 8TH") == "B33 8"


@pytest.mark.parametrize(
    "raw", ["", "SW1A", "1AA SW1A", "SW1A 1A", "SW1A 1AAA", "ZZZ9 9ZZ", "SW1A-1AA", "12345"]
)
def test_invalid_postcode_is_rejected(raw: str) -> None:
    with pytest.raises(IdentifierError, match="postcode"):
        normalise.normalise_postcode(raw)


def test_invalid_postcode_breaks_district_and_sector() -> None:
    with pytest.raises(IdentifierError):
        normalise.postcode_district("not a postcode")
    with pytest.raises(IdentifierError):
        normalise.postcode_sector("not a postcode")


# ---------------------------------------------------------------------------- NHS numbers


@pytest.mark.parametrize("raw", ["943 476 5919", "9434765919", "943-476-5919", " 9434765919 "])
def test_valid_nhs_number(raw: str) -> None:
    assert normalise.normalise_nhs_number(raw) == "9434765919"


def test_nhs_check_digit_of_known_number() -> None:
    assert normalise.nhs_check_digit("943476591") == 9


@pytest.mark.parametrize("position", range(10))
def test_changing_any_digit_fails_the_check(position: int) -> None:
    valid = "9434765919"
    for replacement in "0123456789":
        if replacement == valid[position]:
            continue
        changed = valid[:position] + replacement + valid[position + 1 :]
        with pytest.raises(IdentifierError, match="check digit"):
            normalise.normalise_nhs_number(changed)


def test_prefix_whose_check_digit_would_be_ten_is_never_valid() -> None:
    prefix = "100000001"
    total = sum(int(d) * w for d, w in zip(prefix, range(10, 1, -1), strict=True))
    assert 11 - total % 11 == 10
    assert normalise.nhs_check_digit(prefix) is None
    for last in "0123456789":
        with pytest.raises(IdentifierError, match="check digit"):
            normalise.normalise_nhs_number(prefix + last)


def test_check_digit_eleven_becomes_zero() -> None:
    # 10*0 + ... chosen so that the total is a multiple of 11.
    assert normalise.nhs_check_digit("000000000") == 0
    assert normalise.normalise_nhs_number("0000000000") == "0000000000"


@pytest.mark.parametrize(
    "raw", ["943476591", "94347659190", "94347659I9", "", "９４３４７６５９１９", "943.476.5919"]
)
def test_malformed_nhs_number_is_rejected(raw: str) -> None:
    with pytest.raises(IdentifierError, match="ten digits"):
        normalise.normalise_nhs_number(raw)


@pytest.mark.parametrize("prefix", ["12345678", "1234567890", "12345678a", "１２３４５６７８９"])
def test_nhs_check_digit_needs_nine_ascii_digits(prefix: str) -> None:
    with pytest.raises(IdentifierError):
        normalise.nhs_check_digit(prefix)


# ---------------------------------------------------------------------------- UPNs


def _valid_upn(rest: str) -> str:
    return normalise.upn_check_letter(rest) + rest


@pytest.mark.parametrize("rest", ["201234567890", "938400000001", "20123456789A", "99999999999Z"])
def test_upn_built_with_its_check_letter_is_valid(rest: str) -> None:
    upn = _valid_upn(rest)
    assert normalise.normalise_upn(upn) == upn
    assert normalise.normalise_upn(upn.lower()) == upn
    assert normalise.normalise_upn(f" {upn[:5]} {upn[5:]} ") == upn


def test_upn_check_letter_is_from_the_dfe_alphabet() -> None:
    letter = normalise.upn_check_letter("201234567890")
    assert letter in "ABCDEFGHJKLMNPQRTUVWXYZ"


@pytest.mark.parametrize("position", range(1, 12))
def test_changing_one_digit_of_a_upn_breaks_its_check_letter(position: int) -> None:
    upn = _valid_upn("201234567890")
    digit = upn[position]
    changed_digit = str((int(digit) + 1) % 10)
    changed = upn[:position] + changed_digit + upn[position + 1 :]
    with pytest.raises(IdentifierError, match="check letter"):
        normalise.normalise_upn(changed)


def test_wrong_check_letter_is_rejected() -> None:
    upn = _valid_upn("201234567890")
    for letter in "ABCDEFGHJKLMNPQRTUVWXYZ":
        if letter == upn[0]:
            continue
        with pytest.raises(IdentifierError, match="check letter"):
            normalise.normalise_upn(letter + upn[1:])


@pytest.mark.parametrize(
    "raw", ["", "A12345678901", "A1234567890123", "A12345678901I", "A2012345678ÿ0"]
)
def test_malformed_upn_is_rejected(raw: str) -> None:
    with pytest.raises(IdentifierError, match="unique pupil number"):
        normalise.normalise_upn(raw)


# ---------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("raw", "fmt", "expected"),
    [
        ("2010-05-04", "iso", date(2010, 5, 4)),
        ("2010-5-4", "iso", date(2010, 5, 4)),
        ("04/05/2010", "dmy", date(2010, 5, 4)),
        ("04/05/2010", "mdy", date(2010, 4, 5)),
        ("4.5.2010", "dmy", date(2010, 5, 4)),
        ("04-05-2010", "mdy", date(2010, 4, 5)),
        (" 2024-02-29 ", "iso", date(2024, 2, 29)),
    ],
)
def test_parse_date_in_declared_format(raw: str, fmt: normalise.DateFormat, expected: date) -> None:
    assert normalise.parse_date(raw, fmt) == expected
    assert normalise.normalise_date(raw, fmt) == expected.isoformat()


def test_dmy_and_mdy_are_never_guessed() -> None:
    assert normalise.normalise_date("04/05/2010", "dmy") != normalise.normalise_date(
        "04/05/2010", "mdy"
    )
    # 25/12 is plainly day-first, but the declared format is month-first: refused, not swapped.
    with pytest.raises(IdentifierError, match="calendar"):
        normalise.parse_date("25/12/2010", "mdy")
    with pytest.raises(IdentifierError, match="declared format"):
        normalise.parse_date("2010-12-25", "dmy")
    with pytest.raises(IdentifierError, match="declared format"):
        normalise.parse_date("25/12/2010", "iso")


@pytest.mark.parametrize(
    ("raw", "fmt"),
    [
        ("2023-02-29", "iso"),
        ("2024-13-01", "iso"),
        ("2024-00-10", "iso"),
        ("2024-04-31", "iso"),
        ("31/04/2024", "dmy"),
        ("02/30/2024", "mdy"),
    ],
)
def test_impossible_date_is_rejected_without_echoing_it(
    raw: str, fmt: normalise.DateFormat
) -> None:
    with pytest.raises(IdentifierError, match="calendar") as caught:
        normalise.parse_date(raw, fmt)
    assert raw not in str(caught.value)
    assert raw not in caught.value.one_line()
    assert "2024" not in caught.value.message
    assert "2023" not in caught.value.message


@pytest.mark.parametrize("raw", ["1899-12-31", "2101-01-01", "0001-01-01"])
def test_date_outside_plausible_years_is_rejected(raw: str) -> None:
    with pytest.raises(IdentifierError, match="1900-2100"):
        normalise.parse_date(raw)


@pytest.mark.parametrize("raw", ["", "yesterday", "2010-05", "20100504", "2010/05/04", "10-05-04"])
def test_malformed_date_is_rejected(raw: str) -> None:
    with pytest.raises(IdentifierError, match="declared format"):
        normalise.parse_date(raw)


def test_unknown_date_format_is_rejected() -> None:
    with pytest.raises(IdentifierError, match="not one of"):
        normalise.parse_date("2010-05-04", "ymd")  # type: ignore[arg-type]


def test_date_with_control_character_is_rejected() -> None:
    with pytest.raises(IdentifierError, match="control"):
        normalise.parse_date("2010-05-04\x00")


# ---------------------------------------------------------------------------- sex


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("F", "F"),
        ("female", "F"),
        (" Female ", "F"),
        ("GIRL", "F"),
        ("2", "F"),
        ("m", "M"),
        ("Male", "M"),
        ("1", "M"),
        ("X", "X"),
        ("Non-binary", "X"),
        ("Indeterminate", "X"),
        ("9", "X"),
        ("U", "U"),
        ("Not known", "U"),
        ("not-stated", "U"),
        ("0", "U"),
        ("", "U"),
    ],
)
def test_sex_codes_map_to_four_values(raw: str, expected: str) -> None:
    assert normalise.normalise_sex(raw) == expected
    assert normalise.normalise_sex(expected) == expected


@pytest.mark.parametrize("raw", ["alien", "3", "fm", "mf", "yes"])
def test_unknown_sex_code_is_rejected(raw: str) -> None:
    with pytest.raises(IdentifierError, match="recognised codes") as caught:
        normalise.normalise_sex(raw)
    assert raw not in caught.value.message


# ---------------------------------------------------------------------------- all of them


@pytest.mark.parametrize(
    "function",
    [
        normalise.normalise_name,
        normalise.normalise_postcode,
        normalise.normalise_nhs_number,
        normalise.normalise_upn,
        normalise.normalise_sex,
        normalise.normalise_date,
    ],
)
@pytest.mark.parametrize("bad", ["\x00", "\u202e", "x" * 300])
def test_every_normaliser_rejects_control_characters_and_overlong_input(
    function: Callable[[str], str], bad: str
) -> None:
    with pytest.raises(IdentifierError):
        function(bad)


def test_dates_refuse_digits_of_other_scripts() -> None:
    with pytest.raises(IdentifierError):
        normalise.parse_date("\uff12\uff10\uff11\uff10-01-01", "iso")


@pytest.mark.parametrize(
    ("typed", "plain"),
    [("Łukasz", "Lukasz"), ("Søren", "Soren"), ("Æthelred", "Aethelred"), ("Þór", "Thor")],
)
def test_letters_with_built_in_accents_fold_to_what_uk_systems_type(typed: str, plain: str) -> None:
    assert normalise.normalise_name(typed) == normalise.normalise_name(plain)
