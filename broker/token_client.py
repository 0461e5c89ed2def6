"""A small OAuth client for agency systems: sign an assertion, fetch a token, refresh it in time.

Given a credential (client id, key id, private key) and the broker's URL, it
signs a fresh client assertion (new ``jti``, 60 s ``exp``) for each token
request to ``POST /oauth/token`` and keeps the token until shortly before it
expires. A credential file is JSON: ``{client_id, key_id, alg, private_key_pem,
token_url?}`` (``broker agencies add --generate-credential`` writes one for
development; in production an agency keeps its own private key and sends the
broker only the public half).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.client_auth import ASSERTION_TYPE, GRANT_TYPE
from broker.errors import AuthenticationFailed, ValidationError

CREDENTIAL_FORMAT = "accord-client-credential"
ASSERTION_SECONDS = 60
#: A token is renewed this many seconds before it expires.
REFRESH_MARGIN_SECONDS = 30
TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path


@dataclass(frozen=True, repr=False)
class ClientCredential:
    """What an agency system signs its assertions with."""

    client_id: str
    key_id: str
    alg: str
    private_key_pem: str
    token_url: str | None = None

    def __repr__(self) -> str:  # the private key must never reach a log line or a traceback
        return f"ClientCredential(client_id={self.client_id!r}, key_id={self.key_id!r})"

    def as_document(self) -> dict[str, Any]:
        """The JSON document of a credential file."""
        document: dict[str, Any] = {
            "format": CREDENTIAL_FORMAT,
            "client_id": self.client_id,
            "key_id": self.key_id,
            "alg": self.alg,
            "private_key_pem": self.private_key_pem,
        }
        if self.token_url is not None:
            document["token_url"] = self.token_url
        return document


def load_credential(path: Path) -> ClientCredential:
    """Read a credential file; ValidationError (``credential_invalid``) if it is not one."""
    invalid = ValidationError(
        f"{path} is not a client credential file (client_id, key_id, alg, private_key_pem)",
        code="credential_invalid",
    )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise ValidationError(
            f"credential file {path} could not be read", code="file_unreadable"
        ) from None
    try:
        document = json.loads(text)
    except ValueError:
        raise invalid from None
    if not isinstance(document, dict):
        raise invalid
    fields = [document.get(name) for name in ("client_id", "key_id", "alg", "private_key_pem")]
    token_url = document.get("token_url")
    if not all(isinstance(f, str) and f for f in fields) or not isinstance(token_url, str | None):
        raise invalid
    client_id, key_id, alg, pem = (str(f) for f in fields)
    _private_key(pem, alg, invalid)
    return ClientCredential(client_id, key_id, alg, pem, token_url)


def _private_key(pem: str, alg: str, invalid: Exception) -> Any:
    try:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise invalid from None
    if alg == "EdDSA" and isinstance(key, Ed25519PrivateKey):
        return key
    if alg == "ES256" and isinstance(key, ec.EllipticCurvePrivateKey):
        return key
    raise invalid


def sign_assertion(credential: ClientCredential, audience: str, *, now: float | None = None) -> str:
    """A fresh client assertion (RFC 7523): new jti, valid for 60 seconds."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": credential.client_id,
        "sub": credential.client_id,
        "aud": audience,
        "iat": issued,
        "exp": issued + ASSERTION_SECONDS,
        "jti": secrets.token_urlsafe(18),
    }
    key = _private_key(
        credential.private_key_pem,
        credential.alg,
        ValidationError("the credential's private key is unreadable", code="credential_invalid"),
    )
    return jwt.encode(claims, key, algorithm=credential.alg, headers={"kid": credential.key_id})


def token_url(base_url: str) -> str:
    """The token endpoint of a broker at ``base_url``."""
    return base_url.rstrip("/") + TOKEN_PATH


class TokenClient:
    """Fetches and caches an access token for one credential; thread-safe.

    ``audience`` defaults to the token endpoint's URL; a broker also accepts
    its issuer name (``BROKER_TOKEN_ISSUER``), useful behind a proxy.
    """

    def __init__(
        self,
        credential: ClientCredential,
        base_url: str,
        *,
        audience: str | None = None,
        http: httpx.Client | None = None,
        headers: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.credential = credential
        self.url = credential.token_url or token_url(base_url)
        self.audience = audience or self.url
        self._http = http
        self._extra = dict(headers or {})
        self._clock = clock
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = Lock()

    def fetch(self) -> tuple[str, int]:
        """A new token from the endpoint: (access token, lifetime in seconds)."""
        form = {
            "grant_type": GRANT_TYPE,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": sign_assertion(self.credential, self.audience, now=self._clock()),
        }
        try:
            if self._http is not None:
                response = self._http.post(self.url, data=form, headers=self._extra)
            else:
                response = httpx.post(self.url, data=form, headers=self._extra, timeout=30)
        except httpx.HTTPError:
            raise AuthenticationFailed(
                f"could not reach the broker's token endpoint at {self.url}; check the URL",
                code="token_endpoint_unreachable",
            ) from None
        if response.status_code != 200:
            raise AuthenticationFailed(
                f"the broker refused a token (HTTP {response.status_code}); "
                "check the credential is registered and not disabled",
                code="token_refused",
            )
        body = response.json()
        return str(body["access_token"]), int(body["expires_in"])

    def token(self) -> str:
        """A token valid for at least the next few seconds, fetched when needed."""
        with self._lock:
            now = self._clock()
            if self._token is None or now >= self._renew_at:
                token, lifetime = self.fetch()
                self._token = token
                self._renew_at = now + max(lifetime - REFRESH_MARGIN_SECONDS, lifetime / 2)
            return self._token

    def headers(self) -> dict[str, str]:
        """``Authorization: Bearer <token>`` (plus any fixed headers) for an API request."""
        return {**self._extra, "Authorization": f"Bearer {self.token()}"}


class BearerAuth(httpx.Auth):
    """httpx authentication that attaches a fresh token to every request."""

    def __init__(self, client: TokenClient) -> None:
        self._client = client

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = f"Bearer {self._client.token()}"
        yield request
