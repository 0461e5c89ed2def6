"""An external OpenID Connect provider for people, ready by configuration.

When ``BROKER_OIDC_ISSUER`` is set, a bearer token whose ``iss`` is that
issuer is verified against the provider's keys (RS256, ES256 or EdDSA) and
mapped to a person's principal from two claims (role and agency). The broker
runs on closed networks, so the keys come from a JWKS file
(``BROKER_OIDC_JWKS_FILE``) unless ``BROKER_OIDC_JWKS_URL`` is set; only then
are they fetched (PyJWT's ``PyJWKClient``, which caches them). A provider can
never make an agency system: the ``system`` role is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt

from broker.errors import AuthenticationFailed, ConfigError
from broker.principal import AGENCY_ROLES, Principal, Role

if TYPE_CHECKING:
    from broker.config import Settings

OIDC_ALGORITHMS = ("RS256", "ES256", "EdDSA")
_LEEWAY_SECONDS = 30
_PEOPLE_ROLES = frozenset({Role.DPO, Role.IG_LEAD, Role.ADMIN})


def _refused() -> AuthenticationFailed:
    return AuthenticationFailed("the identity provider's token is not valid here; sign in again")


@dataclass(frozen=True)
class OidcVerifier:
    """Verifies a provider's tokens and maps them to principals."""

    issuer: str
    audience: str
    role_claim: str = "accord_role"
    agency_claim: str = "accord_agency"
    jwks: jwt.PyJWKSet | None = None
    jwks_client: jwt.PyJWKClient | None = None

    def _key(self, token: str) -> Any:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            if self.jwks_client is not None:
                return self.jwks_client.get_signing_key_from_jwt(token).key
        except jwt.PyJWTError:
            raise _refused() from None
        assert self.jwks is not None  # one of the two is always set
        for key in self.jwks.keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise _refused()

    def principal(self, token: str, *, now: datetime) -> Principal:
        """The person a provider's token names; AuthenticationFailed for anything amiss."""
        key = self._key(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(OIDC_ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": ["iss", "aud", "sub", "exp"],
                    "verify_exp": False,  # checked against the broker's clock below
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError:
            raise _refused() from None
        moment = now.timestamp()
        expires, not_before = claims.get("exp"), claims.get("nbf")
        if not isinstance(expires, int) or moment >= expires + _LEEWAY_SECONDS:
            raise _refused()
        if not_before is not None and (
            not isinstance(not_before, int) or moment < not_before - _LEEWAY_SECONDS
        ):
            raise _refused()
        return _principal(claims, self.role_claim, self.agency_claim)


def _principal(claims: dict[str, Any], role_claim: str, agency_claim: str) -> Principal:
    subject, role, agency = claims.get("sub"), claims.get(role_claim), claims.get(agency_claim)
    if not isinstance(subject, str) or not subject or not isinstance(role, str):
        raise _refused()
    try:
        parsed = Role(role)
    except ValueError:
        raise _refused() from None
    if parsed not in _PEOPLE_ROLES:
        raise _refused()  # a provider speaks for people, never for an agency's system
    if parsed in AGENCY_ROLES:
        if not isinstance(agency, str) or not agency:
            raise _refused()
        return Principal(subject=subject, role=parsed, agency=agency)
    return Principal(subject=subject, role=parsed, agency=None)


def load_jwks(path: Path) -> jwt.PyJWKSet:
    """The provider's keys from a JWKS file; ConfigError when unreadable or empty."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        keys = jwt.PyJWKSet.from_dict(document)
    except (OSError, ValueError, jwt.PyJWTError):
        raise ConfigError(
            "BROKER_OIDC_JWKS_FILE could not be read as a JWKS document; check the file"
        ) from None
    return keys


def verifier_from_settings(settings: Settings) -> OidcVerifier | None:
    """The configured provider, or None when ``BROKER_OIDC_ISSUER`` is unset."""
    if settings.oidc_issuer is None:
        return None
    if settings.oidc_audience is None:
        raise ConfigError("BROKER_OIDC_ISSUER is set but BROKER_OIDC_AUDIENCE is not; set both")
    jwks = jwks_client = None
    if settings.oidc_jwks_url is not None:
        jwks_client = jwt.PyJWKClient(settings.oidc_jwks_url, cache_keys=True)
    elif settings.oidc_jwks_file is not None:
        jwks = load_jwks(settings.oidc_jwks_file)
    else:
        raise ConfigError(
            "BROKER_OIDC_ISSUER is set but neither BROKER_OIDC_JWKS_FILE nor "
            "BROKER_OIDC_JWKS_URL is; give the provider's keys"
        )
    return OidcVerifier(
        issuer=settings.oidc_issuer,
        audience=settings.oidc_audience,
        role_claim=settings.oidc_role_claim,
        agency_claim=settings.oidc_agency_claim,
        jwks=jwks,
        jwks_client=jwks_client,
    )
