"""Token linkage: which stored subject, if any, is this record about?

Each record yields one token per match key it has the identifiers for. Keys
are tried strongest first; a record joins a subject only when a key points at
exactly one subject that does not contradict it. A subject contradicts a
record when both hold an NHS number (or both a UPN) and they differ: that is
how twins and same-name strangers are kept apart. Precision comes first, so
an ambiguous key links nothing rather than guessing.

Two fuzzier keys (strength 1) catch what exact names miss, and apply only
where an agreement names them: ``variant_dob_postcode`` hashes the given name's
group from :mod:`broker.name_variants` ("Bill" and "William" agree), and
``swapped_names_dob_postcode`` hashes the two names in sorted order (a given
and a family name entered the wrong way round agree). Both still need the
family name (or the other name), date of birth and postcode to agree, so twins
with different given names never share their tokens. A fuzzy key is not tried
once a key before it has found more than one subject: it could only choose
among them by a weaker likeness.

The functions here are pure: storage is reached through the lookups passed in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from broker.name_variants import canonical_given_name
from broker.pseudonymise import Tokeniser

FUZZY_STRENGTH = 1
_NAMES_DOB_POSTCODE = ("given_name", "family_name", "date_of_birth", "postcode")


# Each is given a fresh list (MatchKey.values makes one per call) and may change it.
def _given_name_group(values: list[str]) -> list[str]:
    values[0] = canonical_given_name(values[0])
    return values


def _names_sorted(values: list[str]) -> list[str]:
    # Sorted rather than both orders, so a record makes one token and not two.
    if values[1] < values[0]:
        values[0], values[1] = values[1], values[0]
    return values


@dataclass(frozen=True)
class MatchKey:
    """A combination of normalised identifiers that, when equal, means the same subject.

    ``prepare`` turns the identifiers' values, in the order named, into what is
    hashed; exact keys (None) hash them as they are.
    """

    name: str
    identifiers: tuple[str, ...]
    strength: int
    identity: bool = False  # a national identifier: differing values mean different people
    prepare: Callable[[list[str]], list[str]] | None = None

    @property
    def fuzzy(self) -> bool:
        """Whether equal tokens mean only a likeness (a name variant, swapped names)."""
        return self.strength <= FUZZY_STRENGTH

    def values(self, identifiers: Mapping[str, str]) -> list[str] | None:
        """What this key hashes for a record's normalised identifiers; None if one is missing."""
        values = [identifiers.get(name, "") for name in self.identifiers]
        if not all(values):
            return None
        return values if self.prepare is None else self.prepare(values)


# Strongest first: resolution tries them in this order, whatever order an agreement lists.
MATCH_KEYS: tuple[MatchKey, ...] = (
    MatchKey("nhs", ("nhs_number",), strength=3, identity=True),
    MatchKey("upn", ("upn",), strength=3, identity=True),
    MatchKey("name_dob_postcode", _NAMES_DOB_POSTCODE, strength=2),
    MatchKey("variant_dob_postcode", _NAMES_DOB_POSTCODE, strength=1, prepare=_given_name_group),
    MatchKey("swapped_names_dob_postcode", _NAMES_DOB_POSTCODE, strength=1, prepare=_names_sorted),
)
IDENTITY_KEYS = tuple(k.name for k in MATCH_KEYS if k.identity)


def record_tokens(
    linkage_key: bytes | Tokeniser,
    identifiers: Mapping[str, str],
    match_keys: Iterable[str] | None = None,
) -> dict[str, str]:
    """Tokens for every match key whose identifiers the record has (already normalised).

    ``match_keys`` names the keys an agreement's linkage section allows; None means
    all, the fuzzy ones included. Pass a :class:`Tokeniser` of the linkage key
    instead of the key to save preparing it again for every record of a batch.
    An agency that tokenises at source calls this too, so its tokens equal the
    broker's.
    """
    allowed = None if match_keys is None else set(match_keys)
    tokeniser = linkage_key if isinstance(linkage_key, Tokeniser) else Tokeniser(linkage_key)
    tokens: dict[str, str] = {}
    for key in MATCH_KEYS:
        if allowed is None or key.name in allowed:
            values = key.values(identifiers)
            if values is not None:
                tokens[key.name] = tokeniser.token(key.name, values)
    return tokens


