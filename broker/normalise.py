"""Normalisation of UK identifiers: pure functions, idempotent and total.

Each function takes what an agency typed and returns the canonical form used
for keyed hashing, or raises :class:`broker.errors.IdentifierError`. Error
messages name the kind of identifier only, never the value, because they are
returned to callers and may be logged.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from operator import mul
from typing import Literal

from broker.errors import IdentifierError

MAX_IDENTIFIER_LENGTH = 256

DateFormat = Literal["iso", "dmy", "mdy"]

# Titles are dropped only from the front of a name; "Major" as a surname stays.
_TITLES = frozenset({"mr", "mrs", "miss", "ms", "mx", "master", "dr", "prof", "sir", "dame", "rev"})
_APOSTROPHES = "'\u2019\u2018`\u00b4\u02bc"
_NAME_SEPARATORS = re.compile(r"[\s\-\u2010\u2011\u2012\u2013\u2014.,_/]+")


def _reject_unusable(raw: str, what: str) -> None:
    if len(raw) > MAX_IDENTIFIER_LENGTH:
        raise IdentifierError(f"{what} is longer than {MAX_IDENTIFIER_LENGTH} characters")
    # A printable string holds no character of the categories refused here (all are
    # "Other"), and the check is one C call; only the rest need a category per character.
    if not raw.isprintable() and any(
        unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in raw if ch not in "\t "
    ):
        raise IdentifierError(f"{what} contains control or formatting characters")


# Letters whose accent is part of the letter, so Unicode decomposition leaves them:
# Łukasz is typed Lukasz on most UK systems, Søren as Soren, Þór as Thor.
_LETTER_FOLDS = str.maketrans(
    {"\u0131": "i", "\u0142": "l", "\u00f8": "o", "\u0111": "d", "\u0127": "h",
     "\u00e6": "ae", "\u0153": "oe", "\u00fe": "th", "\u00f0": "d"}
)  # fmt: skip


def _fold(text: str) -> str:
    """Fold case and strip diacritics until nothing changes (each step can undo the other).

    Case is folded before marks are stripped, so a capital and its small letter fold
    alike (casefold spells out a Greek iota subscript), and the dotless i folds to i as
    its capital I does: "YILDIZ" and "Yıldız" are one name.
    """
    for _ in range(4):
        decomposed = unicodedata.normalize("NFKD", text.casefold())
        stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
        folded = stripped.translate(_LETTER_FOLDS)
        if folded == text:
            break
        text = folded
    return text


# For an ASCII name, one translation does what folding, dropping apostrophes and
# splitting on separators do for any name: capitals to small letters, each separator
# to a space, and every other character (digits, apostrophes, punctuation) dropped.
_ASCII_SEPARATORS = " \t-.,_/"
_ASCII_NAME = str.maketrans(
    {
        **dict.fromkeys(map(chr, range(128))),
        **{letter: letter for letter in "abcdefghijklmnopqrstuvwxyz"},
        **{letter: letter.lower() for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
        **dict.fromkeys(_ASCII_SEPARATORS, " "),
    }
)


def name_parts(raw: str) -> tuple[str, ...]:
    """Split a name into normalised parts, dropping leading titles.

    ``"Dr  Zoë O'Brien-Smith"`` gives ``("zoe", "obrien", "smith")``. Raises
    IdentifierError when no letters remain.
    """
    _reject_unusable(raw, "name")
    parts = raw.translate(_ASCII_NAME).split() if raw.isascii() else _unicode_parts(raw)
    while len(parts) > 1 and parts[0] in _TITLES:
        parts.pop(0)
    if not parts:
        raise IdentifierError("name has no letters")
    # Compatibility decomposition can lengthen a name (U+FDFA is eighteen characters);
    # a canonical form the limit would refuse on its next pass is not canonical.
    if sum(map(len, parts)) > MAX_IDENTIFIER_LENGTH:
        raise IdentifierError(
            f"name is longer than {MAX_IDENTIFIER_LENGTH} characters once normalised"
        )
    return tuple(parts)


def _unicode_parts(raw: str) -> list[str]:
    """The parts of any name, titles not yet dropped (an ASCII name needs only _ASCII_NAME)."""
    folded = _fold(raw)
    for mark in _APOSTROPHES:
        folded = folded.replace(mark, "")
    parts = []
    for chunk in _NAME_SEPARATORS.split(folded):
        letters = "".join(ch for ch in chunk if ch.isalpha())
        if letters:
            parts.append(_fold(letters))
    return parts


def normalise_name(raw: str) -> str:
    """Canonical form of a name: its parts joined with nothing between them.

    Joining without a separator makes "O'Brien", "OBrien" and "O Brien" equal,
    and "Smith-Jones" equal to "Smith Jones".
    """
    return "".join(name_parts(raw))


_DATE_PATTERNS: dict[str, re.Pattern[str]] = {
    # re.ASCII: "\d" would otherwise accept digits of every script (fullwidth, Arabic-Indic).
    "iso": re.compile(r"^(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})$", re.ASCII),
    "dmy": re.compile(r"^(?P<d>\d{1,2})[/.\-](?P<m>\d{1,2})[/.\-](?P<y>\d{4})$", re.ASCII),
    "mdy": re.compile(r"^(?P<m>\d{1,2})[/.\-](?P<d>\d{1,2})[/.\-](?P<y>\d{4})$", re.ASCII),
}


def _is_plain_iso(raw: str) -> bool:
    """Whether ``raw`` is exactly ``DDDD-DD-DD`` in ASCII digits."""
    return (
        len(raw) == 10
        and raw[4] == "-"
        and raw[7] == "-"
        and raw.isascii()
        and (raw[:4] + raw[5:7] + raw[8:]).isdigit()
    )


def parse_date(raw: str, fmt: DateFormat = "iso") -> date:
    """Parse a date in the dataset's declared format; never guesses DD/MM against MM/DD.

    Raises IdentifierError for an unknown format, a malformed or an impossible date,
    or a year outside 1900-2100.
    """
    _reject_unusable(raw, "date")
    if fmt == "iso" and _is_plain_iso(raw):
        # What the iso pattern would match, read by position: most dates arrive so.
        year, month, day = int(raw[:4]), int(raw[5:7]), int(raw[8:])
    else:
        pattern = _DATE_PATTERNS.get(fmt)
        if pattern is None:
            raise IdentifierError(f"date format '{fmt}' is not one of iso, dmy, mdy")
        match = pattern.match(raw.strip())
        if match is None:
            raise IdentifierError(f"date is not in the declared format '{fmt}'")
        year, month, day = int(match["y"]), int(match["m"]), int(match["d"])
    if not 1900 <= year <= 2100:
        raise IdentifierError("date has a year outside 1900-2100")
    try:
        return date(year, month, day)
    except ValueError as exc:
        raise IdentifierError("date does not exist in the calendar") from exc


def normalise_date(raw: str, fmt: DateFormat = "iso") -> str:
    """Canonical form of a date: ISO 8601 ``YYYY-MM-DD``."""
    return parse_date(raw, fmt).isoformat()


_POSTCODE = re.compile(r"^(?P<outward>[A-Z]{1,2}[0-9][A-Z0-9]?)(?P<inward>[0-9][A-Z]{2})$")


def normalise_postcode(raw: str) -> str:
    """Canonical UK postcode: upper case, one space before the inward code.

    Accepts any case and spacing (``sw1a1aa``, ``SW1A  1AA``). Raises
    IdentifierError when the result is not a UK postcode shape.
    """
    _reject_unusable(raw, "postcode")
    compact = "".join(raw.split()).upper()
    if compact == "GIR0AA":
        return "GIR 0AA"
    match = _POSTCODE.match(compact)
    if match is None:
        raise IdentifierError("postcode is not a valid UK postcode")
    return f"{match['outward']} {match['inward']}"


def postcode_district(postcode: str) -> str:
    """The outward code (district) of a postcode, e.g. ``SW1A``."""
    return normalise_postcode(postcode).split(" ")[0]


def postcode_sector(postcode: str) -> str:
    """The sector of a postcode: district plus the inward digit, e.g. ``SW1A 1``."""
    outward, inward = normalise_postcode(postcode).split(" ")
    return f"{outward} {inward[0]}"


_NHS_WEIGHTS = range(10, 1, -1)
# Encoded, the digits are their code points: the weighted sum of the bytes less 48 ("0")
# times the sum of the weights is the weighted sum of the digits, with no int() per digit.
_NHS_ZEROS = 48 * sum(_NHS_WEIGHTS)


def nhs_check_digit(first_nine: str) -> int | None:
    """The modulus 11 check digit for the first nine digits, or None where none is valid."""
    if len(first_nine) != 9 or not first_nine.isascii() or not first_nine.isdigit():
        raise IdentifierError("NHS number must start with nine digits")
    total: int = sum(map(mul, first_nine.encode("ascii"), _NHS_WEIGHTS)) - _NHS_ZEROS
    check = 11 - total % 11
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def normalise_nhs_number(raw: str) -> str:
    """Canonical NHS number: ten digits whose check digit passes.

    Spaces and hyphens are ignored (``943 476 5919``). Raises IdentifierError
    when the shape or the check digit is wrong.
    """
    _reject_unusable(raw, "NHS number")
    digits = raw.replace(" ", "").replace("-", "")
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        raise IdentifierError("NHS number must be ten digits")
    if nhs_check_digit(digits[:9]) != int(digits[9]):
        raise IdentifierError("NHS number fails its check digit")
    return digits


_UPN_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"
_UPN_DIGIT_WEIGHTS = range(2, 13)  # the eleven digits; the twelfth character weighs 13
_UPN_ZEROS = 48 * sum(_UPN_DIGIT_WEIGHTS)  # as _NHS_ZEROS


def upn_check_letter(rest: str) -> str:
    """The DfE check letter for the twelve characters after it.

    The last of the twelve may itself be a letter (temporary UPNs); it counts
    as its position in the check-letter alphabet.
    """
    if len(rest) != 12 or not rest.isascii() or not rest[:11].isdigit():
        raise IdentifierError("unique pupil number must have eleven digits after its check letter")
    last = rest[11]
    if last.isdigit():
        last_value = int(last)
    elif last in _UPN_LETTERS:
        last_value = _UPN_LETTERS.index(last)
    else:
        raise IdentifierError("unique pupil number has an invalid final character")
    digits: int = sum(map(mul, rest[:11].encode("ascii"), _UPN_DIGIT_WEIGHTS)) - _UPN_ZEROS
    total = digits + last_value * 13
    return _UPN_LETTERS[total % 23]


def normalise_upn(raw: str) -> str:
    """Canonical unique pupil number: thirteen characters, check letter first and valid."""
    _reject_unusable(raw, "unique pupil number")
    compact = "".join(raw.split()).upper()
    if len(compact) != 13 or not compact.isascii():
        raise IdentifierError("unique pupil number must be thirteen characters")
    if compact[0] != upn_check_letter(compact[1:]):
        raise IdentifierError("unique pupil number fails its check letter")
    return compact


# A small vocabulary, following the NHS data dictionary's person stated gender codes:
# F female, M male, X other or indeterminate, U not known.
_SEX_CODES: dict[str, str] = {
    "f": "F",
    "female": "F",
    "girl": "F",
    "woman": "F",
    "2": "F",
    "m": "M",
    "male": "M",
    "boy": "M",
    "man": "M",
    "1": "M",
    "x": "X",
    "other": "X",
    "indeterminate": "X",
    "nonbinary": "X",
    "9": "X",
    "u": "U",
    "unknown": "U",
    "notknown": "U",
    "notstated": "U",
    "0": "U",
}


def normalise_sex(raw: str) -> str:
    """Map a sex or gender code to F, M, X or U; an unrecognised code is an error."""
    _reject_unusable(raw, "sex")
    key = "".join(ch for ch in _fold(raw) if ch.isalnum())
    if key == "":
        return "U"
    code = _SEX_CODES.get(key)
    if code is None:
        raise IdentifierError("sex code is not one of the recognised codes")
    return code
