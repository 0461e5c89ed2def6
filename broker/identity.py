"""Who is calling: access tokens issued to clients and people, and checked on every request.

The Broker holds one ``Identity``. It issues the broker's access tokens at the
token endpoint (an agency client's signed assertion) and at sign-in (a
person's password), and turns a bearer token into a ``Principal``. A token is
only half the proof: on each request the client or account it names is read
again, so disabling one takes effect at once, not when its tokens expire (one
primary-key read per request; cheap enough not to cache, so nothing stale is
ever accepted). Administration (registering clients, accounts) is in
``broker.identity_admin``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from threading import Lock
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.events import AuditEvent, LoggedEntry
from broker.access_tokens import (
    ACCESS_TOKEN_KIND,
    IssuedToken,
    TokenPolicy,
    issuer_of,
    sign_access_token,
    verify_access_token,
)
from broker.client_auth import (
    ACTIVE,
    AgencyClient,
    ClientAuthFailed,
    assertion_client_id,
    live_keys,
    normalise_thumbprint,
    verify_assertion,
)
from broker.clock import Clock
from broker.errors import AuthenticationFailed, Conflict, NotFound, ValidationError
from broker.interfaces import UnitOfWork, UnitOfWorkFactory
from broker.keys import signing_key_from_bytes
from broker.keystore import KeySlot, KeyStore
from broker.oidc import OidcVerifier, verifier_from_settings
from broker.people import DUMMY_HASH, verify_password
from broker.principal import Principal, Role

if TYPE_CHECKING:
    from broker.config import Settings

AuditFn = Callable[[UnitOfWork, AuditEvent], LoggedEntry]


@dataclass(frozen=True)
class IdentityConfig:
    """Token policy, the certificate header a proxy sets, and an external OIDC provider."""

    policy: TokenPolicy = field(default_factory=TokenPolicy)
    cert_header: str | None = None
    oidc: OidcVerifier | None = None


def identity_config(settings: Settings) -> IdentityConfig:
    """The identity configuration from the broker's settings."""
    return IdentityConfig(
        policy=TokenPolicy(
            issuer=settings.token_issuer, lifetime_seconds=settings.access_token_seconds
        ),
        cert_header=settings.client_cert_header,
        oidc=verifier_from_settings(settings),
    )


def _signed_in_failed() -> AuthenticationFailed:
    # One message whatever was wrong: never say whether the name or the password was.
    return AuthenticationFailed(
        "sign-in failed: check the user name and password, or ask an administrator",
        code="sign_in_failed",
    )


def _not_authenticated() -> AuthenticationFailed:
    return AuthenticationFailed(
        "the access token is not valid or has expired; ask the token endpoint for a new one",
    )


class IdentityBase:
    """State shared by authentication and administration."""

    def __init__(
        self,
        *,
        units: UnitOfWorkFactory,
        keystore: KeyStore,
        clock: Clock,
        audit: AuditFn,
        is_party: Callable[[str], bool],
        config: IdentityConfig | None = None,
    ) -> None:
        self._units = units
        self._keystore = keystore
        self._clock = clock
        self._audit = audit
        self._is_party = is_party
        self.config = config or IdentityConfig()
        # Verifying keys by version (kid): a version's key never changes once made.
        self._public: dict[str, Ed25519PublicKey] = {}
        self._lock = Lock()

    def now(self) -> datetime:
        """The broker's clock: what token times are checked against."""
        return self._clock.now()

    def _now(self) -> str:
        return self._clock.now().isoformat(timespec="microseconds")

    def _refusal(self, event: AuditEvent) -> None:
        """Audit a refusal in a transaction of its own (the refused work was rolled back)."""
        with self._units() as uow:
            self._audit(uow, event)
            uow.commit()


