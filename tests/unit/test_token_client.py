"""The agency-side token client: one fresh assertion per token, a token reused until near expiry."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import jwt
import pytest

from broker.client_auth import ASSERTION_TYPE, generate_client_key
from broker.errors import AuthenticationFailed, ValidationError
from broker.token_client import BearerAuth, ClientCredential, TokenClient, load_credential

BASE = "https://broker.example"
PRIVATE_PEM, PUBLIC_PEM = generate_client_key()
CREDENTIAL = ClientCredential("police-0a1b2c3d4e5f", "k1", "EdDSA", PRIVATE_PEM)


class FakeEndpoint:
    """A token endpoint that records the assertions it was sent."""

    def __init__(self, status: int = 200, lifetime: int = 300) -> None:
        self.status = status
        self.lifetime = lifetime
        self.assertions: list[dict[str, object]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/oauth/token":
            return httpx.Response(200, json={"seen": request.headers.get("authorization")})
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        assert form["grant_type"] == "client_credentials"
        assert form["client_assertion_type"] == ASSERTION_TYPE
        self.assertions.append(
            jwt.decode(
                form["client_assertion"],
                PUBLIC_PEM,
                algorithms=["EdDSA"],
                audience=f"{BASE}/oauth/token",
                options={"verify_exp": False, "verify_iat": False},
            )
        )
        if self.status != 200:
            return httpx.Response(self.status, json={"error": "invalid_client"})
        number = len(self.assertions)
        return httpx.Response(
            200,
            json={
                "access_token": f"t{number}",
                "token_type": "Bearer",
                "expires_in": self.lifetime,
            },
        )


def _client(endpoint: FakeEndpoint, now: list[float]) -> TokenClient:
    http = httpx.Client(transport=httpx.MockTransport(endpoint))
    return TokenClient(CREDENTIAL, BASE, http=http, clock=lambda: now[0])


def test_a_token_is_reused_until_shortly_before_it_expires() -> None:
    endpoint, now = FakeEndpoint(lifetime=300), [1_800_000_000.0]
    client = _client(endpoint, now)
    assert client.token() == "t1"
    now[0] += 269
    assert client.headers() == {"Authorization": "Bearer t1"}
    now[0] += 1  # 30 s before expiry: renewed
    assert client.token() == "t2"
    first, second = endpoint.assertions
    assert first["iss"] == first["sub"] == CREDENTIAL.client_id
    assert first["exp"] == first["iat"] + 60  # type: ignore[operator]
    assert first["iat"] == 1_800_000_000
    assert first["jti"] != second["jti"]


def test_a_short_lived_token_is_renewed_at_half_its_life() -> None:
    endpoint, now = FakeEndpoint(lifetime=40), [1_800_000_000.0]
    client = _client(endpoint, now)
    assert client.token() == "t1"
    now[0] += 19
    assert client.token() == "t1"
    now[0] += 1
    assert client.token() == "t2"


def test_refusal_and_unreachable_endpoint_are_one_clear_error() -> None:
    with pytest.raises(AuthenticationFailed) as refused:
        _client(FakeEndpoint(status=401), [0.0]).token()
    assert refused.value.code == "token_refused"
    assert "HTTP 401" in refused.value.message

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    http = httpx.Client(transport=httpx.MockTransport(unreachable))
    with pytest.raises(AuthenticationFailed) as failed:
        TokenClient(CREDENTIAL, BASE, http=http).token()
    assert failed.value.code == "token_endpoint_unreachable"


def test_bearer_auth_attaches_the_token_to_each_request() -> None:
    endpoint, now = FakeEndpoint(), [1_800_000_000.0]
    auth = BearerAuth(_client(endpoint, now))
    with httpx.Client(transport=httpx.MockTransport(endpoint), auth=auth) as http:
        assert http.get(f"{BASE}/v1/audit/head").json() == {"seen": "Bearer t1"}
        assert http.get(f"{BASE}/v1/audit/head").json() == {"seen": "Bearer t1"}
    assert len(endpoint.assertions) == 1


def test_credential_files(tmp_path: Path) -> None:
    path = tmp_path / "police.json"
    path.write_text(json.dumps({**CREDENTIAL.as_document(), "token_url": f"{BASE}/oauth/token"}))
    loaded = load_credential(path)
    assert (loaded.client_id, loaded.key_id, loaded.alg) == (CREDENTIAL.client_id, "k1", "EdDSA")
    assert TokenClient(loaded, "https://ignored.example").url == f"{BASE}/oauth/token"
    with pytest.raises(ValidationError, match="could not be read"):
        load_credential(tmp_path / "missing.json")
    for document in (
        "not json",
        "[]",
        json.dumps({"client_id": "x"}),
        json.dumps({**CREDENTIAL.as_document(), "alg": "ES256"}),
    ):
        path.write_text(document)
        with pytest.raises(ValidationError) as invalid:
            load_credential(path)
        assert invalid.value.code == "credential_invalid"
