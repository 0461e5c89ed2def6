"""Per-field comparison levels of two encoded records, and the strongest rule they share.

Levels come from equal keyed tokens first (cheap, exact) and Dice of the
per-field Bloom encodings second (for typos), in ``COMPARED_FIELDS`` order:

- NHS number, UPN: AGREE equal, DISAGREE different (two valid national
  identifiers that differ are strong evidence of two people), else MISSING.
- Given and family name: AGREE equal; NEAR when the name-variant group or the
  NYSIIS code is equal, the two names are swapped, or Dice of the encodings is
  at least ``NAME_NEAR``; else DISAGREE.
- Date of birth: AGREE equal; NEAR when day and month are swapped, the year and
  month are equal, or Dice is at least ``DOB_NEAR`` (one digit differs); else
  DISAGREE.
- Sex: AGREE or DISAGREE (``U``, not known, is MISSING).
- Postcode: AGREE equal; NEAR in the same sector or district; else DISAGREE.

Missing on either side is MISSING, never DISAGREE. The functions are pure and
symmetric: swapping the records gives the same levels and rule.
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


def _identity(left: Mapping[str, str], right: Mapping[str, str], form: str) -> Level:
    a = left.get(form)
    b = right.get(form)
    if a is None or b is None:
        return _MISSING
    return _AGREE if a == b else _DISAGREE


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
        or _dice_at_least(lb.get("given_name"), rb.get("given_name"), NAME_NEAR)
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


def _dob(
    lt: Mapping[str, str], rt: Mapping[str, str], lb: Mapping[str, int], rb: Mapping[str, int]
) -> Level:
    a = lt.get("dob")
    b = rt.get("dob")
    if a is None or b is None:
        return _MISSING
    if a == b:
        return _AGREE
    # dob_swapped is framed as a dob, so it equals the other's dob when only day and
    # month were exchanged (the relation is symmetric, so one direction suffices).
    if (
        lt.get("dob_swapped") == b
        or lt.get("dob_year_month") == rt.get("dob_year_month")
        or _dice_at_least(lb.get("date_of_birth"), rb.get("date_of_birth"), DOB_NEAR)
    ):
        return _NEAR
    return _DISAGREE


def _postcode(lt: Mapping[str, str], rt: Mapping[str, str]) -> Level:
    a = lt.get("postcode")
    b = rt.get("postcode")
    if a is None or b is None:
        return _MISSING
    if a == b:
        return _AGREE
    sector = lt.get("postcode_sector")
    district = lt.get("postcode_district")
    if (sector is not None and sector == rt.get("postcode_sector")) or (
        district is not None and district == rt.get("postcode_district")
    ):
        return _NEAR
    return _DISAGREE


def make_comparer(cascade: Cascade = DEFAULT_CASCADE) -> Comparer:
    """A ``compare`` that reports the strongest shared key of ``cascade``.

    The encoder and the comparer must use the same cascade: a key the encoder
    did not make is never shared.
    """
    names = tuple(key.name for key in validate_cascade(cascade))

    def compare_with(left: EncodedRecord, right: EncodedRecord) -> tuple[Levels, str | None]:
        lt = left.tokens
        rt = right.tokens
        lb = left.blooms
        rb = right.blooms
        levels = (
            _identity(lt, rt, "nhs"),
            _identity(lt, rt, "upn"),
            _given(lt, rt, lb, rb),
            _family(lt, rt, lb, rb),
            _dob(lt, rt, lb, rb),
            _identity(lt, rt, "sex"),
            _postcode(lt, rt),
        )
        for name in names:  # strongest first, so the first shared is the strongest
            token = lt.get(name)
            if token is not None and token == rt.get(name):
                return levels, name
        return levels, None

    return compare_with


_default = make_comparer()


def compare(left: EncodedRecord, right: EncodedRecord) -> tuple[Levels, str | None]:
    """Levels in ``COMPARED_FIELDS`` order and the strongest key of ``DEFAULT_CASCADE`` shared.

    For another cascade use ``make_comparer(cascade)``. Symmetric in its arguments.
    """
    return _default(left, right)
