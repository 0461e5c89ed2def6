"""The shapes the linkage steps pass to one another.

Nothing here holds an identifier: an ``EncodedRecord`` carries keyed tokens
(HMAC-SHA256 under the agreement's linkage key) and keyed Bloom encodings
(``broker.bloom``), which are useless without that key.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

#: The fields a pair is compared on, in the order of ``Comparison.levels``.
COMPARED_FIELDS: tuple[str, ...] = (
    "nhs_number",
    "upn",
    "given_name",
    "family_name",
    "date_of_birth",
    "sex",
    "postcode",
)


class Level(enum.IntEnum):
    """How one field of a pair compares; the order is from no evidence to full agreement."""

    MISSING = 0  # absent on either side: no evidence either way
    DISAGREE = 1
    NEAR = 2  # nearly agrees: a typo, a variant, a swapped day and month, a nearby postcode
    AGREE = 3


class Band(enum.StrEnum):
    """The decision for a pair. Only ``MATCH`` links; ``POSSIBLE`` waits for people."""

    MATCH = "match"
    POSSIBLE = "possible"
    NON_MATCH = "non_match"


@dataclass(frozen=True, slots=True)
class EncodedRecord:
    """One record as the engine sees it.

    ``ref`` is unique across everything linked together (``police:123``);
    ``source`` is the file stem or agency that supplied it. ``tokens`` maps a
    token name (for example ``nhs``, ``dob``, ``given_phonetic``,
    ``postcode_sector``, ``household``) to its keyed token; a token is absent
    when its identifiers are missing or fail their check (an NHS number whose
    check digit fails makes no ``nhs`` token). ``blooms`` maps an encoded field
    (``broker.bloom.ENCODED_FIELDS``) to its filter bits as an int.
    """

    ref: str
    source: str
    tokens: Mapping[str, str] = field(default_factory=dict)
    blooms: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Two records' per-field levels, in ``COMPARED_FIELDS`` order.

    ``left`` and ``right`` are positions in the list being linked, left < right.
    ``rule`` names the deterministic match key both share, if any.
    """

    left: int
    right: int
    levels: tuple[Level, ...]
    rule: str | None = None


@dataclass(frozen=True, slots=True)
class ScoredPair:
    """A compared pair with its match weight (log2 odds), probability and band."""

    left_ref: str
    right_ref: str
    weight: float
    probability: float
    band: Band
    rule: str | None
    levels: tuple[Level, ...]
