"""Which pairs are worth comparing: records that share a block of any pass.

Each blocking pass (``BLOCKING_PASSES``, twelve of them) keys its blocks by
the keyed tokens (``broker.link.encode``) of a few coarse forms taken
together, so a block says nothing without the linkage key: NHS number; UPN;
date of birth (day and month in either order) with the family name's
Soundex, or with the given name's (of its variant group, so Bill meets
William), or with both initials sorted, or with the postcode; both Soundex
codes with year and month of birth,
or with the postcode district; the two names' Soundex codes sorted with the
date of birth; family Soundex, given initial, day and month (a wrong year);
family Soundex, year and month, and sex; and, as a last resort for a missing
date and a move, the two names alone. The passes are independent, so one
error (a typo, a nickname, a swap, a moved address, a wrong day or year)
breaks some of them and not all: a pair is a candidate when it shares any one
block.

Measured on about 100,000 synthetic records (``broker.synth``, seed 7): the
moderate profile gives 5.6 comparisons per record and keeps 99.95% of true
pairs; the hard profile (which drops dates of birth) 5.4 and 98.2%. Without
the names pass, 3.4 comparisons per record on moderate and 97.2% kept on hard.
On about 300,000 (moderate, seed 11) 8.5 comparisons per record: blocks grow
with the data until the caps stop them, so the count grows slowly, not with
the square of the data.

Oversized blocks (a very common name in a very common year) would make the
comparisons grow with the square of the data. A block larger than
``max_block`` is split by a refining form of its pass
(``BLOCK_REFINEMENTS``: the given initial for family Soundex, year and month
and sex, for instance); a part still larger than ``max_block`` is skipped, and counted in
``BlockingStats``, in the knowledge that the other passes still see its pairs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from broker.link.types import EncodedRecord

# The forms (``broker.link.encode``) whose tokens together make each pass's key.
# ``*_soundex`` here are the coarser Soundex codes, computed only for blocking.
BLOCKING_PASSES: Mapping[str, tuple[str, ...]] = {
    "nhs": ("nhs",),
    "upn": ("upn",),
    # A wrong or changed given name, or a move.
    "dob_family_soundex": ("dob_unordered", "family_soundex"),
    # A wrong or changed family name, or a move.
    "dob_given_soundex": ("dob_unordered", "given_soundex"),
    # A wrong day of birth (the synthetic profiles' plus or minus one), or a move.
    "soundex_year_month": ("given_soundex", "family_soundex", "dob_year_month"),
    # Given and family names swapped, day and month swapped, or both.
    "sorted_soundex_dob_unordered": ("sorted_soundex", "dob_unordered"),
    # A wrong year of birth.
    "family_soundex_initial_month_day": ("family_soundex", "variant_initial", "dob_month_day"),
    # A wholly wrong date of birth, at the same district.
    "soundex_district": ("given_soundex", "family_soundex", "postcode_district"),
    # Swapped names with a typo in one of them.
    "dob_sorted_initials": ("dob_unordered", "initials_sorted"),
    # A nickname or a changed given name, and a wrong day of birth.
    "family_soundex_year_month_sex": ("family_soundex", "dob_year_month", "sex"),
    # Both names changed (a nickname and a new family name), same date and address.
    "dob_postcode": ("dob_unordered", "postcode"),
    # No date of birth, or a wrong one, and a move: the names alone.
    "names": ("given_variant", "family"),
}
#: What an oversized block of each pass is split by: a tokenised form of the record.
BLOCK_REFINEMENTS: Mapping[str, str] = {
    "nhs": "dob",
    "upn": "dob",
    "dob_family_soundex": "given_initial",
    "dob_given_soundex": "family_initial",
    "soundex_year_month": "postcode_district",
    "sorted_soundex_dob_unordered": "postcode_district",
    "family_soundex_initial_month_day": "sex",
    "soundex_district": "dob_year",
    "dob_sorted_initials": "postcode_district",
    "family_soundex_year_month_sex": "given_initial",
    "dob_postcode": "sex",
    "names": "sex",
}

#: The largest block compared in full; larger ones are split, then skipped.
DEFAULT_MAX_BLOCK = 200
#: Lower caps for passes of last resort. Two records agreeing on names alone are worth
#: comparing only when the names are uncommon: a common name with no date of birth
#: and no address in common could never be linked with confidence anyway.
PASS_MAX_BLOCK: Mapping[str, int] = {"names": 16}


@dataclass(frozen=True, slots=True)
class BlockingStats:
    """What the cap did: blocks split, parts skipped, and the pairs those parts held."""

    blocks: int
    oversized_blocks: int
    skipped_parts: int
    skipped_pairs: int  # within skipped parts; many are still found by another pass


BlockKey = str | tuple[str, ...]


class _Pass(NamedTuple):
    forms: tuple[str, ...]
    refine: str
    limit: int


def _key(tokens: Mapping[str, str], forms: tuple[str, ...]) -> BlockKey | None:
    # A pass's key is its forms' keyed tokens together: no HMAC beyond the forms' own.
    if len(forms) == 1:
        return tokens.get(forms[0])
    key = tuple(map(tokens.get, forms))
    return None if None in key else key  # type: ignore[return-value]


class BlockIndex:
    """Blocks kept up to date as records arrive, for linking one record at a time.

    ``add`` a record at its position; ``candidates`` gives the positions sharing
    a block with a record (its own too, once added). After adding every record,
    the candidates of each are exactly its pairs in ``candidate_pairs``. A block
    that grows past its cap stops giving candidates from then on (other than
    through its refined parts); pairs a caller found before are its own.
    """

    __slots__ = ("_blocks", "_parts", "_passes", "_records")

    def __init__(
        self,
        max_block: int = DEFAULT_MAX_BLOCK,
        passes: Sequence[str] = tuple(BLOCKING_PASSES),
    ) -> None:
        if max_block < 2:
            raise ValueError("max_block must be at least 2")
        unknown = [name for name in passes if name not in BLOCKING_PASSES]
        if unknown:
            raise ValueError(f"unknown blocking pass '{unknown[0]}'")
        self._passes = tuple(
            _Pass(
                BLOCKING_PASSES[name],
                BLOCK_REFINEMENTS[name],
                min(max_block, PASS_MAX_BLOCK.get(name, max_block)),
            )
            for name in passes
        )
        # Per pass: key -> positions, and, for oversized blocks only, key -> refining
        # token -> positions (a dictionary for every small block would cost more memory
        # than the blocks themselves).
        self._blocks: tuple[dict[BlockKey, list[int]], ...] = tuple({} for _ in self._passes)
        self._parts: tuple[dict[BlockKey, dict[str, list[int]]], ...] = tuple(
            {} for _ in self._passes
        )
        # Records by position, to split a block when it grows past its cap.
        self._records: dict[int, EncodedRecord] = {}

    def add(self, position: int, record: EncodedRecord) -> None:
        """Put the record, known by ``position``, into the block of each of its passes."""
        tokens = record.tokens
        self._records[position] = record
        for spec, blocks, parts_of in zip(self._passes, self._blocks, self._parts, strict=True):
            key = _key(tokens, spec.forms)
            if key is None:
                continue
            block = blocks.setdefault(key, [])
            block.append(position)
            if len(block) <= spec.limit:
                continue
            parts = parts_of.get(key)
            if parts is None:
                parts = parts_of[key] = {}
                for member in block[:-1]:
                    member_refine = self._records[member].tokens.get(spec.refine, "")
                    parts.setdefault(member_refine, []).append(member)
            parts.setdefault(tokens.get(spec.refine, ""), []).append(position)

    def candidates(self, record: EncodedRecord) -> set[int]:
        """The positions of added records that share a block (or, in one too big, a part)."""
        found: set[int] = set()
        tokens = record.tokens
        for spec, blocks, parts_of in zip(self._passes, self._blocks, self._parts, strict=True):
            key = _key(tokens, spec.forms)
            if key is None:
                continue
            block = blocks.get(key)
            if block is None:
                continue
            if len(block) <= spec.limit:
                found.update(block)
                continue
            part = parts_of[key].get(tokens.get(spec.refine, ""))
            if part is not None and len(part) <= spec.limit:
                found.update(part)
        return found

    def stats(self) -> BlockingStats:
        """How many blocks there are, how many are oversized, and what the caps skip."""
        blocks = oversized = skipped_parts = skipped_pairs = 0
        for spec, by_key, parts_of in zip(self._passes, self._blocks, self._parts, strict=True):
            blocks += len(by_key)
            for key, block in by_key.items():
                if len(block) <= spec.limit:
                    continue
                oversized += 1
                for part in parts_of[key].values():
                    if len(part) > spec.limit:
                        skipped_parts += 1
                        skipped_pairs += len(part) * (len(part) - 1) // 2
        return BlockingStats(blocks, oversized, skipped_parts, skipped_pairs)


def candidate_pairs(
    records: Sequence[EncodedRecord], max_block: int = DEFAULT_MAX_BLOCK
) -> Iterator[tuple[int, int]]:
    """Each pair of positions sharing a block, once, as (left, right) with left < right.

    In order of left, then right, so the output is deterministic; as a set of
    ref pairs it does not depend on the order of ``records``.
    """
    index = build_index(records, max_block)
    for position, record in enumerate(records):
        for other in sorted(index.candidates(record)):
            if other > position:
                yield position, other


def build_index(records: Sequence[EncodedRecord], max_block: int = DEFAULT_MAX_BLOCK) -> BlockIndex:
    """A ``BlockIndex`` holding ``records`` at their positions (for ``stats`` or reuse)."""
    index = BlockIndex(max_block)
    for position, record in enumerate(records):
        index.add(position, record)
    return index
