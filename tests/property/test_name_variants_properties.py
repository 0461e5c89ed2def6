"""Properties of the given-name table and the fuzzy match keys built on it."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import IdentifierError
from broker.linkage import MATCH_KEYS, record_tokens
from broker.name_variants import AMBIGUOUS, GROUPS, MUST_STAY_DISTINCT, canonical_given_name
from broker.normalise import normalise_name

KEY = bytes(range(32))

TABLE_FORMS = sorted({form for formal, forms in GROUPS.items() for form in (formal, *forms)})
NAMED = sorted(
    {*TABLE_FORMS, *AMBIGUOUS, *(n for names in AMBIGUOUS.values() for n in names)}
    | {name for pair in MUST_STAY_DISTINCT for name in pair}
)
# Arbitrary text, lone surrogates too, as in the normaliser's own properties.
ANY_TEXT = st.text(
    alphabet=st.characters() | st.sampled_from(["\ud800", "\udfff"]), max_size=60
) | st.text(max_size=20)
LETTERS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12)
GIVEN = st.sampled_from(NAMED) | LETTERS


def _normalised(raw: str) -> str | None:
    try:
        return normalise_name(raw)
    except IdentifierError:
        return None


@settings(max_examples=300, deadline=None)
@given(raw=ANY_TEXT | st.sampled_from(NAMED))
def test_total_and_idempotent_over_normalised_text(raw: str) -> None:
    name = _normalised(raw)
    if name is None:
        return
    once = canonical_given_name(name)
    assert isinstance(once, str)
    assert canonical_given_name(once) == once
    # The result is itself a normalised name, so it can be hashed like any other.
    assert normalise_name(once) == once


@settings(max_examples=300, deadline=None)
@given(one=GIVEN | ANY_TEXT, other=GIVEN | ANY_TEXT)
def test_only_forms_of_one_group_are_merged(one: str, other: str) -> None:
    if one != other and canonical_given_name(one) == canonical_given_name(other):
        formal = canonical_given_name(one)
        group = {formal, *GROUPS[formal]}
        assert one in group
        assert other in group


@settings(max_examples=200, deadline=None)
@given(pair=st.sampled_from(MUST_STAY_DISTINCT), swap=st.booleans())
def test_names_that_must_stay_distinct_never_merge(pair: tuple[str, str], swap: bool) -> None:
    one, other = reversed(pair) if swap else pair
    assert canonical_given_name(one) != canonical_given_name(other)
    assert canonical_given_name(canonical_given_name(one)) != canonical_given_name(other)


def _tokens(given_name: str, family: str) -> dict[str, str]:
    return record_tokens(
        KEY,
        {
            "given_name": given_name,
            "family_name": family,
            "date_of_birth": "2011-03-14",
            "postcode": "NS1 4AB",
            "nhs_number": "9434765919",
            "upn": "L201234567890",
        },
    )


Cosmetic = Callable[[str], str]
COSMETIC: st.SearchStrategy[Cosmetic] = st.sampled_from(
    [
        str.upper,
        str.title,
        lambda s: f"  {s} ",
        lambda s: f"Mr {s}",
        lambda s: f"{s[:1]}-{s[1:]}",
        lambda s: f"{s[:1]}\u2019{s[1:]}",
    ]
)


@settings(max_examples=200, deadline=None)
@given(given_name=GIVEN, family=GIVEN, dress_given=COSMETIC, dress_family=COSMETIC)
def test_equal_normalised_names_give_equal_tokens_for_every_key(
    given_name: str, family: str, dress_given: Cosmetic, dress_family: Cosmetic
) -> None:
    # Typed forms that differ only cosmetically normalise alike, and so tokenise alike.
    typed_given, typed_family = (
        normalise_name(dress_given(given_name)),
        normalise_name(dress_family(family)),
    )
    assert (typed_given, typed_family) == (given_name, family)
    tokens = _tokens(typed_given, typed_family)
    assert set(tokens) == {k.name for k in MATCH_KEYS}
    assert tokens == _tokens(given_name, family)


@settings(max_examples=300, deadline=None)
@given(one=GIVEN, other=GIVEN, family=GIVEN)
def test_twins_share_a_fuzzy_token_only_when_the_table_says_so(
    one: str, other: str, family: str
) -> None:
    # Twins share family name, date of birth and postcode; only their given names differ.
    a, b = _tokens(one, family), _tokens(other, family)
    same_variant = a["variant_dob_postcode"] == b["variant_dob_postcode"]
    assert same_variant == (canonical_given_name(one) == canonical_given_name(other))
    same_swapped = a["swapped_names_dob_postcode"] == b["swapped_names_dob_postcode"]
    assert same_swapped == (one == other)


@settings(max_examples=200, deadline=None)
@given(given_name=GIVEN, family=GIVEN)
def test_the_swapped_key_ignores_which_name_is_which(given_name: str, family: str) -> None:
    forward, backward = _tokens(given_name, family), _tokens(family, given_name)
    assert forward["swapped_names_dob_postcode"] == backward["swapped_names_dob_postcode"]
