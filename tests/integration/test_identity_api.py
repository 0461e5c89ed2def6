"""Identity over HTTP: the token endpoint, sign-in, and what a live token no longer opens."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from broker.bootstrap import Runtime, build_runtime
from broker.client_auth import ASSERTION_TYPE, generate_client_key
from broker.clock import FixedClock
from broker.config import Settings
from broker.errors import ValidationError
from broker.token_client import ClientCredential, sign_assertion
from broker.web.app import create_app
from tests.auth_helpers import TEST_PASSWORD, person_headers, register_agency_client

TOKEN_URL = "http://testserver/oauth/token"
CERT_HEADER = "X-Client-Cert-SHA256"
THUMBPRINT = "3f" * 32
OAUTH_KEYS = {"error", "error_description", "code", "message", "location"}
AGREEMENTS = "/v1/agreements"


@pytest.fixture
def bound_runtime(settings: Settings, clock: FixedClock) -> Iterator[Runtime]:
    """A broker behind a TLS proxy that reports the client certificate's thumbprint."""
    built = build_runtime(
        settings.model_copy(update={"client_cert_header": CERT_HEADER}), clock=clock
    )
    yield built
    built.engine.dispose()


@pytest.fixture
def client(bound_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(bound_runtime)) as test_client:
        yield test_client


def _form(assertion: str, **changes: str | None) -> dict[str, str]:
    form: dict[str, str | None] = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def _assertion(runtime: Runtime, credential: ClientCredential, audience: str = TOKEN_URL) -> str:
    return sign_assertion(credential, audience, now=runtime.broker.identity.now().timestamp())


def _token(
    client: TestClient, runtime: Runtime, credential: ClientCredential, **headers: str
) -> Any:
    return client.post("/oauth/token", data=_form(_assertion(runtime, credential)), headers=headers)


