"""Identifiers to an ``EncodedRecord``: the one step of linkage that sees them in clear.

A record's identifiers are normalised (``broker.normalise``) and turned into
*forms*: the values themselves and coarser versions of them (initials, a
phonetic code, the name-variant group, year and month of birth, day and month
swapped, postcode district and sector, the two names sorted, a household
address). Each form becomes one keyed token (``broker.pseudonymise.Tokeniser``
under the agreement's linkage key), framed by its own name so that tokens of
different forms never collide; the one deliberate exception is
``dob_swapped``, framed as ``dob`` so that it can equal the other record's
date of birth. The deterministic keys of the cascade are tokens over several
forms at once. The blocking passes (``broker.link.blocking``) key their
blocks by the tokens of coarse forms taken together (Soundex codes, initials,
day and month), so they cost no HMAC of their own. Names, date of birth and
postcode are also Bloom-encoded per field (``broker.bloom``) for Dice
similarity.

Tokens are truncated to 96 bits (24 hex characters): they are compared only
with one another inside one run, where a chance collision among even 10^8
tokens has odds below 10^-12, and a million records hold about 25 million of
them, so the saving in memory matters.

The deterministic keys (``Cascade``) each declare a strength: 3, a national
identifier (equal means the same person, different means different people);
2, an exact combination that only the same person shares in practice; 1, a
fuzzy combination (a variant, a phonetic code, a swap) that is evidence, not
proof. Every default key includes the given name in some form, so twins with
different given names share none of them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import NamedTuple, cast

import jellyfish

from broker.bloom import Encoder
from broker.errors import IdentifierError
from broker.link.blocking import BLOCK_REFINEMENTS, BLOCKING_PASSES
from broker.link.types import EncodedRecord
from broker.name_variants import canonical_given_name
from broker.normalise import (
    normalise_date,
    normalise_name,
    normalise_nhs_number,
    normalise_postcode,
    normalise_sex,
    normalise_upn,
)
from broker.pseudonymise import Tokeniser

#: Hex characters kept of each token (96 bits); see the module docstring.
TOKEN_HEX = 24

#: The forms a record can have, each a token of that name when present.
FORMS: tuple[str, ...] = (
    "nhs",
    "upn",
    "given",
    "family",
    "dob",
    "sex",
    "postcode",
    "given_initial",
    "family_initial",
    "given_phonetic",
    "family_phonetic",
    "given_variant",
    "names_sorted",
    "dob_year",
    "dob_year_month",
    "dob_swapped",
    "dob_unordered",
    "postcode_district",
    "postcode_sector",
    "household",
    # Coarse forms for blocking (broker.link.blocking): the given name's Soundex and
    # initial are of its variant group, so Bill meets William.
    "given_soundex",
    "family_soundex",
    "sorted_soundex",
    "variant_initial",
    "initials_sorted",
    "dob_month_day",
)


class CascadeKey(NamedTuple):
    """One deterministic key: its name, the forms it hashes together, and its strength."""

    name: str
    forms: tuple[str, ...]
    strength: int


#: The deterministic keys, strongest first (compare reports the strongest shared).
Cascade = tuple[CascadeKey, ...]

IDENTITY_STRENGTH = 3
EXACT_STRENGTH = 2
FUZZY_STRENGTH = 1

DEFAULT_CASCADE: Cascade = (
    CascadeKey("nhs", ("nhs",), IDENTITY_STRENGTH),
    CascadeKey("upn", ("upn",), IDENTITY_STRENGTH),
    CascadeKey("name_dob_postcode", ("given", "family", "dob", "postcode"), EXACT_STRENGTH),
    CascadeKey(
        "variant_dob_postcode", ("given_variant", "family", "dob", "postcode"), FUZZY_STRENGTH
    ),
    CascadeKey("swapped_names_dob_postcode", ("names_sorted", "dob", "postcode"), FUZZY_STRENGTH),
    CascadeKey(
        "name_dob_swapped_postcode",
        ("given", "family", "dob_unordered", "postcode"),
        FUZZY_STRENGTH,
    ),
    CascadeKey(
        "phonetic_dob_sector",
        ("given_phonetic", "family_phonetic", "dob", "postcode_sector"),
        FUZZY_STRENGTH,
    ),
    CascadeKey("name_dob", ("given", "family", "dob"), FUZZY_STRENGTH),
)

# Blocking reads its keys and refinements from the record's tokens: each must be a form.
if (
    not set(BLOCK_REFINEMENTS.values()) <= set(FORMS)
    or set(BLOCK_REFINEMENTS) != set(BLOCKING_PASSES)
    or not {form for forms in BLOCKING_PASSES.values() for form in forms} <= set(FORMS)
):
    raise AssertionError("each blocking pass needs forms and a refinement that are tokenised")

# Data-quality notes encode_with_notes can report.
NOTES = (
    "nhs_number_check_failed",
    "nhs_number_placeholder",
    "upn_check_failed",
    "postcode_not_uk",
    "date_of_birth_invalid",
    "given_name_invalid",
    "family_name_invalid",
    "sex_invalid",
    "no_usable_identifier",
)

# Common street words, so "12 High Street" and "12 high st" make one household.
_STREET_WORDS = {
    "road": "rd",
    "street": "st",
    "avenue": "ave",
    "lane": "ln",
    "close": "cl",
    "drive": "dr",
    "court": "ct",
    "place": "pl",
    "crescent": "cres",
    "gardens": "gdns",
    "terrace": "terr",
    "square": "sq",
    "grove": "gr",
    "flat": "flat",
}
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
# Tokens of forms with few distinct values are cached (sex, years, districts, codes).
_CACHE_LIMIT = 200_000


def validate_cascade(cascade: Cascade) -> Cascade:
    """Check a cascade: known forms, unique names, strengths 1-3, strongest first.

    A key named like a form must be exactly that form (``nhs`` over ``("nhs",)``),
    because the two would otherwise share a token name. Raises ValueError saying
    which key is wrong; ``broker.link.config`` turns it into a configuration error.
    """
    if not cascade:
        raise ValueError("a cascade needs at least one key")
    seen: set[str] = set()
    for key in cascade:
        if key.name in seen:
            raise ValueError(f"cascade key '{key.name}' is declared twice")
        seen.add(key.name)
        if not key.forms or any(form not in FORMS for form in key.forms):
            raise ValueError(f"cascade key '{key.name}' names a form that does not exist")
        if key.name in FORMS and key.forms != (key.name,):
            raise ValueError(f"cascade key '{key.name}' is named like a form but is not it")
        if key.strength not in (FUZZY_STRENGTH, EXACT_STRENGTH, IDENTITY_STRENGTH):
            raise ValueError(f"cascade key '{key.name}' must have strength 1, 2 or 3")
    strengths = [key.strength for key in cascade]
    if strengths != sorted(strengths, reverse=True):
        raise ValueError("cascade keys must be listed strongest first")
    return cascade


def normalise_address(raw: str) -> str:
    """A comparable address line: folded, punctuation dropped, common street words shortened."""
    decomposed = unicodedata.normalize("NFKD", raw.casefold())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    words = _NOT_ALNUM.sub(" ", plain).split()
    return " ".join(_STREET_WORDS.get(word, word) for word in words)


def swapped_day_month(iso_date: str) -> str | None:
    """The ISO date with day and month exchanged, where both are 12 or less and they differ."""
    month, day = int(iso_date[5:7]), int(iso_date[8:10])
    if day > 12 or day == month:
        return None
    return f"{iso_date[:4]}-{day:02d}-{month:02d}"


def _phonetic(name: str) -> str:
    # NYSIIS: more selective than Soundex, so equal codes are better evidence of one name.
    return str(jellyfish.nysiis(name))


def _soundex(name: str) -> str:
    return str(jellyfish.soundex(name))


class _Parsed(NamedTuple):
    forms: dict[str, str]
    notes: tuple[str, ...]


def parse_identifiers(identifiers: Mapping[str, str]) -> _Parsed:
    """Normalise canonical identifiers into forms, with data-quality notes.

    Only identifiers that fail a check digit or cannot be read at all are
    dropped; a postcode that is not a UK shape is kept as a normalised string.
    """
    forms: dict[str, str] = {}
    notes: list[str] = []

    def use(column: str, normalise: Callable[[str], str], note: str) -> str:
        raw = (identifiers.get(column) or "").strip()
        if not raw:
            return ""
        try:
            return normalise(raw)
        except IdentifierError:
            notes.append(note)
            return ""

    nhs = use("nhs_number", normalise_nhs_number, "nhs_number_check_failed")
    upn = use("upn", normalise_upn, "upn_check_failed")
    given = use("given_name", normalise_name, "given_name_invalid")
    family = use("family_name", normalise_name, "family_name_invalid")
    dob = use("date_of_birth", normalise_date, "date_of_birth_invalid")
    sex = use("sex", normalise_sex, "sex_invalid")
    postcode = use("postcode", normalise_postcode, "postcode_not_uk")
    if nhs and len(set(nhs)) == 1:
        # 0000000000 and 9999999999 pass the check digit but are what systems put in
        # for "not known": as an identity key they would merge everyone who has them.
        notes.append("nhs_number_placeholder")
        nhs = ""
    if nhs:
        forms["nhs"] = nhs
    if upn:
        forms["upn"] = upn
    _name_forms(forms, given, family)
    if dob:
        _dob_forms(forms, dob)
    if sex and sex != "U":
        forms["sex"] = sex
    if not postcode and "postcode_not_uk" in notes:
        # Not a UK shape, but still what the agency typed: kept as a comparable string.
        postcode = "".join((identifiers.get("postcode") or "").upper().split())
    if postcode:
        _postcode_forms(forms, postcode, identifiers.get("address_line") or "", notes)
    # Usable: a national identifier, a name with a date of birth, or both names (a
    # missing date is common, and both names with a postcode can still link).
    if not (nhs or upn or (dob and (given or family)) or (given and family)):
        notes.append("no_usable_identifier")
    return _Parsed(forms, tuple(notes))


def _name_forms(forms: dict[str, str], given: str, family: str) -> None:
    if given:
        forms["given"] = given
        forms["given_initial"] = given[0]
        forms["given_phonetic"] = _phonetic(given)
        forms["given_variant"] = canonical_given_name(given)
        # Blocking codes of the variant group, so Bill and William block together.
        forms["variant_initial"] = forms["given_variant"][0]
        forms["given_soundex"] = _soundex(forms["given_variant"])
    if family:
        forms["family"] = family
        forms["family_initial"] = family[0]
        forms["family_phonetic"] = _phonetic(family)
        forms["family_soundex"] = _soundex(family)
    if given and family:
        low, high = sorted((given, family))
        forms["names_sorted"] = f"{low} {high}"
        forms["sorted_soundex"] = " ".join(sorted((_soundex(given), forms["family_soundex"])))
        forms["initials_sorted"] = "".join(sorted((given[0], family[0])))


def _dob_forms(forms: dict[str, str], dob: str) -> None:
    forms["dob"] = dob
    forms["dob_year"] = dob[:4]
    forms["dob_year_month"] = dob[:7]
    forms["dob_month_day"] = dob[5:]
    swapped = swapped_day_month(dob)
    if swapped is not None:
        forms["dob_swapped"] = swapped
    forms["dob_unordered"] = min(dob, swapped or dob)


def _postcode_forms(
    forms: dict[str, str], postcode: str, address_line: str, notes: list[str]
) -> None:
    forms["postcode"] = postcode
    if "postcode_not_uk" not in notes:
        outward, inward = postcode.split(" ")
        forms["postcode_district"] = outward
        forms["postcode_sector"] = f"{outward} {inward[0]}"
    address = normalise_address(address_line)
    if address:
        forms["household"] = f"{address}|{postcode}"


class _TokenSpec(NamedTuple):
    name: str
    domain: str
    forms: tuple[str, ...]
    cache: dict[tuple[str, ...], str] | None


class RecordEncoder:
    """Encodes records under one linkage key with one cascade, for a whole batch.

    It holds the key (through ``Tokeniser`` and ``Encoder``) and caches the
    tokens and Bloom bits of values that recur (years, districts, names,
    dates), so keep it no longer than the key is in use. Equal identifiers
    under the same key and cascade always give an equal ``EncodedRecord``.
    """

    __slots__ = ("_bloom_cache", "_blooms", "_cascade", "_specs", "_tokeniser")

    def __init__(self, linkage_key: bytes, cascade: Cascade | None = None) -> None:
        self._tokeniser = Tokeniser(linkage_key)
        self._blooms = Encoder(linkage_key)
        self._cascade = validate_cascade(DEFAULT_CASCADE if cascade is None else cascade)
        self._bloom_cache: dict[tuple[str, str], int] = {}
        # Every token a record can have, in a fixed order: its name, the message domain,
        # the forms hashed, and a cache of values to token (None: values seldom recur).
        specs: list[_TokenSpec] = [
            # dob_swapped is framed as a date of birth so it can equal another's dob.
            _TokenSpec(
                form,
                "link:dob" if form == "dob_swapped" else f"link:{form}",
                (form,),
                None if form in _UNCACHED else {},
            )
            for form in FORMS
        ]
        specs += [
            _TokenSpec(key.name, f"link:key:{key.name}", key.forms, None)
            for key in self._cascade
            if key.name not in FORMS  # a key that is one form (nhs, upn) is that form's token
        ]
        self._specs = tuple(specs)

    @property
    def cascade(self) -> Cascade:
        """The deterministic keys this encoder makes tokens for."""
        return self._cascade

    def encode(self, ref: str, source: str, identifiers: Mapping[str, str]) -> EncodedRecord:
        """The encoded record for canonical identifiers (any subset of the canonical columns)."""
        return self.encode_with_notes(ref, source, identifiers)[0]

    def encode_with_notes(
        self, ref: str, source: str, identifiers: Mapping[str, str]
    ) -> tuple[EncodedRecord, tuple[str, ...]]:
        """The encoded record and its data-quality notes (``NOTES``), never a value."""
        forms, notes = parse_identifiers(identifiers)
        get = forms.get
        token = self._tokeniser.token
        tokens: dict[str, str] = {}
        for name, domain, parts, cache in self._specs:
            maybe = tuple(map(get, parts))
            if None in maybe:
                continue
            values = cast("tuple[str, ...]", maybe)
            found = None if cache is None else cache.get(values)
            if found is None:
                found = token(domain, values)[:TOKEN_HEX]
                if cache is not None:
                    if len(cache) >= _CACHE_LIMIT:
                        cache.clear()  # bounded: a cache, not a copy of the data
                    cache[values] = found
            tokens[name] = found
        record = EncodedRecord(ref, source, tokens, self._encode_blooms(forms))
        return record, notes

    def _encode_blooms(self, forms: Mapping[str, str]) -> dict[str, int]:
        blooms: dict[str, int] = {}
        for field, form in _BLOOM_FORMS:
            value = forms.get(form)
            if not value:
                continue
            cache_key = (field, value)
            bits = self._bloom_cache.get(cache_key)
            if bits is None:
                if len(self._bloom_cache) >= _CACHE_LIMIT:
                    self._bloom_cache.clear()
                # Unsalted: see docs/similarity-encodings.md, "Salting per-field encodings".
                bits = self._blooms.field_bits(field, value, BLOOM_SALT)
                self._bloom_cache[cache_key] = bits
            blooms[field] = bits
        return blooms


#: The salt of the per-field encodings: none (see docs/similarity-encodings.md).
BLOOM_SALT = ""
_BLOOM_FORMS = (
    ("given_name", "given"),
    ("family_name", "family"),
    ("date_of_birth", "dob"),
    ("postcode", "postcode"),
)
# Forms with nearly as many values as records: caching them would only hold memory.
_UNCACHED = frozenset({"nhs", "upn", "household", "names_sorted"})
