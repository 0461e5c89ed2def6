"""An external OpenID Connect provider, played by a key made here, signs people in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from broker.bootstrap import Runtime, build_runtime
from broker.clock import FixedClock
from broker.config import Settings
from broker.errors import AuthenticationFailed, ConfigError
from broker.identity import identity_config
from broker.principal import Principal, Role
from broker.web.app import create_app

ISSUER = "https://idp.partnership.example"
AUDIENCE = "accord-broker"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = Ed25519PrivateKey.generate()


def _jwks(path: Path) -> Path:
    keys = [
        {**json.loads(RSAAlgorithm.to_jwk(RSA_KEY.public_key())), "kid": "rsa-1", "use": "sig"},
        {**json.loads(ECAlgorithm.to_jwk(EC_KEY.public_key())), "kid": "ec-1", "use": "sig"},
        {**json.loads(OKPAlgorithm.to_jwk(ED_KEY.public_key())), "kid": "ed-1", "use": "sig"},
    ]
    path.write_text(json.dumps({"keys": keys}))
    return path


@pytest.fixture
def oidc_runtime(settings: Settings, clock: FixedClock, tmp_path: Path) -> Iterator[Runtime]:
    configured = settings.model_copy(
        update={
            "oidc_issuer": ISSUER,
            "oidc_audience": AUDIENCE,
            "oidc_jwks_file": _jwks(tmp_path / "jwks.json"),
        }
    )
    built = build_runtime(configured, clock=clock)
    yield built
    built.engine.dispose()


@pytest.fixture
def client(oidc_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(oidc_runtime)) as test_client:
        yield test_client


def _token(
    runtime: Runtime, *, key: Any = RSA_KEY, alg: str = "RS256", kid: str = "rsa-1", **changes: Any
) -> str:
    now = int(runtime.broker.identity.now().timestamp())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "jo.bloggs@school.example",
        "iat": now,
        "exp": now + 600,
        "accord_role": "dpo",
        "accord_agency": "school",
    }
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def test_a_provider_token_signs_a_person_in(client: TestClient, oidc_runtime: Runtime) -> None:
    token = _token(oidc_runtime)
    assert oidc_runtime.broker.authenticate(token) == Principal(
        "jo.bloggs@school.example", Role.DPO, "school"
    )
    listed = client.get("/v1/agreements", headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200, listed.text


@pytest.mark.parametrize(
    ("key", "alg", "kid"), [(EC_KEY, "ES256", "ec-1"), (ED_KEY, "EdDSA", "ed-1")]
)
def test_es256_and_eddsa_keys_verify(oidc_runtime: Runtime, key: Any, alg: str, kid: str) -> None:
    principal = oidc_runtime.broker.authenticate(_token(oidc_runtime, key=key, alg=alg, kid=kid))
    assert principal.role is Role.DPO


def test_an_administrator_acts_for_no_agency(oidc_runtime: Runtime) -> None:
    token = _token(oidc_runtime, accord_role="admin", accord_agency=None)
    assert oidc_runtime.broker.authenticate(token) == Principal(
        "jo.bloggs@school.example", Role.ADMIN, None
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"accord_role": "system"},  # a provider never speaks for an agency's system
        {"accord_role": "superuser"},
        {"accord_role": None},
        {"accord_agency": None},  # a DPO acts for one agency
        {"aud": "another-service"},
        {"sub": None},
        {"exp": None},
    ],
)
def test_refused_claims(client: TestClient, oidc_runtime: Runtime, changes: dict[str, Any]) -> None:
    token = _token(oidc_runtime, **changes)
    with pytest.raises(AuthenticationFailed):
        oidc_runtime.broker.authenticate(token)
    refused = client.get("/v1/agreements", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthenticated"


def test_refused_keys_and_times(oidc_runtime: Runtime, clock: FixedClock) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for token in (
        _token(oidc_runtime, key=stranger),  # signed by a key the provider never published
        _token(oidc_runtime, kid="unknown"),
        _token(oidc_runtime, key="shared-secret-at-least-32-bytes!", alg="HS256"),
        _token(oidc_runtime, key=None, alg="none"),
    ):
        with pytest.raises(AuthenticationFailed):
            oidc_runtime.broker.authenticate(token)
    live = _token(oidc_runtime)
    clock.advance(timedelta(seconds=600 + 31))
    with pytest.raises(AuthenticationFailed):
        oidc_runtime.broker.authenticate(live)


def test_the_broker_issuer_is_not_confused_with_the_provider(oidc_runtime: Runtime) -> None:
    # A provider token claiming the broker's own issuer goes to the broker's verifier, and fails.
    with pytest.raises(AuthenticationFailed):
        oidc_runtime.broker.authenticate(_token(oidc_runtime, iss="accord"))


def test_configuration_errors(settings: Settings, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    for update, expected in (
        ({"oidc_issuer": ISSUER}, "BROKER_OIDC_AUDIENCE"),
        ({"oidc_issuer": ISSUER, "oidc_audience": AUDIENCE}, "BROKER_OIDC_JWKS_FILE"),
        (
            {"oidc_issuer": ISSUER, "oidc_audience": AUDIENCE, "oidc_jwks_file": broken},
            "could not be read",
        ),
    ):
        with pytest.raises(ConfigError, match=expected):
            identity_config(settings.model_copy(update=update))
    assert identity_config(settings).oidc is None
