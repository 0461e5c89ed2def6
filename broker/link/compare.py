"""Per-field comparison levels of two encoded records, and the strongest rule they share.

Levels come from equal keyed tokens first (cheap, exact) and Dice of the
per-field Bloom encodings second (for typos), in ``COMPARED_FIELDS`` order:

- NHS number, UPN: AGREE equal, DISAGREE different (two valid national
  identifiers that differ are strong evidence of two people), else MISSING.
- Given and family name: AGREE equal; NEAR when the NYSIIS code is equal (and,
  for the given name, the name-variant group), the two names are swapped, or
  Dice of the encodings is at least ``NAME_NEAR`` (for the given name, only
  with the same first letter: twins' names such as Nathan and Ethan are as
  alike by Dice as a typo); else DISAGREE.
- Date of birth: AGREE equal; NEAR when day and month are swapped, the year and
  month are equal, or Dice is at least ``DOB_NEAR`` (one digit differs); else
  DISAGREE.
- Sex: AGREE or DISAGREE (``U``, not known, is MISSING).
- Postcode: AGREE equal; NEAR in the same sector or district; else DISAGREE.

Missing on either side is MISSING, never DISAGREE. The functions are pure and
symmetric: swapping the records gives the same levels and rule.

The rule is the strongest key of the cascade whose tokens both records hold
and are equal; a key is looked up only when the levels allow it (a key over
the given name cannot be shared when the given names disagree), so most
pairs cost no rule look-ups. About 3.8 microseconds per comparison in CPython
3.11 over the 560,000 candidate pairs of 100,000 synthetic records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from broker.link.encode import DEFAULT_CASCADE, Cascade, validate_cascade
from broker.link.types import EncodedRecord, Level

#: Dice of two name encodings at or above which the names nearly agree. One
#: substituted letter in a four-letter name keeps 3 of 5 bigrams (Dice 0.6);
#: unrelated names share almost none.
NAME_NEAR = 0.6
#: Dice of two date encodings at or above which the dates nearly agree. One
#: differing digit changes 2 of the 11 bigrams of ``YYYY-MM-DD`` (Dice about
#: 0.8); two differing digits fall to about 0.65.
DOB_NEAR = 0.78

Levels = tuple[Level, ...]
Comparer = Callable[[EncodedRecord, EncodedRecord], tuple[Levels, str | None]]

_MISSING, _DISAGREE, _NEAR, _AGREE = Level.MISSING, Level.DISAGREE, Level.NEAR, Level.AGREE


def _dice_at_least(left: int | None, right: int | None, threshold: float) -> bool:
    # 2|A&B| / (|A|+|B|) >= t, without a division; absent or empty encodings never are.
    if not left or not right:
        return False
    return 2 * (left & right).bit_count() >= threshold * (left.bit_count() + right.bit_count())


def _given(
    lt: Mapping[str, str], rt: Mapping[str, str], lb: Mapping[str, int], rb: Mapping[str, int]
) -> Level:
    a = lt.get("given")
    b = rt.get("given")
    if a is None or b is None:
        return _MISSING
    if a == b:
        return _AGREE
    if (
        lt["given_variant"] == rt["given_variant"]
        or lt["given_phonetic"] == rt["given_phonetic"]
        or _swapped(lt, rt)
        or (
            # Twins' names can be as alike as typos (Minh and Linh, Nathan and Ethan);
            # a keying slip seldom changes the first letter, and twins' names often do.
            lt["given_initial"] == rt["given_initial"]
            and _dice_at_least(lb.get("given_name"), rb.get("given_name"), NAME_NEAR)
        )
    ):
        return _NEAR
    return _DISAGREE


def _family(
    lt: Mapping[str, str], rt: Mapping[str, str], lb: Mapping[str, int], rb: Mapping[str, int]
) -> Level:
    a = lt.get("family")
    b = rt.get("family")
    if a is None or b is None:
        return _MISSING
    if a == b:
        return _AGREE
    if (
        lt["family_phonetic"] == rt["family_phonetic"]
        or _swapped(lt, rt)
        or _dice_at_least(lb.get("family_name"), rb.get("family_name"), NAME_NEAR)
    ):
        return _NEAR
    return _DISAGREE


def _swapped(lt: Mapping[str, str], rt: Mapping[str, str]) -> bool:
    # Both names present on both sides (names_sorted exists) and equal once sorted.
    a = lt.get("names_sorted")
    return a is not None and a == rt.get("names_sorted")


# The least level each form's field must reach for a key over that form to be shared:
# an exact form needs AGREE, a looser one NEAR; an initial or a year needs only presence.
_FORM_FIELD_LEVEL: Mapping[str, tuple[int, Level]] = {
    "nhs": (0, _AGREE),
    "upn": (1, _AGREE),
    "given": (2, _AGREE),
    "given_variant": (2, _NEAR),
    "given_phonetic": (2, _NEAR),
    "given_initial": (2, _DISAGREE),
    "family": (3, _AGREE),
    "family_phonetic": (3, _NEAR),
    "family_initial": (3, _DISAGREE),
    "names_sorted": (2, _NEAR),
    "dob": (4, _AGREE),
    "dob_swapped": (4, _NEAR),
    "dob_unordered": (4, _NEAR),
    "dob_year": (4, _DISAGREE),
    "dob_year_month": (4, _NEAR),
    "sex": (5, _AGREE),
    "postcode": (6, _AGREE),
    "postcode_sector": (6, _NEAR),
    "postcode_district": (6, _NEAR),
    "household": (6, _AGREE),
    "given_soundex": (2, _DISAGREE),
    "variant_initial": (2, _DISAGREE),
    "family_soundex": (3, _DISAGREE),
    "sorted_soundex": (2, _DISAGREE),
    "initials_sorted": (2, _DISAGREE),
    "dob_month_day": (4, _DISAGREE),
}


def _requirements(forms: tuple[str, ...]) -> tuple[tuple[int, Level], ...]:
    needed: dict[int, Level] = {}
    for form in forms:
        position, level = _FORM_FIELD_LEVEL[form]
        needed[position] = max(level, needed.get(position, _DISAGREE))
    return tuple(sorted(needed.items()))


def make_comparer(cascade: Cascade = DEFAULT_CASCADE) -> Comparer:
    """A ``compare`` that reports the strongest shared key of ``cascade``.

    The encoder and the comparer must use the same cascade: a key the encoder
    did not make is never shared.
    """
    # Each key with what its fields' levels must reach before its tokens are worth
    # looking up: most candidate pairs disagree on a name or the date, and skip them all.
    keys = tuple((key.name, _requirements(key.forms)) for key in validate_cascade(cascade))

    def compare_with(left: EncodedRecord, right: EncodedRecord) -> tuple[Levels, str | None]:
        # One body with no calls per field: this runs for every candidate pair.
        lt = left.tokens
        rt = right.tokens
        get_l = lt.get
        get_r = rt.get
        a, b = get_l("nhs"), get_r("nhs")
        nhs = _MISSING if a is None or b is None else _AGREE if a == b else _DISAGREE
        a, b = get_l("upn"), get_r("upn")
        upn = _MISSING if a is None or b is None else _AGREE if a == b else _DISAGREE
        a, b = get_l("sex"), get_r("sex")
        sex = _MISSING if a is None or b is None else _AGREE if a == b else _DISAGREE
        given = _given(lt, rt, left.blooms, right.blooms)
        family = _family(lt, rt, left.blooms, right.blooms)
        a, b = get_l("dob"), get_r("dob")
        if a is None or b is None:
            dob = _MISSING
        elif a == b:
            dob = _AGREE
        elif (
            get_l("dob_swapped") == b
            or get_l("dob_year_month") == get_r("dob_year_month")
            or _dice_at_least(
                left.blooms.get("date_of_birth"), right.blooms.get("date_of_birth"), DOB_NEAR
            )
        ):
            # dob_swapped is framed as a dob, so it equals the other's dob when only day
            # and month were exchanged (a symmetric relation: one direction suffices).
            dob = _NEAR
        else:
            dob = _DISAGREE
        a, b = get_l("postcode"), get_r("postcode")
        if a is None or b is None:
            postcode = _MISSING
        elif a == b:
            postcode = _AGREE
        else:
            a = get_l("postcode_sector")
            b = get_l("postcode_district")
            near = (a is not None and a == get_r("postcode_sector")) or (
                b is not None and b == get_r("postcode_district")
            )
            postcode = _NEAR if near else _DISAGREE
        levels = (nhs, upn, given, family, dob, sex, postcode)
        for name, needed in keys:  # strongest first, so the first shared is the strongest
            for position, least in needed:
                if levels[position] < least:
                    break
            else:
                token = get_l(name)
                if token is not None and token == get_r(name):
                    return levels, name
        return levels, None

    return compare_with


_default = make_comparer()


def compare(left: EncodedRecord, right: EncodedRecord) -> tuple[Levels, str | None]:
    """Levels in ``COMPARED_FIELDS`` order and the strongest key of ``DEFAULT_CASCADE`` shared.

    For another cascade use ``make_comparer(cascade)``. Symmetric in its arguments.
    """
    return _default(left, right)