class Authenticator(IdentityBase):
    """Issues and checks access tokens."""

    # -- the signing key ----------------------------------------------------------

    def _signing_key(self) -> tuple[str, Ed25519PrivateKey]:
        slot = KeySlot(ACCESS_TOKEN_KIND)
        for attempt in range(3):
            try:
                with self._units() as uow:
                    working = self._keystore.active(uow.keys, slot)
                    uow.commit()  # made on first use: keep it
                break
            except Conflict:  # another worker made it at the same moment: read theirs
                if attempt == 2:
                    raise
        private = signing_key_from_bytes(working.key)
        return str(working.version), private

    def _public_key(self, kid: str) -> Ed25519PublicKey | None:
        known = self._public.get(kid)
        if known is not None or not kid.isdigit() or len(kid) > 9:
            return known
        try:
            with self._units() as uow:
                working = self._keystore.version(uow.keys, KeySlot(ACCESS_TOKEN_KIND), int(kid))
        except NotFound:
            return None
        if working is None:
            return None
        public = signing_key_from_bytes(working.key).public_key()
        with self._lock:
            self._public[kid] = public
        return public

    def _issue(self, principal: Principal, thumbprint: str | None = None) -> IssuedToken:
        kid, key = self._signing_key()
        return sign_access_token(
            principal,
            key=key,
            key_id=kid,
            policy=self.config.policy,
            now=self._clock.now(),
            thumbprint=thumbprint,
        )

    # -- agency clients -----------------------------------------------------------

    def issue_client_token(
        self, assertion: str, *, audiences: Collection[str], client_cert: str | None = None
    ) -> IssuedToken:
        """An access token for the client whose signed assertion this is (RFC 7523 §2.2).

        ClientAuthFailed (OAuth ``invalid_client``) for an unknown or disabled
        client, a bad or replayed assertion, or a missing or wrong bound
        certificate; every refusal is audited with its reason.
        """
        client_id = assertion_client_id(assertion)
        signing = self._signing_key()
        now = self._clock.now()
        reason, client = "assertion_invalid", None
        try:
            with self._units() as uow:
                client = uow.identity.client(client_id)
                if client is None or client.status != ACTIVE:
                    reason = "client_unknown" if client is None else "client_disabled"
                    raise ClientAuthFailed("refused", code="client_assertion_invalid")
                at = now.isoformat(timespec="microseconds")
                keys = live_keys(uow.identity.client_keys(client_id), at)
                claims = verify_assertion(
                    assertion, client_id=client_id, keys=keys, audiences=audiences, now=now
                )
                if client.cert_thumbprint is not None and not _same_certificate(
                    client.cert_thumbprint, client_cert
                ):
                    reason = "certificate_mismatch"
                    raise ClientAuthFailed("refused", code="client_assertion_invalid")
                if not uow.identity.use_assertion(
                    client_id, claims.jti, claims.expires_at, int(now.timestamp())
                ):
                    reason = "assertion_replayed"
                    raise ClientAuthFailed("refused", code="client_assertion_invalid")
                principal = Principal(client_id, Role(client.role), client.agency_id)
                token = sign_access_token(
                    principal,
                    key=signing[1],
                    key_id=signing[0],
                    policy=self.config.policy,
                    now=now,
                    thumbprint=client.cert_thumbprint,
                )
                # Not audited when granted: a token is renewed every few minutes per
                # client, and every request made with it is audited under its agency.
                uow.commit()
                return token
        except ClientAuthFailed:
            self._refusal(_token_refused(client, reason))
            raise ClientAuthFailed(
                "the client assertion was not accepted; sign a fresh one with the registered key",
                code="client_assertion_invalid",
            ) from None

    # -- people -------------------------------------------------------------------

    def sign_in(self, username: str, password: str) -> IssuedToken:
        """An access token for a person whose password matches; one generic refusal otherwise.

        The refusal is audited with the account only when it exists, never
        with the name typed (it may be a password typed in the wrong box).
        """
        with self._units() as uow:
            account = uow.identity.account(username) if len(username) <= 64 else None
        stored = account.password_hash if account is not None else DUMMY_HASH
        matches = verify_password(stored, password)
        if account is None or not matches or account.status != ACTIVE:
            reason = (
                "account_unknown"
                if account is None
                else ("password_wrong" if not matches else "account_disabled")
            )
            self._refusal(
                AuditEvent(
                    actor=account.username if account is not None else "anonymous",
                    action="sign_in",
                    outcome="refused",
                    reason_code=reason,
                    detail={} if account is None else {"account": account.username},
                )
            )
            raise _signed_in_failed()
        token = self._issue(account.principal())
        with self._units() as uow:
            self._audit(
                uow,
                AuditEvent(
                    actor=account.username,
                    action="sign_in",
                    outcome="permitted",
                    detail={"account": account.username, "role": account.role},
                ),
            )
            uow.commit()
        return token

    # -- every request ------------------------------------------------------------

    def authenticate(self, bearer: str, *, client_cert: str | None = None) -> Principal:
        """The principal a bearer token proves, checked against its client or account now.

        AuthenticationFailed (``unauthenticated``) for a bad, expired or foreign
        token, a disabled client or account, or a certificate-bound token
        presented without the same certificate.
        """
        oidc = self.config.oidc
        if oidc is not None and issuer_of(bearer) == oidc.issuer:
            return oidc.principal(bearer, now=self._clock.now())
        claims = verify_access_token(
            bearer, public_key=self._public_key, policy=self.config.policy, now=self._clock.now()
        )
        principal = claims.principal
        if claims.thumbprint is not None and not _same_certificate(claims.thumbprint, client_cert):
            raise _not_authenticated()
        with self._units() as uow:
            if principal.role is Role.SYSTEM:
                client = uow.identity.client(principal.subject)
                enabled = (
                    client is not None
                    and client.status == ACTIVE
                    and client.agency_id == principal.agency
                    and client.cert_thumbprint == claims.thumbprint
                )
            else:
                account = uow.identity.account(principal.subject)
                enabled = (
                    account is not None
                    and account.status == ACTIVE
                    and account.role == principal.role.value
                    and account.agency_id == principal.agency
                )
        if not enabled:
            raise _not_authenticated()
        return principal


def _same_certificate(expected: str, presented: str | None) -> bool:
    if presented is None:
        return False
    try:
        return normalise_thumbprint(presented) == expected
    except ValidationError:
        return False


def _token_refused(client: AgencyClient | None, reason: str) -> AuditEvent:
    # The client id claimed is recorded only when such a client exists.
    return AuditEvent(
        actor=client.agency_id if client is not None else "anonymous",
        action="token_issued",
        outcome="refused",
        reason_code=reason,
        detail={} if client is None else {"client_id": client.client_id},
    )
