"""The broker's own access tokens: short-lived JWTs signed with Ed25519 (EdDSA).

A token says who the caller is (``sub``), its role, its agency and, when the
client proved a TLS client certificate at the token endpoint, that
certificate's thumbprint (``cnf`` / ``x5t#S256``, RFC 8705). The signing key is
a key-store key (kind ``access-token``): random, wrapped under the master key
like the log-signing key, the same for every worker, and versioned; the
version is the token's ``kid``.

Times are checked against the broker's clock, not the host's, so a test clock
and the audit log agree with what was accepted. Nothing here knows HTTP or SQL.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from broker.errors import AuthenticationFailed
from broker.principal import Principal, Role

#: The key-store kind of the token-signing key.
ACCESS_TOKEN_KIND = "access-token"  # noqa: S105 - a key kind, not a secret
ALGORITHM = "EdDSA"
DEFAULT_AUDIENCE = "accord-api"
DEFAULT_ISSUER = "accord"
DEFAULT_LIFETIME_SECONDS = 300
#: Seconds of clock difference tolerated between workers when checking nbf and exp.
LEEWAY_SECONDS = 5
_REQUIRED = ("iss", "aud", "sub", "role", "iat", "nbf", "exp", "jti")


@dataclass(frozen=True)
class TokenPolicy:
    """What the broker writes into its tokens and demands of them."""

    issuer: str = DEFAULT_ISSUER
    audience: str = DEFAULT_AUDIENCE
    lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS


@dataclass(frozen=True)
class IssuedToken:
    """An access token as the token endpoint returns it."""

    access_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 - RFC 6750 token type


@dataclass(frozen=True)
class TokenClaims:
    """What a verified access token says; the caller still checks the subject is enabled."""

    principal: Principal
    jti: str
    expires_at: int
    thumbprint: str | None  # the bound certificate's SHA-256, hex, when bound


def thumbprint_claim(thumbprint_hex: str) -> str:
    """The ``x5t#S256`` value (base64url, unpadded) of a SHA-256 thumbprint in hex."""
    raw = bytes.fromhex(thumbprint_hex)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _thumbprint_hex(claim: str) -> str:
    padded = claim + "=" * (-len(claim) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii")).hex()


def sign_access_token(
    principal: Principal,
    *,
    key: Ed25519PrivateKey,
    key_id: str,
    policy: TokenPolicy,
    now: datetime,
    thumbprint: str | None = None,
) -> IssuedToken:
    """A new signed token for ``principal``, valid from ``now`` for the policy's lifetime.

    ``thumbprint`` (hex SHA-256 of a client certificate) binds the token to it.
    """
    issued = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": policy.issuer,
        "aud": policy.audience,
        "sub": principal.subject,
        "role": principal.role.value,
        "agency": principal.agency,
        "iat": issued,
        "nbf": issued,
        "exp": issued + policy.lifetime_seconds,
        "jti": secrets.token_urlsafe(16),
    }
    if thumbprint is not None:
        claims["cnf"] = {"x5t#S256": thumbprint_claim(thumbprint)}
    token = jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": key_id})
    return IssuedToken(access_token=token, expires_in=policy.lifetime_seconds)


def token_key_id(token: str) -> str | None:
    """The ``kid`` in a token's header, unverified (None when the token is not a JWT)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return None
    kid = header.get("kid")
    return kid if isinstance(kid, str) else None


def issuer_of(token: str) -> str | None:
    """The unverified ``iss`` of a JWT, to choose which verifier applies; None if unreadable."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) else None


def _refused() -> AuthenticationFailed:
    # One message for every reason: a caller probing tokens learns nothing from it.
    return AuthenticationFailed(
        "the access token is not valid or has expired; ask the token endpoint for a new one",
    )


def verify_access_token(
    token: str,
    *,
    public_key: Callable[[str], Ed25519PublicKey | None],
    policy: TokenPolicy,
    now: datetime,
) -> TokenClaims:
    """The claims of a token this broker signed; AuthenticationFailed (``unauthenticated``) if not.

    Refuses a bad signature, any algorithm but EdDSA, a wrong issuer or
    audience, an expired or not-yet-valid token and an unknown role.
    ``public_key`` maps a ``kid`` to the verifying key (None when unknown).
    """
    kid = token_key_id(token)
    key = public_key(kid) if kid is not None else None
    if key is None:
        raise _refused()
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=policy.audience,
            issuer=policy.issuer,
            # Times are checked below against the broker's clock.
            options={
                "require": list(_REQUIRED),
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError:
        raise _refused() from None
    moment = now.timestamp()
    try:
        expires, not_before = int(claims["exp"]), int(claims["nbf"])
    except (TypeError, ValueError):
        raise _refused() from None
    if moment >= expires + LEEWAY_SECONDS or moment < not_before - LEEWAY_SECONDS:
        raise _refused()
    return TokenClaims(
        principal=_principal(claims),
        jti=str(claims["jti"]),
        expires_at=expires,
        thumbprint=_bound_thumbprint(claims),
    )


def _principal(claims: dict[str, Any]) -> Principal:
    subject, role, agency = claims.get("sub"), claims.get("role"), claims.get("agency")
    if not isinstance(subject, str) or not subject or not isinstance(role, str):
        raise _refused()
    if agency is not None and not isinstance(agency, str):
        raise _refused()
    try:
        return Principal(subject=subject, role=Role(role), agency=agency)
    except ValueError:
        raise _refused() from None


def _bound_thumbprint(claims: dict[str, Any]) -> str | None:
    cnf = claims.get("cnf")
    if cnf is None:
        return None
    value = cnf.get("x5t#S256") if isinstance(cnf, dict) else None
    if not isinstance(value, str):
        raise _refused()
    try:
        return _thumbprint_hex(value)
    except ValueError:
        raise _refused() from None
