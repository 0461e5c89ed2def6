"""Agency clients: registered public keys and the signed assertions they authenticate with.

An agency's system proves who it is at the token endpoint with a JWT it signs
with its own private key (``private_key_jwt``, RFC 7523 §2.2): iss = sub =
its client id, aud = the token endpoint's URL or the broker's issuer, a short
``exp`` and a ``jti`` never used before. The broker holds only the public
half (Ed25519 or ECDSA P-256). Nothing here knows HTTP or SQL.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from broker.errors import AuthenticationFailed, ValidationError

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRANT_TYPE = "client_credentials"
ASSERTION_ALGORITHMS = ("EdDSA", "ES256")
#: The furthest ahead an assertion's exp may be.
MAX_ASSERTION_SECONDS = 300
#: Clock difference tolerated between an agency's host and the broker.
SKEW_SECONDS = 30
ACTIVE = "active"
DISABLED = "disabled"
_THUMBPRINT = re.compile(r"^[0-9a-f]{64}$")
_JTI_MAX = 200


class ClientAuthFailed(AuthenticationFailed):
    """The client assertion did not prove the client (OAuth ``invalid_client``)."""

    oauth_error = "invalid_client"


@dataclass(frozen=True)
class ClientKey:
    """One registered public key of a client; ``not_after`` ends it (None: no end)."""

    key_id: str
    alg: str
    public_key_pem: str
    created_at: str
    not_after: str | None = None


@dataclass(frozen=True)
class AgencyClient:
    """A registered agency system."""

    client_id: str
    agency_id: str
    role: str
    status: str
    cert_thumbprint: str | None
    created_at: str
    disabled_at: str | None = None


@dataclass(frozen=True)
class AssertionClaims:
    """What a verified assertion proves: which client, which key, and its jti until when."""

    client_id: str
    key_id: str
    jti: str
    expires_at: int


def new_client_id(agency_id: str) -> str:
    """A fresh client id naming its agency, e.g. ``police-7f3a09c1d2e4``."""
    return f"{agency_id}-{secrets.token_hex(6)}"


def new_key_id() -> str:
    """A fresh key id for a registered public key."""
    return secrets.token_hex(8)


def key_algorithm(public_key_pem: str) -> str:
    """``EdDSA`` or ``ES256`` for a PEM public key; ValidationError for any other key."""
    try:
        key = serialization.load_pem_public_key(public_key_pem.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ValidationError(
            "the public key is not a PEM public key; send the public half only",
            code="public_key_invalid",
        ) from None
    if isinstance(key, Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise ValidationError(
        "the public key must be Ed25519 or ECDSA P-256", code="public_key_unsupported"
    )


def generate_client_key() -> tuple[str, str]:
    """A new Ed25519 key pair as (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    return private_pem, public_pem


def normalise_thumbprint(value: str) -> str:
    """A certificate's SHA-256 thumbprint as 64 lower-case hex digits (colons allowed in)."""
    cleaned = value.strip().replace(":", "").lower()
    if not _THUMBPRINT.match(cleaned):
        raise ValidationError(
            "a certificate thumbprint is 64 hex digits (its SHA-256)",
            code="thumbprint_invalid",
        )
    return cleaned


def _invalid() -> ClientAuthFailed:
    # One message for every reason: which check failed is audited, never told.
    return ClientAuthFailed(
        "the client assertion was not accepted; sign a fresh one with the registered key",
        code="client_assertion_invalid",
    )


def assertion_client_id(assertion: str) -> str:
    """The client id an assertion claims to be from (unverified ``iss``)."""
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise _invalid() from None
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer or len(issuer) > 128:
        raise _invalid()
    return issuer


def live_keys(keys: Sequence[ClientKey], now: str) -> list[ClientKey]:
    """The keys that may still sign: no end, or an end still ahead (ISO times compare)."""
    return [k for k in keys if k.not_after is None or k.not_after > now]


def verify_assertion(
    assertion: str,
    *,
    client_id: str,
    keys: Sequence[ClientKey],
    audiences: Collection[str],
    now: datetime,
) -> AssertionClaims:
    """Check an assertion against a client's live keys; ClientAuthFailed if any rule fails.

    The caller still checks the jti was never used (it stores it until ``expires_at``).
    """
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        raise _invalid() from None
    alg, kid = header.get("alg"), header.get("kid")
    candidates = [k for k in keys if k.alg == alg and (kid is None or k.key_id == kid)]
    if alg not in ASSERTION_ALGORITHMS or not candidates:
        raise _invalid()
    claims = _first_verifying(assertion, candidates, alg, audiences)
    if claims is None:
        raise _invalid()
    key_id, decoded = claims
    moment = int(now.timestamp())
    expires, issued = decoded.get("exp"), decoded.get("iat")
    jti = decoded.get("jti")
    if decoded.get("iss") != client_id or decoded.get("sub") != client_id:
        raise _invalid()
    if not isinstance(expires, int) or not moment - SKEW_SECONDS < expires:
        raise _invalid()
    if expires > moment + MAX_ASSERTION_SECONDS + SKEW_SECONDS:
        raise _invalid()
    for stamp in (issued, decoded.get("nbf")):
        if stamp is not None and (not isinstance(stamp, int) or stamp > moment + SKEW_SECONDS):
            raise _invalid()
    if not isinstance(jti, str) or not 0 < len(jti) <= _JTI_MAX:
        raise _invalid()
    return AssertionClaims(client_id=client_id, key_id=key_id, jti=jti, expires_at=expires)


def _first_verifying(
    assertion: str, candidates: Sequence[ClientKey], alg: str, audiences: Collection[str]
) -> tuple[str, dict[str, Any]] | None:
    for candidate in candidates:
        try:
            decoded: dict[str, Any] = jwt.decode(
                assertion,
                candidate.public_key_pem,
                algorithms=[alg],
                audience=list(audiences),
                options={
                    "require": ["iss", "sub", "aud", "exp", "jti"],
                    "verify_exp": False,  # checked against the broker's clock
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            continue
        return candidate.key_id, decoded
    return None
