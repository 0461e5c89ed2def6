"""Client assertions (RFC 7523 §2.2): each rule the broker applies, one at a time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.client_auth import (
    AssertionClaims,
    ClientAuthFailed,
    ClientKey,
    assertion_client_id,
    generate_client_key,
    key_algorithm,
    live_keys,
    normalise_thumbprint,
    verify_assertion,
)
from broker.errors import ValidationError
from broker.token_client import ClientCredential, sign_assertion

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
T = int(NOW.timestamp())
CLIENT = "police-0a1b2c3d4e5f"
AUDIENCES = {"https://broker.example/oauth/token", "accord"}
ED_KEY = Ed25519PrivateKey.generate()
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def _public_pem(key: Any) -> str:
    return str(
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


KEYS = [
    ClientKey("ed-key", "EdDSA", _public_pem(ED_KEY), "2026-11-01T00:00:00+00:00"),
    ClientKey("ec-key", "ES256", _public_pem(EC_KEY), "2026-11-01T00:00:00+00:00"),
]


def _claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": "accord",
        "iat": T,
        "exp": T + 60,
        "jti": "jti-1",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(
    claims: dict[str, Any], *, key: Any = ED_KEY, alg: str = "EdDSA", kid: str | None = None
) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def _verify(assertion: str, keys: list[ClientKey] = KEYS) -> AssertionClaims:
    return verify_assertion(assertion, client_id=CLIENT, keys=keys, audiences=AUDIENCES, now=NOW)


def _refused(assertion: str, keys: list[ClientKey] = KEYS) -> None:
    with pytest.raises(ClientAuthFailed) as raised:
        _verify(assertion, keys)
    assert raised.value.code == "client_assertion_invalid"
    assert raised.value.oauth_error == "invalid_client"


@pytest.mark.parametrize(
    ("key", "alg", "kid"), [(ED_KEY, "EdDSA", "ed-key"), (EC_KEY, "ES256", "ec-key")]
)
def test_eddsa_and_es256_are_accepted(key: Any, alg: str, kid: str) -> None:
    verified = _verify(_sign(_claims(), key=key, alg=alg))
    assert verified == AssertionClaims(client_id=CLIENT, key_id=kid, jti="jti-1", expires_at=T + 60)
    assert _verify(_sign(_claims(), key=key, alg=alg, kid=kid)).key_id == kid


def test_either_audience_is_accepted_and_no_other() -> None:
    assert _verify(_sign(_claims(aud="https://broker.example/oauth/token"))).jti == "jti-1"
    assert _verify(_sign(_claims(aud=["elsewhere", "accord"]))).jti == "jti-1"
    _refused(_sign(_claims(aud="https://elsewhere.example/oauth/token")))
    _refused(_sign(_claims(aud=None)))


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": "police-ffffffffffff"},
        {"sub": "police-ffffffffffff"},
        {"sub": None},
        {"jti": None},
        {"jti": ""},
        {"jti": "x" * 201},
        {"exp": None},
        {"exp": T - 31},  # expired, beyond the 30 s skew
        {"exp": T + 300 + 31},  # more than 5 minutes ahead
        {"iat": T + 31},  # issued in the future
        {"nbf": T + 31},
        {"exp": "later"},
    ],
)
def test_each_claim_rule(changes: dict[str, Any]) -> None:
    _refused(_sign(_claims(**changes)))


def test_the_edges_of_the_time_rules_are_accepted() -> None:
    assert _verify(_sign(_claims(exp=T + 330, iat=T + 30))).expires_at == T + 330
    assert _verify(_sign(_claims(exp=T - 29))).expires_at == T - 29


def test_a_key_the_client_does_not_hold_is_refused() -> None:
    _refused(_sign(_claims(), key=Ed25519PrivateKey.generate()))
    _refused(_sign(_claims(), kid="ec-key"))  # EdDSA under the id of the ES256 key
    _refused(_sign(_claims()), keys=[KEYS[1]])  # the client has no EdDSA key


def test_alg_none_and_hmac_are_refused() -> None:
    _refused(_sign(_claims(), key=None, alg="none"))
    _refused(_sign(_claims(), key="a-shared-secret-of-32-bytes-long!", alg="HS256"))
    # HS256 keyed with the registered public key: the classic confusion attack.
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(_claims()).encode()).rstrip(b"=")
    mac = hmac.new(KEYS[0].public_key_pem.encode(), header + b"." + body, hashlib.sha256)
    _refused(
        b".".join([header, body, base64.urlsafe_b64encode(mac.digest()).rstrip(b"=")]).decode()
    )


def test_rs256_is_refused_even_with_a_matching_key() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    registered = ClientKey("rsa", "RS256", _public_pem(rsa_key), "2026-11-01T00:00:00+00:00")
    _refused(_sign(_claims(), key=rsa_key, alg="RS256"), keys=[registered])


def test_the_claimed_client_id_is_read_before_verifying() -> None:
    assert assertion_client_id(_sign(_claims())) == CLIENT
    for bad in ("garbage", _sign(_claims(iss=None)), _sign(_claims(iss="x" * 129))):
        with pytest.raises(ClientAuthFailed):
            assertion_client_id(bad)


def test_live_keys_end_at_not_after() -> None:
    ended = ClientKey("old", "EdDSA", KEYS[0].public_key_pem, "2026-11-01", "2026-11-26T12:00:00")
    later = ClientKey("grace", "EdDSA", KEYS[0].public_key_pem, "2026-11-01", "2026-11-26T12:05:00")
    assert [k.key_id for k in live_keys([ended, later, KEYS[1]], "2026-11-26T12:00:00")] == [
        "grace",
        "ec-key",
    ]


def test_key_algorithms_registered() -> None:
    private_pem, public_pem = generate_client_key()
    assert "PRIVATE KEY" in private_pem
    assert key_algorithm(public_pem) == "EdDSA"
    assert key_algorithm(_public_pem(EC_KEY)) == "ES256"
    with pytest.raises(ValidationError) as unsupported:
        key_algorithm(_public_pem(ec.generate_private_key(ec.SECP384R1())))
    assert unsupported.value.code == "public_key_unsupported"
    with pytest.raises(ValidationError) as private:
        key_algorithm(private_pem)  # the private half is not a public key
    assert private.value.code == "public_key_invalid"


def test_thumbprints_are_normalised() -> None:
    assert normalise_thumbprint("AB:" * 31 + "AB") == "ab" * 32
    for bad in ("ab" * 31, "zz" * 32, ""):
        with pytest.raises(ValidationError):
            normalise_thumbprint(bad)


def test_the_token_client_signs_what_the_broker_accepts() -> None:
    pem = ED_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    credential = ClientCredential(CLIENT, "ed-key", "EdDSA", pem)
    first = sign_assertion(credential, "accord", now=float(T))
    second = sign_assertion(credential, "accord", now=float(T))
    assert _verify(first).jti != _verify(second).jti
    assert _verify(first).expires_at == T + 60
    assert CLIENT in repr(credential)
    assert "PRIVATE" not in repr(credential)
