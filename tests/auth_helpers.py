"""Authorisation headers for tests: an agency's system, or a person of one role.

The in-process helpers take a ``Broker`` and go the real way: register a
client with a fresh key and exchange a signed assertion for a token through
the token endpoint's domain function; create an account and sign in. The
``server_`` helpers drive a broker running in a subprocess through its CLI and
its HTTP API. Tokens live ``BROKER_ACCESS_TOKEN_SECONDS`` (300 s by default)
by the broker's clock: a test that moves a fixed clock further must ask again.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx

from broker.client_auth import generate_client_key
from broker.service import Broker
from broker.token_client import ClientCredential, TokenClient, load_credential, sign_assertion

_BROKER = str(Path(sys.executable).with_name("broker"))
#: Every test account's password (long enough for the policy, never used outside tests).
TEST_PASSWORD = "correct horse battery staple"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def register_agency_client(broker: Broker, agency: str) -> ClientCredential:
    """Register a new client for ``agency`` with a fresh Ed25519 key; its credential."""
    private_pem, public_pem = generate_client_key()
    made = broker.identity.register_client(agency, public_pem)
    return ClientCredential(made.client_id, made.key_id, made.alg, private_pem)


def client_token(broker: Broker, credential: ClientCredential) -> str:
    """A token for a registered client, from a signed assertion, by the broker's clock."""
    issuer = broker.identity.config.policy.issuer
    assertion = sign_assertion(credential, issuer, now=broker.identity.now().timestamp())
    return broker.identity.issue_client_token(assertion, audiences={issuer}).access_token


def agency_headers(broker: Broker, agency: str) -> dict[str, str]:
    """Headers for an agency's own system (role ``system``)."""
    return _bearer(client_token(broker, register_agency_client(broker, agency)))


def person_username(role: str, agency: str | None) -> str:
    """The test account name for a role at an agency (or at none, for an administrator)."""
    return f"{role.replace('_', '-')}.{agency or 'broker'}"


def person_headers(broker: Broker, role: str, agency: str | None) -> dict[str, str]:
    """Headers for a person of ``role`` (dpo, ig_lead, admin) at ``agency``."""
    username = person_username(role, agency)
    if username not in {a.username for a in broker.identity.accounts()}:
        broker.identity.add_account(username, role=role, agency_id=agency, password=TEST_PASSWORD)
    return _bearer(broker.identity.sign_in(username, TEST_PASSWORD).access_token)


def _run(env: Mapping[str, str], cwd: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [_BROKER, *args],
        env=dict(env),
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"broker {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def server_agency_credential(env: Mapping[str, str], cwd: Path, agency: str) -> Path:
    """Register a client for ``agency`` with ``broker agencies add``; its credential file."""
    path = cwd / f"{agency}-{secrets.token_hex(4)}.credential.json"
    _run(env, cwd, "agencies", "add", agency, "--generate-credential", str(path))
    return path


def server_agency_headers(
    base_url: str, env: Mapping[str, str], cwd: Path, agency: str
) -> dict[str, str]:
    """Headers for an agency's system against a broker running in a subprocess."""
    credential = load_credential(server_agency_credential(env, cwd, agency))
    return TokenClient(credential, base_url).headers()


def server_person_headers(
    base_url: str, env: Mapping[str, str], cwd: Path, role: str, agency: str | None
) -> dict[str, str]:
    """Headers for a person of ``role`` against a broker running in a subprocess."""
    username = person_username(role, agency)
    if username not in _run(env, cwd, "users", "list"):
        where = ["--agency", agency] if agency is not None else []
        _run(
            env,
            cwd,
            "users",
            "add",
            username,
            "--role",
            role,
            *where,
            "--password-stdin",
            stdin=TEST_PASSWORD + "\n",
        )
    response = httpx.post(
        base_url.rstrip("/") + "/v1/sessions",
        json={"username": username, "password": TEST_PASSWORD},
        timeout=30,
    )
    if response.status_code != 200:
        raise AssertionError(f"sign-in refused: HTTP {response.status_code}")
    return _bearer(str(response.json()["access_token"]))


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token in ``Authorization: Bearer <token>`` headers."""
    return headers["Authorization"].removeprefix("Bearer ")
