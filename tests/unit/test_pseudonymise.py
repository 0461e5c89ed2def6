"""Keyed hashing recipes: framing, domain separation and key dependence."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest

from broker.pseudonymise import (
    Tokeniser,
    constant_time_equal,
    encode_parts,
    key_check_value,
    pseudonym,
    token,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def test_encode_parts_length_prefixes_each_part() -> None:
    assert encode_parts("d", ["ab", "c"]) != encode_parts("d", ["a", "bc"])
    assert encode_parts("d", ["abc"]) != encode_parts("d", ["ab", "c"])
    assert encode_parts("d", [""]) != encode_parts("d", [])
    assert encode_parts("d", ["", ""]) != encode_parts("d", [""])
    assert encode_parts("da", ["b"]) != encode_parts("d", ["ab"])


def test_encode_parts_exact_bytes() -> None:
    assert encode_parts("t", ["ab", "é"]) == (
        b"accord.v1" + b"\x00\x00\x00\x01t" + b"\x00\x00\x00\x02ab" + b"\x00\x00\x00\x02\xc3\xa9"
    )


def test_encode_parts_counts_bytes_not_characters() -> None:
    # "é" is one character but two bytes; a character count would let framing slip.
    assert encode_parts("d", ["é", "x"]) != encode_parts("d", ["e\u0301x"])
    assert encode_parts("d", ["é"])[-6:-2] == (2).to_bytes(4, "big")


def test_tokens_are_domain_separated_by_match_key() -> None:
    assert token(KEY_A, "nhs", ["9434765919"]) != token(KEY_A, "upn", ["9434765919"])
    # A token for one key can never equal a pseudonym of the same text.
    assert (
        token(KEY_A, "x", ["s1"])
        != hmac.new(KEY_A, encode_parts("pseudonym", ["s1"]), hashlib.sha256).hexdigest()
    )


def test_token_is_hmac_sha256_over_the_framed_parts() -> None:
    expected = hmac.new(
        KEY_A, encode_parts("token:nhs", ["9434765919"]), hashlib.sha256
    ).hexdigest()
    assert token(KEY_A, "nhs", ["9434765919"]) == expected
    assert re.fullmatch(r"[0-9a-f]{64}", expected)


def test_token_depends_on_key_match_key_and_every_value() -> None:
    base = token(KEY_A, "name_dob_postcode", ["zoe", "smith", "2010-05-04", "SW1A 1AA"])
    assert base == token(KEY_A, "name_dob_postcode", ["zoe", "smith", "2010-05-04", "SW1A 1AA"])
    assert base != token(KEY_B, "name_dob_postcode", ["zoe", "smith", "2010-05-04", "SW1A 1AA"])
    assert base != token(KEY_A, "name_dob", ["zoe", "smith", "2010-05-04", "SW1A 1AA"])
    assert base != token(KEY_A, "name_dob_postcode", ["smith", "zoe", "2010-05-04", "SW1A 1AA"])
    assert base != token(KEY_A, "name_dob_postcode", ["zoe", "smith", "2010-05-05", "SW1A 1AA"])
    assert base != token(KEY_A, "name_dob_postcode", ["zoes", "mith", "2010-05-04", "SW1A 1AA"])


def test_token_is_not_an_unkeyed_hash() -> None:
    value = "9434765919"
    result = token(KEY_A, "nhs", [value])
    assert result != hashlib.sha256(value.encode()).hexdigest()
    assert result != hashlib.sha256(encode_parts("token:nhs", [value])).hexdigest()


def test_pseudonym_format() -> None:
    result = pseudonym(KEY_A, "subj-1")
    assert re.fullmatch(r"ps_[a-z2-7]{24}", result)
    assert result == pseudonym(KEY_A, "subj-1")


def test_pseudonym_depends_on_key_and_subject() -> None:
    assert pseudonym(KEY_A, "subj-1") != pseudonym(KEY_B, "subj-1")
    assert pseudonym(KEY_A, "subj-1") != pseudonym(KEY_A, "subj-2")


def test_key_check_value_identifies_the_key_without_revealing_it() -> None:
    check = key_check_value(KEY_A)
    assert re.fullmatch(r"[0-9a-f]{16}", check)
    assert check == key_check_value(KEY_A)
    assert check != key_check_value(KEY_B)
    assert check != key_check_value(KEY_A, version=2)
    assert check not in KEY_A.hex()


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        ("abc", "abc", True),
        ("abc", "abd", False),
        ("abc", "ab", False),
        ("", "", True),
        ("", "a", False),
        ("é", "é", True),
        ("é", "e\u0301", False),
    ],
)
def test_constant_time_equal(left: str, right: str, equal: bool) -> None:
    assert constant_time_equal(left, right) is equal
    assert constant_time_equal(right, left) is equal


# RFC 4231 section 4: HMAC-SHA-256 test cases 1 to 4, 6 and 7 (case 5 truncates its output).
RFC_4231 = [
    (b"\x0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (
        b"Jefe",
        b"what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    ),
    (
        b"\xaa" * 20,
        b"\xdd" * 50,
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
    ),
    (
        bytes(range(1, 26)),
        b"\xcd" * 50,
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
    ),
    (
        b"\xaa" * 131,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    ),
    (
        b"\xaa" * 131,
        b"This is a test using a larger than block-size key and a larger than block-size data."
        b" The key needs to be hashed before being used by the HMAC algorithm.",
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
    ),
]


@pytest.mark.parametrize(("key", "message", "expected"), RFC_4231)
def test_the_prepared_hmac_meets_rfc_4231(key: bytes, message: bytes, expected: str) -> None:
    prepared = Tokeniser(key)
    assert prepared._hmac_hex(message) == expected
    # The prepared state is copied, never consumed: a second message starts afresh.
    assert prepared._hmac_hex(message) == expected


def test_a_tokeniser_gives_what_token_gives() -> None:
    tokeniser = Tokeniser(KEY_A)
    values = ["amira", "okafor", "2011-03-14", "NS1 4AB"]
    for match_key in ("name_dob_postcode", "variant_dob_postcode", "name_dob_postcode"):
        assert tokeniser.token(match_key, values) == token(KEY_A, match_key, values)
    assert tokeniser.token("nhs", ["9434765919"]) == token(KEY_A, "nhs", ["9434765919"])
    assert Tokeniser(KEY_B).token("nhs", ["9434765919"]) != token(KEY_A, "nhs", ["9434765919"])
