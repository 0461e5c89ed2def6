"""Identity administration: agency clients and their keys, people's accounts; each change audited.

Used by the ``broker agencies`` and ``broker users`` commands. The actor of
every entry is ``operator``: these run on the broker's host, by whoever runs
the broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from audit.events import Action, AuditEvent
from broker.client_auth import (
    ACTIVE,
    AgencyClient,
    ClientKey,
    key_algorithm,
    new_client_id,
    new_key_id,
    normalise_thumbprint,
)
from broker.errors import Conflict, NotFound, ValidationError
from broker.identity import Authenticator, IdentityBase
from broker.interfaces import UnitOfWork
from broker.people import PersonAccount, check_password, check_role, check_username, hash_password
from broker.principal import Role

#: The longest a replaced key may stay valid beside its successor.
MAX_GRACE_SECONDS = 30 * 86_400
_REASON_MAX = 500


@dataclass(frozen=True)
class RegisteredClient:
    """What registering a client or rotating its key made."""

    client_id: str
    agency_id: str
    key_id: str
    alg: str


class IdentityAdmin(IdentityBase):
    """Registers and disables clients and accounts."""

    def _record(self, uow: UnitOfWork, action: Action, detail: dict[str, Any]) -> None:
        self._audit(uow, AuditEvent("operator", action, "permitted", detail=detail))

    # -- agency clients -----------------------------------------------------------

    def register_client(
        self, agency_id: str, public_key_pem: str, *, cert_thumbprint: str | None = None
    ) -> RegisteredClient:
        """Register an agency's system with its public key (Ed25519 or ECDSA P-256, PEM).

        The agency must be a party to a loaded agreement; a certificate thumbprint
        needs ``BROKER_CLIENT_CERT_HEADER``. Returns the new client id.
        """
        if not self._is_party(agency_id):
            raise NotFound(f"agency '{agency_id}' is not a party to any loaded agreement")
        alg = key_algorithm(public_key_pem)
        thumbprint = None if cert_thumbprint is None else normalise_thumbprint(cert_thumbprint)
        if thumbprint is not None and self.config.cert_header is None:
            # Without the proxy's header no request could ever show the certificate.
            raise ValidationError(
                "a certificate-bound client needs BROKER_CLIENT_CERT_HEADER set to the header "
                "the TLS proxy fills with the client certificate's SHA-256",
                code="cert_header_unset",
            )
        now = self._now()
        client = AgencyClient(
            client_id=new_client_id(agency_id),
            agency_id=agency_id,
            role=Role.SYSTEM.value,
            status=ACTIVE,
            cert_thumbprint=thumbprint,
            created_at=now,
        )
        key = ClientKey(key_id=new_key_id(), alg=alg, public_key_pem=public_key_pem, created_at=now)
        with self._units() as uow:
            uow.identity.add_client(client)
            uow.identity.add_client_key(client.client_id, key)
            self._record(
                uow,
                "client_registered",
                {
                    "agency": agency_id,
                    "client_id": client.client_id,
                    "key_id": key.key_id,
                    "alg": alg,
                    "certificate_bound": thumbprint is not None,
                },
            )
            uow.commit()
        return RegisteredClient(client.client_id, agency_id, key.key_id, alg)

    def rotate_client_key(
        self, client_id: str, public_key_pem: str, *, grace_seconds: int = 0
    ) -> RegisteredClient:
        """Register a new key for a client; its old keys stay valid ``grace_seconds`` more."""
        if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
            raise ValidationError(
                f"the grace period is 0 to {MAX_GRACE_SECONDS} seconds", code="grace_invalid"
            )
        alg = key_algorithm(public_key_pem)
        moment = self._clock.now()
        now = moment.isoformat(timespec="microseconds")
        ends = (moment + timedelta(seconds=grace_seconds)).isoformat(timespec="microseconds")
        key = ClientKey(key_id=new_key_id(), alg=alg, public_key_pem=public_key_pem, created_at=now)
        with self._units() as uow:
            client = self._live_client(uow, client_id)
            ended = uow.identity.end_client_keys(client_id, ends)
            uow.identity.add_client_key(client_id, key)
            self._record(
                uow,
                "client_key_rotated",
                {
                    "agency": client.agency_id,
                    "client_id": client_id,
                    "key_id": key.key_id,
                    "alg": alg,
                    "grace_seconds": grace_seconds,
                    "keys_ended": ended,
                },
            )
            uow.commit()
        return RegisteredClient(client_id, client.agency_id, key.key_id, alg)

    def disable_client(self, client_id: str, *, reason: str) -> AgencyClient:
        """Disable a client: no new tokens, and its live tokens are refused from now on."""
        reason = _reason(reason)
        with self._units() as uow:
            client = self._live_client(uow, client_id)
            uow.identity.disable_client(client_id, self._now())
            self._record(
                uow,
                "client_disabled",
                {"agency": client.agency_id, "client_id": client_id, "reason": reason},
            )
            uow.commit()
        return client

    def clients(self) -> list[AgencyClient]:
        """Every registered client, by agency."""
        with self._units() as uow:
            return uow.identity.clients()

    def _live_client(self, uow: UnitOfWork, client_id: str) -> AgencyClient:
        client = uow.identity.client(client_id)
        if client is None:
            raise NotFound("no client has that id; see 'broker agencies list'")
        if client.status != ACTIVE:
            raise Conflict("that client is disabled; register a new one", code="client_disabled")
        return client

    # -- people -------------------------------------------------------------------

    def add_account(
        self, username: str, *, role: str, agency_id: str | None, password: str
    ) -> PersonAccount:
        """Create a person's account (dpo or ig_lead of one agency, or admin of none)."""
        check_username(username)
        parsed = check_role(role, agency_id)
        if agency_id is not None and not self._is_party(agency_id):
            raise NotFound(f"agency '{agency_id}' is not a party to any loaded agreement")
        check_password(password)
        account = PersonAccount(
            username=username,
            role=parsed.value,
            agency_id=agency_id,
            password_hash=hash_password(password),
            status=ACTIVE,
            created_at=self._now(),
        )
        with self._units() as uow:
            if uow.identity.account(username) is not None:
                raise Conflict("an account with that user name exists", code="account_exists")
            uow.identity.add_account(account)
            self._record(
                uow,
                "account_created",
                {"account": username, "role": parsed.value, "agency": agency_id},
            )
            uow.commit()
        return account

    def set_password(self, username: str, password: str) -> None:
        """Replace an account's password (tokens already issued stay valid until they expire)."""
        check_password(password)
        hashed = hash_password(password)
        with self._units() as uow:
            if not uow.identity.set_password(username, hashed):
                raise NotFound("no account has that user name; see 'broker users list'")
            self._record(uow, "account_password_set", {"account": username})
            uow.commit()

    def disable_account(self, username: str, *, reason: str) -> None:
        """Disable an account: no sign-in, and its live tokens are refused from now on."""
        reason = _reason(reason)
        with self._units() as uow:
            account = uow.identity.account(username)
            if account is None:
                raise NotFound("no account has that user name; see 'broker users list'")
            if not uow.identity.disable_account(username, self._now()):
                raise Conflict("that account is already disabled", code="account_disabled")
            self._record(uow, "account_disabled", {"account": username, "reason": reason})
            uow.commit()

    def accounts(self) -> list[PersonAccount]:
        """Every account, by user name."""
        with self._units() as uow:
            return uow.identity.accounts()


def _reason(reason: str) -> str:
    cleaned = " ".join(reason.split())
    if not cleaned or len(cleaned) > _REASON_MAX:
        raise ValidationError(
            f"give a reason of 1 to {_REASON_MAX} characters", code="reason_invalid"
        )
    return cleaned


class Identity(Authenticator, IdentityAdmin):
    """Authentication and its administration: what ``Broker.identity`` is."""
