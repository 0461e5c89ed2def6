"""Keyed Bloom-filter similarity encodings of identifiers, and Dice similarity between them.

An exact keyed hash of a name changes completely with one typo; these
encodings change a little. Each normalised identifier (``broker.normalise``
forms) is cut into padded character bigrams (``"jon"`` gives ``_j jo on n_``)
and each bigram sets a few bit positions in a filter. Two encodings of similar
values share most of their set bits, so their Dice coefficient is high.

Hardening, as the published attacks on Bloom-filter linkage call for:

- Keyed hashing. Every bit position comes from HMAC-SHA256 under the
  agreement's linkage key, over the message
  ``encode_parts("bloom:<field>", [salt, bigram])``, so the same bigram in
  another field or under another key sets unrelated bits. Without the key
  nobody can build an encoding to compare with, which defeats the dictionary
  attack that works against unkeyed filters.
- Positions are read straight from the digest (two bytes each), not by double
  hashing (``h1 + i*h2``), whose structure the Niedermeyer et al. attack uses.
- Record-level encodings (one filter per record, as in Schnell's
  cryptographic long-term key, CLK) with field weights: the fields' positions
  all land in one filter, so no bit says which field set it, which frustrates
  the frequency and pattern-mining attacks that succeed on one filter per field.
- Salting by year of birth: the year is part of every hashed message, so the
  same name in two birth years sets different bits and a frequent name's bit
  pattern is spread over many years instead of standing out.

Parameters, and why:

- ``FILTER_BITS = 1024``: as Schnell's CLK. A power of two that divides 65,536,
  so two digest bytes modulo the length give an unbiased position.
- ``q = 2`` with ``_`` padding: bigrams are the published default for names; the
  padding lets a first or last letter count, so Jon/John share ``_j`` and ``n_``.
- Positions per bigram (field weight, ``FIELD_WEIGHTS``): given name 10, family
  name 10, date of birth 6, postcode 6. Names carry most of the evidence and
  errors; a date or postcode contributes fewer bits per bigram, so a typo in a
  postcode moves the record's similarity less than a different name does. A
  typical record sets about 230 positions, filling about a fifth of the filter,
  so chance overlap between unrelated records stays low.

What this does not protect against, and what a caller must know:

- Per-field encodings (``encode_field``) exist so that the scorer can say
  whether a field agrees, nearly agrees or disagrees. They are weaker than the
  record-level encoding against frequency analysis; store and release them no
  more widely than the keyed tokens, and never outside the broker.
- Salting by year of birth means a record with a wrong birth year is no more
  similar to its true match than chance; the deterministic keys and blocking
  must catch those.
  For that reason the linkage engine's per-field encodings
  (``broker.link.encode``) are salted by no record attribute at all (salt
  ``""``): any attribute used as a salt turns an error in it into a lost name
  similarity. Their protection is the key, the field name in every message,
  and never leaving the broker; see docs/similarity-encodings.md.
- Anyone holding the linkage key can encode guesses and compare: the encodings
  are exactly as secret as the key.
- A missing field sets no bits; ``comparison_level`` says ``MISSING`` rather than
  treating absence as disagreement.

All HMAC here is the standard library's (``hmac.new`` keyed once, then
``hmac.HMAC.copy`` per bigram, as ``broker.pseudonymise.Tokeniser`` does); the
reference recipe, one ``hmac.digest`` per bigram, is ``bigram_positions``.
See docs/similarity-encodings.md.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from broker.pseudonymise import encode_parts

FILTER_BITS = 1024
Q = 2
PAD = "_"
# Positions set per bigram of each field: the field weights of the record-level encoding.
FIELD_WEIGHTS: Mapping[str, int] = {
    "given_name": 10,
    "family_name": 10,
    "date_of_birth": 6,
    "postcode": 6,
}
ENCODED_FIELDS = tuple(FIELD_WEIGHTS)
# One SHA-256 digest holds 16 two-byte positions; more would need a second digest per bigram.
_MAX_WEIGHT = 16
# Dice at or above which a field nearly agrees: one substituted letter in a four-letter
# name keeps 3 of 5 bigrams (0.6); unrelated names share almost none (about 0.1).
NEARLY_AGREE = 0.6

if FILTER_BITS & (FILTER_BITS - 1) or FILTER_BITS > 1 << 16:
    raise AssertionError("FILTER_BITS must be a power of two no larger than 65,536")
if any(not 1 <= weight <= _MAX_WEIGHT for weight in FIELD_WEIGHTS.values()):
    raise AssertionError("each field weight must be between 1 and 16")


class ComparisonLevel(enum.Enum):
    """How two values of one field compare, as the scorer and the resolution queue see it."""

    AGREE = "agree"
    NEARLY_AGREE = "nearly_agree"
    DISAGREE = "disagree"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class Encoding:
    """A Bloom filter of ``FILTER_BITS`` bits held as a Python int (bit i set means position i)."""

    bits: int

    def __post_init__(self) -> None:
        if self.bits < 0 or self.bits >> FILTER_BITS:
            raise ValueError("an encoding has FILTER_BITS bits")

    @property
    def weight(self) -> int:
        """How many bits are set."""
        return self.bits.bit_count()

    def to_bytes(self) -> bytes:
        """The filter as FILTER_BITS / 8 bytes, big-endian, for storage."""
        return self.bits.to_bytes(FILTER_BITS // 8, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> Encoding:
        """An encoding from what ``to_bytes`` gave."""
        if len(data) != FILTER_BITS // 8:
            raise ValueError("an encoding is FILTER_BITS / 8 bytes")
        return cls(int.from_bytes(data, "big"))


def bigrams(value: str) -> frozenset[str]:
    """The padded character bigrams of a normalised value; none for an empty value.

    Postcodes lose their space first, so ``SW1A 1AA`` and ``SW1A1AA`` agree.
    A set, not a list: a bigram that occurs twice sets the same bits twice.
    """
    compact = value.replace(" ", "")
    if not compact:
        return frozenset()
    padded = PAD + compact + PAD
    return frozenset(padded[i : i + Q] for i in range(len(padded) - Q + 1))


def birth_year_salt(date_of_birth: str) -> str:
    """The salt for a record: the year of its normalised date of birth (``""`` when unknown)."""
    return date_of_birth[:4] if len(date_of_birth) >= 4 else ""


# A digest read as 16 big-endian two-byte numbers, in one C call rather than 16 slices.
_SIXTEEN_SHORTS = struct.Struct(">16H")


def _positions(digest: bytes, weight: int) -> Iterator[int]:
    # Two bytes per position; FILTER_BITS divides 65,536, so the modulus adds no bias.
    for number in _SIXTEEN_SHORTS.unpack(digest)[:weight]:
        yield number % FILTER_BITS


def bigram_positions(key: bytes, field: str, salt: str, gram: str) -> frozenset[int]:
    """The reference recipe: the positions one bigram of ``field`` sets, by one ``hmac.digest``.

    ``Encoder`` gives the same positions faster; the tests hold it to this.
    """
    digest = hmac.digest(key, encode_parts(f"bloom:{field}", [salt, gram]), "sha256")
    return frozenset(_positions(digest, FIELD_WEIGHTS[field]))


class Encoder:
    """Field and record encodings under one linkage key, keyed once for a whole batch.

    It is as good as the key: keep it no longer than the key is in use. Values
    must already be normalised (``broker.normalise``); a field outside
    ``ENCODED_FIELDS`` is refused so that a misspelt field name is not silently
    encoded with no weight.
    """

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def field_bits(self, field: str, value: str, salt: str) -> int:
        """The bits one field's value sets, as an int (0 for an empty value)."""
        try:
            weight = FIELD_WEIGHTS[field]
        except KeyError:
            raise ValueError(f"'{field}' is not an encoded field") from None
        grams = bigrams(value)
        if not grams:
            return 0
        # The framed domain and salt begin every message of this field: hash them once.
        prefixed = self._keyed.copy()
        prefixed.update(encode_parts(f"bloom:{field}", [salt]))
        bits = 0
        for gram in grams:
            data = gram.encode("utf-8")
            mac = prefixed.copy()
            # What encode_parts appends for one more part: its 4-byte length, then the bytes.
            mac.update(len(data).to_bytes(4, "big") + data)
            for number in _SIXTEEN_SHORTS.unpack(mac.digest())[:weight]:
                bits |= 1 << (number % FILTER_BITS)
        return bits

    def encode_field(self, field: str, value: str, salt: str) -> Encoding:
        """One field's encoding, for per-field comparison levels."""
        return Encoding(self.field_bits(field, value, salt))

    def encode_record(self, identifiers: Mapping[str, str], salt: str) -> Encoding:
        """The record-level encoding (CLK): every encoded field's bits in one filter.

        Identifiers outside ``ENCODED_FIELDS`` (NHS number, UPN, sex) are ignored:
        they are matched exactly by keyed tokens. Pass ``birth_year_salt`` of the
        record's date of birth as ``salt``, the same for both sides of a comparison.
        """
        bits = 0
        for field in ENCODED_FIELDS:
            value = identifiers.get(field, "")
            if value:
                bits |= self.field_bits(field, value, salt)
        return Encoding(bits)

    def encode_fields(self, identifiers: Mapping[str, str], salt: str) -> dict[str, Encoding]:
        """Each present encoded field's own encoding; their union is ``encode_record``'s."""
        return {
            field: self.encode_field(field, identifiers[field], salt)
            for field in ENCODED_FIELDS
            if identifiers.get(field)
        }


def dice(left: Encoding, right: Encoding) -> float:
    """The Dice coefficient 2|A∩B| / (|A| + |B|), in [0, 1]; two empty encodings give 1."""
    total = left.bits.bit_count() + right.bits.bit_count()
    if total == 0:
        return 1.0
    return 2 * (left.bits & right.bits).bit_count() / total


def comparison_level(
    left: Encoding | None, right: Encoding | None, nearly: float = NEARLY_AGREE
) -> ComparisonLevel:
    """How two encodings of one field compare: equal, Dice at least ``nearly``, or less.

    ``None`` or an empty encoding on either side is ``MISSING``: an absent value
    is no evidence either way. Agreement needs equal encodings, because Dice
    below 1 always means some bigram differs.
    """
    if left is None or right is None or not left.bits or not right.bits:
        return ComparisonLevel.MISSING
    if left.bits == right.bits:
        return ComparisonLevel.AGREE
    if dice(left, right) >= nearly:
        return ComparisonLevel.NEARLY_AGREE
    return ComparisonLevel.DISAGREE
