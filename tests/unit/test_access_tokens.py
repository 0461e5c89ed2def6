"""The broker's access tokens: what verifies, and every way a token is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.access_tokens import (
    TokenPolicy,
    sign_access_token,
    thumbprint_claim,
    verify_access_token,
)
from broker.errors import AuthenticationFailed
from broker.principal import Principal, Role

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()
POLICY = TokenPolicy(issuer="accord", audience="accord-api", lifetime_seconds=300)
SYSTEM = Principal("police-0a1b2c3d4e5f", Role.SYSTEM, "police")
THUMBPRINT = "ab" * 32


def _keys(kid: str) -> Ed25519PublicKey | None:
    return KEY.public_key() if kid == "1" else None


def _token(principal: Principal = SYSTEM, **kwargs: Any) -> str:
    return sign_access_token(
        principal, key=KEY, key_id="1", policy=POLICY, now=NOW, **kwargs
    ).access_token


def _verify(token: str, *, at: datetime = NOW, policy: TokenPolicy = POLICY) -> Principal:
    return verify_access_token(token, public_key=_keys, policy=policy, now=at).principal


def _refused(token: str, **kwargs: Any) -> None:
    with pytest.raises(AuthenticationFailed) as raised:
        _verify(token, **kwargs)
    assert raised.value.code == "unauthenticated"


def _forge(claims: dict[str, Any], *, key: Any = KEY, alg: str = "EdDSA", kid: str = "1") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def _claims(**changes: Any) -> dict[str, Any]:
    issued = int(NOW.timestamp())
    claims: dict[str, Any] = {
        "iss": "accord",
        "aud": "accord-api",
        "sub": "police-0a1b2c3d4e5f",
        "role": "system",
        "agency": "police",
        "iat": issued,
        "nbf": issued,
        "exp": issued + 300,
        "jti": "j1",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.parametrize(
    "principal",
    [
        SYSTEM,
        Principal("dpo.school", Role.DPO, "school"),
        Principal("ig-lead.ed", Role.IG_LEAD, "ed"),
        Principal("admin", Role.ADMIN, None),
    ],
)
def test_round_trip(principal: Principal) -> None:
    issued = sign_access_token(principal, key=KEY, key_id="1", policy=POLICY, now=NOW)
    assert issued.expires_in == 300
    assert issued.token_type == "Bearer"
    claims = verify_access_token(issued.access_token, public_key=_keys, policy=POLICY, now=NOW)
    assert claims.principal == principal
    assert claims.expires_at == int(NOW.timestamp()) + 300
    assert claims.thumbprint is None
    header = jwt.get_unverified_header(issued.access_token)
    assert header["alg"] == "EdDSA"
    assert header["kid"] == "1"


def test_the_claims_written() -> None:
    claims = jwt.decode(_token(), options={"verify_signature": False})
    assert set(claims) == {"iss", "aud", "sub", "role", "agency", "iat", "nbf", "exp", "jti"}
    assert claims["exp"] - claims["iat"] == 300
    assert _token() != _token()  # a fresh jti each time


def test_a_certificate_bound_token_carries_the_thumbprint() -> None:
    token = _token(thumbprint=THUMBPRINT)
    claims = jwt.decode(token, options={"verify_signature": False})
    expected = base64.urlsafe_b64encode(bytes.fromhex(THUMBPRINT)).rstrip(b"=").decode()
    assert claims["cnf"] == {"x5t#S256": expected}
    assert thumbprint_claim(THUMBPRINT) == expected
    verified = verify_access_token(token, public_key=_keys, policy=POLICY, now=NOW)
    assert verified.thumbprint == THUMBPRINT


def test_expiry_and_not_before_follow_the_broker_clock() -> None:
    token = _token()
    assert _verify(token, at=NOW + timedelta(seconds=299)) == SYSTEM
    _refused(token, at=NOW + timedelta(seconds=306))  # beyond the 5 s leeway
    _refused(token, at=NOW - timedelta(seconds=6))


@pytest.mark.parametrize(
    "policy",
    [
        TokenPolicy(issuer="someone-else"),
        TokenPolicy(audience="another-api"),
    ],
)
def test_wrong_issuer_or_audience_is_refused(policy: TokenPolicy) -> None:
    _refused(_token(), policy=policy)


def test_another_key_or_an_unknown_kid_is_refused() -> None:
    _refused(_forge(_claims(), key=Ed25519PrivateKey.generate()))
    _refused(_forge(_claims(), kid="2"))
    _refused(_forge(_claims(), kid="not-a-version"))


def test_alg_none_is_refused() -> None:
    _refused(_forge(_claims(), key=None, alg="none"))


def test_hs256_with_the_public_key_as_secret_is_refused() -> None:
    public_pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = base64.urlsafe_b64encode(
        json.dumps({"alg": "HS256", "kid": "1", "typ": "JWT"}).encode()
    ).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(_claims()).encode()).rstrip(b"=")
    # Built by hand: PyJWT rightly refuses to HMAC with a PEM key.
    signature = hmac.new(public_pem, header + b"." + body, hashlib.sha256).digest()
    forged = (
        header + b"." + body + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")
    ).decode()
    _refused(forged)


@pytest.mark.parametrize(
    "changes",
    [
        {"role": "superuser"},
        {"role": "system", "agency": None},  # a system principal names its agency
        {"role": "admin", "agency": "police"},  # an administrator acts for none
        {"sub": None},
        {"exp": None},
        {"jti": None},
        {"exp": "soon"},
        {"cnf": {"x5t#S256": 7}},
    ],
)
def test_malformed_claims_are_refused(changes: dict[str, Any]) -> None:
    _refused(_forge(_claims(**changes)))


def test_garbage_is_refused() -> None:
    for token in ("", "abc", "a.b.c", "Bearer x"):
        _refused(token)


@settings(max_examples=60, deadline=None)
@given(position=st.integers(min_value=0), replacement=st.sampled_from("ABCDEFabcdef0123456789-_"))
def test_any_tampering_is_refused(position: int, replacement: str) -> None:
    token = _token()
    index = position % len(token)
    if token[index] == "." or token[index] == replacement:
        return
    tampered = token[:index] + replacement + token[index + 1 :]
    try:
        principal = _verify(tampered)
    except AuthenticationFailed:
        return
    # Changing base64url padding bits can leave the decoded bytes as they were.
    assert principal == SYSTEM
    assert jwt.decode(tampered, options={"verify_signature": False}) == jwt.decode(
        token, options={"verify_signature": False}
    )
