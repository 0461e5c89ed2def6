"""Properties of the keyed hashing recipes: framing is injective, tokens are keyed."""

from __future__ import annotations

import hmac

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from broker.pseudonymise import (
    Tokeniser,
    constant_time_equal,
    encode_parts,
    pseudonym,
    token,
)

# Tokens are made of normalised values, which never hold a lone surrogate.
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
# A small alphabet makes near-collisions (same concatenation, different split) likely.
SMALL = st.text(alphabet="ab\x00\x01", max_size=6)
PARTS = st.lists(TEXT | SMALL, max_size=5)
KEYS = st.binary(min_size=32, max_size=32)
MATCH_KEYS = st.sampled_from(["nhs", "upn", "name_dob_postcode"]) | TEXT


@settings(max_examples=150, deadline=None)
@given(domain_a=SMALL, parts_a=PARTS, domain_b=SMALL, parts_b=PARTS)
def test_encode_parts_is_injective(
    domain_a: str, parts_a: list[str], domain_b: str, parts_b: list[str]
) -> None:
    same_input = (domain_a, parts_a) == (domain_b, parts_b)
    assert (encode_parts(domain_a, parts_a) == encode_parts(domain_b, parts_b)) == same_input


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(SMALL, min_size=1, max_size=5), cut=st.integers(0, 30))
def test_resplitting_the_same_text_changes_the_encoding(parts: list[str], cut: int) -> None:
    joined = "".join(parts)
    cut = min(cut, len(joined))
    other = [joined[:cut], joined[cut:]]
    assume(other != parts)
    assert encode_parts("d", parts) != encode_parts("d", other)


TOKEN_INPUTS = st.tuples(KEYS, MATCH_KEYS, PARTS)


@settings(max_examples=100, deadline=None)
@given(first=TOKEN_INPUTS, second=TOKEN_INPUTS, same=st.booleans())
def test_token_equal_exactly_when_key_match_key_and_values_equal(
    first: tuple[bytes, str, list[str]], second: tuple[bytes, str, list[str]], same: bool
) -> None:
    if same:  # half the cases share every input, so equality is exercised too
        second = (first[0], first[1], list(first[2]))
    inputs_equal = first == second
    left, right = token(*first), token(*second)
    assert (left == right) == inputs_equal
    assert constant_time_equal(left, right) == inputs_equal


@settings(max_examples=100, deadline=None)
@given(key_a=KEYS, key_b=KEYS, match_key=MATCH_KEYS, values=PARTS)
def test_different_keys_give_different_tokens(
    key_a: bytes, key_b: bytes, match_key: str, values: list[str]
) -> None:
    assume(key_a != key_b)
    assert token(key_a, match_key, values) != token(key_b, match_key, values)


@settings(max_examples=100, deadline=None)
@given(key_a=KEYS, key_b=KEYS, subject_a=TEXT, subject_b=TEXT)
def test_pseudonyms_are_keyed_and_per_subject(
    key_a: bytes, key_b: bytes, subject_a: str, subject_b: str
) -> None:
    assert (pseudonym(key_a, subject_a) == pseudonym(key_b, subject_b)) == (
        (key_a, subject_a) == (key_b, subject_b)
    )
    assert pseudonym(key_a, subject_a).startswith("ps_")


@settings(max_examples=100, deadline=None)
@given(left=TEXT, right=TEXT)
def test_constant_time_equal_agrees_with_equality(left: str, right: str) -> None:
    assert constant_time_equal(left, right) == (left == right)
    assert constant_time_equal(left, left)


# Keys of every length around SHA-256's 64-byte block, where HMAC hashes a long key first.
ANY_KEYS = st.binary(max_size=200) | st.binary(min_size=63, max_size=65)


@settings(max_examples=200, deadline=None)
@given(key=ANY_KEYS, message=st.binary(max_size=300))
def test_the_prepared_hmac_is_hmac_sha256(key: bytes, message: bytes) -> None:
    assert Tokeniser(key)._hmac_hex(message) == hmac.digest(key, message, "sha256").hex()


# Values around the lengths where the tokeniser's shortcut framing gives way to the general
# one: 128 characters (a length byte that is not ASCII), 256 (a second length byte), and
# characters that UTF-8 encodes in several bytes.
LONG = st.text(alphabet="a\u00e9\u20ac", min_size=120, max_size=300) | st.text(
    alphabet=st.characters(codec="utf-8"), min_size=125, max_size=260
)
TOKENISER_PARTS = st.lists(TEXT | SMALL | LONG, max_size=5)


@settings(max_examples=200, deadline=None)
@given(key=KEYS, requests=st.lists(st.tuples(MATCH_KEYS, TOKENISER_PARTS), min_size=1, max_size=6))
def test_a_tokeniser_makes_the_tokens_token_makes(
    key: bytes, requests: list[tuple[str, list[str]]]
) -> None:
    # One tokeniser for many requests, as for a record's match keys or a batch.
    tokeniser = Tokeniser(key)
    for match_key, values in requests:
        assert tokeniser.token(match_key, values) == token(key, match_key, values)