@dataclass(frozen=True)
class Assignment:
    """Where one record went: an existing subject (with the key that matched) or a new one."""

    subject_id: str
    new: bool
    rule: str | None


TokenLookup = Callable[[str, Sequence[str]], Mapping[str, set[str]]]
IdentityLookup = Callable[[str, Sequence[str]], Mapping[str, set[str]]]


class _Index:
    """What is known so far: stored tokens plus those of records placed in this batch."""

    def __init__(self, subjects_for: TokenLookup, identity_of: IdentityLookup) -> None:
        self._subjects_for = subjects_for
        self._identity_of = identity_of
        self.by_token: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.identity: dict[tuple[str, str], set[str]] = defaultdict(set)

    def preload(self, all_tokens: Iterable[Mapping[str, str]]) -> None:
        per_key: dict[str, set[str]] = defaultdict(set)
        for tokens in all_tokens:
            for match_key, value in tokens.items():
                per_key[match_key].add(value)
        candidates: set[str] = set()
        for match_key, values in per_key.items():
            for value, subjects in self._subjects_for(match_key, sorted(values)).items():
                self.by_token[(match_key, value)].update(subjects)
                candidates.update(subjects)
        for match_key in IDENTITY_KEYS:
            for subject, values in self._identity_of(match_key, sorted(candidates)).items():
                self.identity[(match_key, subject)].update(values)

    def compatible(self, subject: str, tokens: Mapping[str, str]) -> bool:
        for match_key in IDENTITY_KEYS:
            mine = tokens.get(match_key)
            theirs = self.identity.get((match_key, subject))
            if mine is not None and theirs and mine not in theirs:
                return False
        return True

    def resolve(self, tokens: Mapping[str, str]) -> tuple[str | None, str | None]:
        ambiguous = False
        for key in MATCH_KEYS:
            value = tokens.get(key.name)
            if value is None:
                continue
            if ambiguous and key.fuzzy:
                break
            candidates = {
                s for s in self.by_token.get((key.name, value), ()) if self.compatible(s, tokens)
            }
            if len(candidates) == 1:
                return next(iter(candidates)), key.name
            ambiguous = ambiguous or len(candidates) > 1
        return None, None

    def place(self, subject: str, tokens: Mapping[str, str]) -> None:
        for match_key, value in tokens.items():
            self.by_token[(match_key, value)].add(subject)
            if match_key in IDENTITY_KEYS:
                self.identity[(match_key, subject)].add(value)


def assign_subjects(
    batch_tokens: Sequence[Mapping[str, str]],
    *,
    subjects_for: TokenLookup,
    identity_of: IdentityLookup,
    new_subject: Callable[[], str],
) -> list[Assignment]:
    """Place each record of a batch, in order, with an existing or a new subject.

    Records earlier in the batch count as stored for later ones, so a batch
    gives the same subjects as sending its records one at a time.
    """
    index = _Index(subjects_for, identity_of)
    index.preload(batch_tokens)
    placed: list[Assignment] = []
    for tokens in batch_tokens:
        subject, rule = index.resolve(tokens)
        assignment = (
            Assignment(subject, new=False, rule=rule)
            if subject is not None
            else Assignment(new_subject(), new=True, rule=None)
        )
        index.place(assignment.subject_id, tokens)
        placed.append(assignment)
    return placed


def find_subject(
    tokens: Mapping[str, str], *, subjects_for: TokenLookup, identity_of: IdentityLookup
) -> tuple[str | None, str | None]:
    """The one stored subject these tokens point at, with the key that matched, or (None, None)."""
    index = _Index(subjects_for, identity_of)
    index.preload([tokens])
    return index.resolve(tokens)