def _oauth_error(response: Any, status: int, error: str, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == OAUTH_KEYS
    assert (body["error"], body["code"]) == (error, code)
    assert body["message"] == body["error_description"]
    assert response.headers["cache-control"] == "no-store"


def _bearer(response: Any) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _unauthenticated(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthenticated"
    assert response.headers["www-authenticate"].startswith("Bearer")


def _audit(runtime: Runtime, action: str) -> list[Any]:
    entries = runtime.broker.audit_page(actor=None, after=0, limit=1000)
    return [e.event for e in entries if e.event.action == action]


def test_client_credentials_grant(client: TestClient, bound_runtime: Runtime) -> None:
    credential = register_agency_client(bound_runtime.broker, "police")
    response = _token(client, bound_runtime, credential)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 300)
    assert response.headers["cache-control"] == "no-store"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert (claims["sub"], claims["role"], claims["agency"]) == (
        credential.client_id,
        "system",
        "police",
    )
    assert (claims["iss"], claims["aud"]) == ("accord", "accord-api")
    assert "cnf" not in claims
    listed = client.get(AGREEMENTS, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert listed.status_code == 200, listed.text
    # The issuer is an audience too (a client behind a proxy may not know the URL).
    assert (
        client.post(
            "/oauth/token", data=_form(_assertion(bound_runtime, credential, "accord"))
        ).status_code
        == 200
    )


def test_malformed_token_requests(client: TestClient, bound_runtime: Runtime) -> None:
    credential = register_agency_client(bound_runtime.broker, "police")
    good = _assertion(bound_runtime, credential)
    as_json = client.post("/oauth/token", json=_form(good))
    _oauth_error(as_json, 400, "invalid_request", "form_required")
    _oauth_error(
        client.post("/oauth/token", data=_form(good, grant_type=None)),
        400,
        "invalid_request",
        "grant_type_missing",
    )
    _oauth_error(
        client.post("/oauth/token", data=_form(good, grant_type="password")),
        400,
        "unsupported_grant_type",
        "grant_type_unsupported",
    )
    _oauth_error(
        client.post("/oauth/token", data=_form(good, client_assertion=None)),
        400,
        "invalid_request",
        "client_assertion_missing",
    )
    _oauth_error(
        client.post("/oauth/token", data=_form(good, client_assertion_type="urn:other")),
        400,
        "invalid_request",
        "client_assertion_missing",
    )
    twice = "grant_type=client_credentials&grant_type=client_credentials"
    sent = client.post(
        "/oauth/token",
        content=twice,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    _oauth_error(sent, 400, "invalid_request", "form_invalid")
    # None of these spent the assertion: it still works once.
    assert client.post("/oauth/token", data=_form(good)).status_code == 200


def test_bad_assertions_are_invalid_client_and_audited(
    client: TestClient, bound_runtime: Runtime
) -> None:
    credential = register_agency_client(bound_runtime.broker, "police")
    assertion = _assertion(bound_runtime, credential)
    assert client.post("/oauth/token", data=_form(assertion)).status_code == 200
    replay = client.post("/oauth/token", data=_form(assertion))
    _oauth_error(replay, 401, "invalid_client", "client_assertion_invalid")

    other, _ = generate_client_key()
    forged = ClientCredential(credential.client_id, credential.key_id, "EdDSA", other)
    _oauth_error(
        _token(client, bound_runtime, forged), 401, "invalid_client", "client_assertion_invalid"
    )
    stranger = ClientCredential("police-ffffffffffff", "k", "EdDSA", other)
    _oauth_error(
        _token(client, bound_runtime, stranger), 401, "invalid_client", "client_assertion_invalid"
    )
    elsewhere = _assertion(bound_runtime, credential, "https://elsewhere.example/oauth/token")
    _oauth_error(
        client.post("/oauth/token", data=_form(elsewhere)),
        401,
        "invalid_client",
        "client_assertion_invalid",
    )
    _oauth_error(
        client.post("/oauth/token", data=_form("not.a.jwt")),
        401,
        "invalid_client",
        "client_assertion_invalid",
    )

    refused = _audit(bound_runtime, "token_issued")
    assert [(e.outcome, e.reason_code) for e in refused] == [
        ("refused", "assertion_replayed"),
        ("refused", "assertion_invalid"),
        ("refused", "client_unknown"),
        ("refused", "assertion_invalid"),
    ]
    assert refused[0].detail == {"client_id": credential.client_id}
    assert refused[2].detail == {}  # a client id nobody registered is not recorded
    assert refused[2].actor == "anonymous"


def test_a_disabled_client_is_refused_with_a_live_token(
    client: TestClient, bound_runtime: Runtime
) -> None:
    credential = register_agency_client(bound_runtime.broker, "police")
    headers = _bearer(_token(client, bound_runtime, credential))
    assert client.get(AGREEMENTS, headers=headers).status_code == 200
    bound_runtime.broker.identity.disable_client(credential.client_id, reason="laptop stolen")
    _unauthenticated(client.get(AGREEMENTS, headers=headers))
    _oauth_error(
        _token(client, bound_runtime, credential), 401, "invalid_client", "client_assertion_invalid"
    )
    assert _audit(bound_runtime, "token_issued")[-1].reason_code == "client_disabled"
    disabled = _audit(bound_runtime, "client_disabled")
    assert [e.detail for e in disabled] == [
        {"agency": "police", "client_id": credential.client_id, "reason": "laptop stolen"}
    ]


def test_tokens_expire_by_the_broker_clock(
    client: TestClient, bound_runtime: Runtime, clock: FixedClock
) -> None:
    credential = register_agency_client(bound_runtime.broker, "police")
    headers = _bearer(_token(client, bound_runtime, credential))
    clock.advance(timedelta(seconds=299))
    assert client.get(AGREEMENTS, headers=headers).status_code == 200
    clock.advance(timedelta(seconds=10))
    _unauthenticated(client.get(AGREEMENTS, headers=headers))
    _unauthenticated(client.get(AGREEMENTS))
    _unauthenticated(client.get(AGREEMENTS, headers={"Authorization": "Bearer acc_old-api-key"}))


@pytest.mark.parametrize("grace", [0, 60])
def test_key_rotation_keeps_the_old_key_for_the_grace_period(
    client: TestClient, bound_runtime: Runtime, clock: FixedClock, grace: int
) -> None:
    identity = bound_runtime.broker.identity
    old = register_agency_client(bound_runtime.broker, "police")
    private_pem, public_pem = generate_client_key()
    made = identity.rotate_client_key(old.client_id, public_pem, grace_seconds=grace)
    new = ClientCredential(old.client_id, made.key_id, "EdDSA", private_pem)
    assert _token(client, bound_runtime, new).status_code == 200
    assert _token(client, bound_runtime, old).status_code == (200 if grace else 401)
    clock.advance(timedelta(seconds=grace + 1))
    assert _token(client, bound_runtime, old).status_code == 401
    assert _token(client, bound_runtime, new).status_code == 200
    rotated = _audit(bound_runtime, "client_key_rotated")
    assert [(e.detail["grace_seconds"], e.detail["keys_ended"]) for e in rotated] == [(grace, 1)]


def test_certificate_binding(client: TestClient, bound_runtime: Runtime) -> None:
    identity = bound_runtime.broker.identity
    private_pem, public_pem = generate_client_key()
    made = identity.register_client("police", public_pem, cert_thumbprint=THUMBPRINT.upper())
    credential = ClientCredential(made.client_id, made.key_id, "EdDSA", private_pem)

    _oauth_error(
        _token(client, bound_runtime, credential), 401, "invalid_client", "client_assertion_invalid"
    )
    wrong = {CERT_HEADER: "00" * 32}
    _oauth_error(
        _token(client, bound_runtime, credential, **wrong),
        401,
        "invalid_client",
        "client_assertion_invalid",
    )
    assert [e.reason_code for e in _audit(bound_runtime, "token_issued")] == [
        "certificate_mismatch"
    ] * 2

    issued = _token(client, bound_runtime, credential, **{CERT_HEADER: THUMBPRINT})
    headers = _bearer(issued)
    claims = jwt.decode(issued.json()["access_token"], options={"verify_signature": False})
    assert "x5t#S256" in claims["cnf"]
    assert client.get(AGREEMENTS, headers={**headers, CERT_HEADER: THUMBPRINT}).status_code == 200
    _unauthenticated(client.get(AGREEMENTS, headers=headers))
    _unauthenticated(client.get(AGREEMENTS, headers={**headers, **wrong}))

    # An unbound client needs no header, and sending one changes nothing.
    plain = register_agency_client(bound_runtime.broker, "school")
    plain_headers = _bearer(_token(client, bound_runtime, plain, **wrong))
    assert client.get(AGREEMENTS, headers=plain_headers).status_code == 200


def test_sign_in(client: TestClient, bound_runtime: Runtime) -> None:
    identity = bound_runtime.broker.identity
    identity.add_account("dpo.police", role="dpo", agency_id="police", password=TEST_PASSWORD)
    signed_in = client.post(
        "/v1/sessions", json={"username": "dpo.police", "password": TEST_PASSWORD}
    )
    headers = _bearer(signed_in)
    assert set(signed_in.json()) == {"access_token", "token_type", "expires_in"}
    claims = jwt.decode(signed_in.json()["access_token"], options={"verify_signature": False})
    assert (claims["sub"], claims["role"], claims["agency"]) == ("dpo.police", "dpo", "police")
    assert client.get(AGREEMENTS, headers=headers).status_code == 200

    typed = "someone-who-does-not-exist"
    unknown = client.post("/v1/sessions", json={"username": typed, "password": TEST_PASSWORD})
    wrong = client.post("/v1/sessions", json={"username": "dpo.police", "password": "wrong" * 4})
    for refused in (unknown, wrong):
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "sign_in_failed"
    assert unknown.json()["error"]["message"] == wrong.json()["error"]["message"]

    identity.disable_account("dpo.police", reason="left the organisation")
    _unauthenticated(client.get(AGREEMENTS, headers=headers))
    disabled = client.post(
        "/v1/sessions", json={"username": "dpo.police", "password": TEST_PASSWORD}
    )
    assert disabled.json()["error"] == wrong.json()["error"]

    sign_ins = _audit(bound_runtime, "sign_in")
    assert [(e.outcome, e.reason_code, e.actor) for e in sign_ins] == [
        ("permitted", None, "dpo.police"),
        ("refused", "account_unknown", "anonymous"),
        ("refused", "password_wrong", "dpo.police"),
        ("refused", "account_disabled", "dpo.police"),
    ]
    assert sign_ins[1].detail == {}
    everything = repr(bound_runtime.broker.audit_page(actor=None, after=0, limit=1000))
    assert typed not in everything
    assert TEST_PASSWORD not in everything


def test_each_role_signs_in_as_itself(client: TestClient, bound_runtime: Runtime) -> None:
    for role, agency in (("dpo", "school"), ("ig_lead", "police"), ("admin", None)):
        headers = person_headers(bound_runtime.broker, role, agency)
        token = headers["Authorization"].removeprefix("Bearer ")
        assert bound_runtime.broker.authenticate(token).role.value == role
        assert bound_runtime.broker.authenticate(token).agency == agency


def test_binding_needs_the_proxy_header_configured(runtime: Runtime) -> None:
    _, public_pem = generate_client_key()
    with pytest.raises(ValidationError) as raised:
        runtime.broker.identity.register_client("police", public_pem, cert_thumbprint=THUMBPRINT)
    assert raised.value.code == "cert_header_unset"
    assert runtime.broker.identity.clients() == []
