"""Passwords: scrypt hashes verify the password they were made from and no other."""

from __future__ import annotations

import base64

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from broker.errors import ValidationError
from broker.people import (
    MIN_PASSWORD_LENGTH,
    check_password,
    check_role,
    check_username,
    hash_password,
    verify_password,
)

passwords = st.text(min_size=0, max_size=64)


@settings(max_examples=25, deadline=None)
@given(password=passwords, other=passwords)
def test_a_hash_verifies_its_password_and_no_other(password: str, other: str) -> None:
    assume(password != other)
    stored = hash_password(password)
    assert verify_password(stored, password)
    assert not verify_password(stored, other)


@settings(max_examples=10, deadline=None)
@given(password=passwords)
def test_hashes_are_salted_and_carry_their_parameters(password: str) -> None:
    first, second = hash_password(password), hash_password(password)
    assert first != second
    scheme, n, r, p, salt, digest = first.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(base64.b64decode(salt)) == 16
    assert len(base64.b64decode(digest)) == 32


def test_malformed_or_hostile_stored_hashes_never_verify() -> None:
    good = hash_password("correct horse battery staple")
    scheme, n, r, p, salt, digest = good.split("$")
    for stored in (
        "",
        "plain-text",
        good.replace("scrypt", "md5"),
        "$".join([scheme, "1048576", r, p, salt, digest]),  # too costly: refused, not run
        "$".join([scheme, n, r, p, "not base64!", digest]),
        "$".join([scheme, "x", r, p, salt, digest]),
    ):
        assert not verify_password(stored, "correct horse battery staple")
    assert not verify_password(good, "x" * 2000)


def test_the_password_policy() -> None:
    check_password("a" * MIN_PASSWORD_LENGTH)
    with pytest.raises(ValidationError) as short:
        check_password("a" * (MIN_PASSWORD_LENGTH - 1))
    assert short.value.code == "password_too_short"
    with pytest.raises(ValidationError) as long:
        check_password("a" * 1025)
    assert long.value.code == "password_too_long"


def test_names_and_roles() -> None:
    check_username("dpo.school")
    for bad in ("", "A", "Upper", "a b", "x" * 65, "-lead"):
        with pytest.raises(ValidationError):
            check_username(bad)
    assert check_role("dpo", "school").value == "dpo"
    assert check_role("admin", None).value == "admin"
    for role, agency, code in (
        ("system", "school", "role_unknown"),
        ("root", None, "role_unknown"),
        ("dpo", None, "agency_required"),
        ("admin", "school", "agency_not_allowed"),
    ):
        with pytest.raises(ValidationError) as raised:
            check_role(role, agency)
        assert raised.value.code == code
