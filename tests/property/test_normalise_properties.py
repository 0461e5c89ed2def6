"""Properties of the identifier normalisers: total, idempotent, and blind to cosmetic changes."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import date

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from broker import normalise
from broker.errors import IdentifierError

# Arbitrary text: every unicode category, control and format characters included, and
# lone surrogates too, since JSON can carry them as escapes ("\\ud800").
ANY_CHARACTER = st.characters() | st.sampled_from(["\ud800", "\udc00", "\udfff"])
ANY_TEXT = st.text(alphabet=ANY_CHARACTER, max_size=300) | st.text(max_size=40)
# Text biased towards what the normalisers look at: digits, letters, separators.
SHAPED_TEXT = st.text(
    alphabet=st.sampled_from(
        list("0123456789 -/.ABCDEFGHJKLMNPRSTUVWXYZabcxyz'\u2019\u00e9\u0308\ufdfa\u00df\t")
    ),
    max_size=40,
)
# Characters whose compatibility decomposition is long (U+FDFA is eighteen characters).
EXPANDING_TEXT = st.text(
    alphabet=st.sampled_from(["\ufdfa", "\ufdfb", "\u3392", "a", " "]), min_size=10, max_size=60
)
TEXT = ANY_TEXT | SHAPED_TEXT | EXPANDING_TEXT

NORMALISERS: dict[str, Callable[[str], str]] = {
    "name": normalise.normalise_name,
    "postcode": normalise.normalise_postcode,
    "nhs_number": normalise.normalise_nhs_number,
    "upn": normalise.normalise_upn,
    "sex": normalise.normalise_sex,
    "date_iso": lambda raw: normalise.normalise_date(raw, "iso"),
}


def _attempt(function: Callable[[str], str], raw: str) -> str | None:
    """The normalised value, or None when the function refuses; any other exception escapes."""
    try:
        return function(raw)
    except IdentifierError:
        return None


@pytest.mark.parametrize("kind", sorted(NORMALISERS))
@settings(max_examples=200, deadline=None)
@given(raw=TEXT)
def test_normaliser_is_total_and_idempotent(kind: str, raw: str) -> None:
    function = NORMALISERS[kind]
    once = _attempt(function, raw)
    if once is None:
        return
    assert function(once) == once


@pytest.mark.parametrize("fmt", ["dmy", "mdy"])
@settings(max_examples=200, deadline=None)
@given(raw=TEXT)
def test_other_date_formats_are_total_and_give_iso(fmt: normalise.DateFormat, raw: str) -> None:
    once = _attempt(lambda value: normalise.normalise_date(value, fmt), raw)
    if once is None:
        return
    assert normalise.normalise_date(once, "iso") == once


@settings(max_examples=200, deadline=None)
@given(raw=TEXT)
def test_district_and_sector_are_total_and_consistent(raw: str) -> None:
    full = _attempt(normalise.normalise_postcode, raw)
    district = _attempt(normalise.postcode_district, raw)
    sector = _attempt(normalise.postcode_sector, raw)
    if full is None:
        assert district is None
        assert sector is None
        return
    assert district is not None
    assert sector is not None
    assert full.startswith(district + " ")
    assert full.startswith(sector)
    assert len(sector) == len(district) + 2


@settings(max_examples=200, deadline=None)
@given(raw=TEXT)
def test_name_parts_are_total_and_join_to_the_name(raw: str) -> None:
    try:
        parts = normalise.name_parts(raw)
    except IdentifierError:
        with pytest.raises(IdentifierError):
            normalise.normalise_name(raw)
        return
    assert parts
    assert all(parts)
    assert normalise.normalise_name(raw) == "".join(parts)


NAME_WORDS = st.lists(
    st.text(
        alphabet=st.characters(categories=("Lu", "Ll")),
        min_size=1,
        max_size=12,
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=100, deadline=None)
@given(words=NAME_WORDS, data=st.data())
def test_name_equality_ignores_case_spaces_and_apostrophes(
    words: list[str], data: st.DataObject
) -> None:
    # A fixed first word that is not a title: titles are dropped only at the front,
    # and extra spaces could otherwise make the first chunk of a variant a title.
    plain = "Zed " + " ".join(words)
    base = normalise.normalise_name(plain)
    separators = st.sampled_from([" ", "  ", "-", "'", "\u2019", " ' ", "\t", ""])
    pieces: list[str] = []
    for word in words:
        case = data.draw(st.sampled_from([str.upper, str.lower, str.title, str.swapcase]))
        pieces.append(case(word))
        pieces.append(data.draw(separators))
    varied = "".join(pieces)
    # Apostrophes and spaces may also appear inside a word (O'Brien, Mc Donald).
    inner = data.draw(st.integers(min_value=0, max_value=len(varied)))
    varied = varied[:inner] + data.draw(st.sampled_from(["'", " ", "\u2019"])) + varied[inner:]
    lead = data.draw(st.sampled_from(["", " ", "  "]))
    first = data.draw(st.sampled_from(["Zed", "ZED", "zed", "z'ed"]))
    assert normalise.normalise_name(f"{lead}{first} {varied} ") == base


POSTCODE_LETTER = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
DIGIT = st.sampled_from("0123456789")


@st.composite
def postcodes(draw: st.DrawFn) -> tuple[str, str]:
    """A valid-shape postcode (canonical) and a variant of it in another case and spacing."""
    area = draw(st.text(alphabet=POSTCODE_LETTER, min_size=1, max_size=2))
    district = draw(DIGIT) + draw(st.sampled_from(["", *"0123456789ABCDEFGHJKMNPRSTUVWXY"]))
    inward = draw(DIGIT) + draw(st.text(alphabet=POSTCODE_LETTER, min_size=2, max_size=2))
    canonical = f"{area}{district} {inward}"
    compact = canonical.replace(" ", "")
    variant = "".join(
        draw(st.sampled_from([ch.lower(), ch.upper()])) + draw(st.sampled_from(["", " ", "\t"]))
        for ch in compact
    )
    return canonical, draw(st.sampled_from(["", " "])) + variant


@settings(max_examples=100, deadline=None)
@given(case=postcodes())
def test_valid_shape_postcodes_always_normalise(case: tuple[str, str]) -> None:
    canonical, variant = case
    assert normalise.normalise_postcode(variant) == canonical
    assert normalise.normalise_postcode(canonical) == canonical
    assert normalise.postcode_district(variant) == canonical.split(" ")[0]


NINE_DIGITS = st.text(alphabet="0123456789", min_size=9, max_size=9)


@settings(max_examples=100, deadline=None)
@given(prefix=NINE_DIGITS, position=st.integers(0, 9), shift=st.integers(1, 9))
def test_nhs_check_digit_accepts_valid_and_rejects_any_single_digit_change(
    prefix: str, position: int, shift: int
) -> None:
    check = normalise.nhs_check_digit(prefix)
    assume(check is not None)
    number = prefix + str(check)
    assert normalise.normalise_nhs_number(number) == number
    spaced = f"{number[:3]} {number[3:6]} {number[6:]}"
    assert normalise.normalise_nhs_number(spaced) == number
    changed_digit = str((int(number[position]) + shift) % 10)
    changed = number[:position] + changed_digit + number[position + 1 :]
    with pytest.raises(IdentifierError):
        normalise.normalise_nhs_number(changed)


@settings(max_examples=200, deadline=None)
@given(prefix=NINE_DIGITS, last=DIGIT)
def test_nhs_number_is_valid_exactly_when_its_check_digit_matches(prefix: str, last: str) -> None:
    check = normalise.nhs_check_digit(prefix)
    valid = _attempt(normalise.normalise_nhs_number, prefix + last) is not None
    assert valid == (check is not None and str(check) == last)


@settings(max_examples=100, deadline=None)
@given(
    digits=st.text(alphabet="0123456789", min_size=11, max_size=11),
    last=st.sampled_from([*"0123456789", *"ABCDEFGHJKLMNPQRTUVWXYZ"]),
    position=st.integers(1, 11),
    shift=st.integers(1, 9),
)
def test_upn_with_its_check_letter_validates_and_a_changed_digit_does_not(
    digits: str, last: str, position: int, shift: int
) -> None:
    rest = digits + last
    upn = normalise.upn_check_letter(rest) + rest
    assert normalise.normalise_upn(upn.lower()) == upn
    changed = upn[:position] + str((int(upn[position]) + shift) % 10) + upn[position + 1 :]
    with pytest.raises(IdentifierError):
        normalise.normalise_upn(changed)


# -- fast paths ----------------------------------------------------------------
# The normalisers take shortcuts for the common case (printable text, ASCII names,
# plain ISO dates, check digits from bytes). Each is held here to the general code
# it stands in for, which is kept as the reference.


def _reference_unusable(raw: str) -> bool:
    return any(
        unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in raw if ch not in "\t "
    )


@settings(max_examples=500, deadline=None)
@given(raw=TEXT | st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=30))
def test_the_printable_shortcut_refuses_exactly_what_the_category_check_refuses(
    raw: str,
) -> None:
    assume(len(raw) <= normalise.MAX_IDENTIFIER_LENGTH)
    try:
        normalise._reject_unusable(raw, "x")
    except IdentifierError:
        refused = True
    else:
        refused = False
    assert refused == _reference_unusable(raw)


ASCII_NAMES = st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=40) | st.text(
    alphabet=st.sampled_from(list("abcXYZ mr dr -.,_/'`\t09&()")), max_size=30
)


@settings(max_examples=500, deadline=None)
@given(raw=ASCII_NAMES)
def test_an_ascii_name_splits_as_the_general_path_splits_it(raw: str) -> None:
    assume(not _reference_unusable(raw))
    assert raw.translate(normalise._ASCII_NAME).split() == normalise._unicode_parts(raw)


def _reference_date(raw: str) -> date | None:
    match = re.match(r"^(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})$", raw.strip(), re.ASCII)
    if match is None:
        return None
    try:
        parsed = date(int(match["y"]), int(match["m"]), int(match["d"]))
    except ValueError:
        return None
    return parsed if 1900 <= parsed.year <= 2100 else None


@st.composite
def foreign_digit_dates(draw: st.DrawFn) -> str:
    """A real ISO date with one digit written in another script, which int() would read."""
    text = draw(st.dates(date(1900, 1, 1), date(2100, 12, 31))).isoformat()
    position = draw(st.sampled_from([0, 1, 2, 3, 5, 6, 8, 9]))
    zero = draw(st.sampled_from([0x660, 0xFF10, 0x966]))  # Arabic-Indic, fullwidth, Devanagari
    return text[:position] + chr(zero + int(text[position])) + text[position + 1 :]


@settings(max_examples=500, deadline=None)
@given(
    raw=st.text(alphabet=st.sampled_from(list("0123456789-- /x\u0663")), max_size=12)
    | st.dates().map(date.isoformat)
    | foreign_digit_dates()
    | TEXT
)
def test_a_plain_iso_date_reads_as_the_pattern_reads_it(raw: str) -> None:
    assume(not _reference_unusable(raw) and len(raw) <= normalise.MAX_IDENTIFIER_LENGTH)
    parsed = _attempt(lambda value: normalise.parse_date(value, "iso").isoformat(), raw)
    expected = _reference_date(raw)
    assert parsed == (None if expected is None else expected.isoformat())


@settings(max_examples=300, deadline=None)
@given(first_nine=NINE_DIGITS)
def test_nhs_check_digit_from_bytes_is_the_weighted_sum_of_digits(first_nine: str) -> None:
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    expected = 0 if check == 11 else None if check == 10 else check
    assert normalise.nhs_check_digit(first_nine) == expected


@settings(max_examples=300, deadline=None)
@given(
    digits=st.text(alphabet="0123456789", min_size=11, max_size=11),
    last=st.sampled_from([*"0123456789", *"ABCDEFGHJKLMNPQRTUVWXYZ"]),
)
def test_upn_check_letter_from_bytes_is_the_weighted_sum(digits: str, last: str) -> None:
    letters = "ABCDEFGHJKLMNPQRTUVWXYZ"
    values = [int(c) for c in digits] + [int(last) if last.isdigit() else letters.index(last)]
    total = sum(v * w for v, w in zip(values, range(2, 14), strict=True))
    assert normalise.upn_check_letter(digits + last) == letters[total % 23]
