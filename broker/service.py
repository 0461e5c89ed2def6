"""The broker's use cases: ingest a batch, look up a subject, read and verify the audit log.

This is the domain core's front door. It knows nothing of HTTP or SQL: the web
layer calls it, and storage reaches it as a unit-of-work factory. Every action
appends its audit entry in the same transaction; a refusal is audited in a
transaction of its own, after the refused work was rolled back.
"""

from __future__ import annotations

import hashlib
import secrets

from audit.events import AuditEvent, LoggedEntry
from audit.verify import Verified
from broker.audit_search import AuditSearch
from broker.auditing import AuditTrail
from broker.clock import Clock
from broker.errors import (
    AuthenticationFailed,
    Location,
    NotFound,
    Refused,
    ValidationError,
)
from broker.interfaces import UnitOfWorkFactory
from broker.keys import KeyProvider
from broker.service_aggregate import AggregateResult, AggregateUseCases
from broker.service_core import DEFAULT_LOG_ORIGIN, BrokerCore, Limits, LogSchedule
from broker.service_ingest import IngestResult, IngestUseCases
from broker.service_keys import KeyUseCases, RekeyResult
from broker.service_lookup import Holding, LookupResult, LookupUseCases, ReleasedRecord
from broker.service_notify import NotificationUseCases

__all__ = [
    "API_KEY_PREFIX",
    "CREDENTIAL_ROLES",
    "DEFAULT_LOG_ORIGIN",
    "MAX_AUDIT_PAGE",
    "AggregateResult",
    "AggregateUseCases",
    "Broker",
    "BrokerCore",
    "Holding",
    "IngestResult",
    "Limits",
    "LogSchedule",
    "LookupResult",
    "NotificationUseCases",
    "RekeyResult",
    "ReleasedRecord",
    "api_key_digest",
]

API_KEY_PREFIX = "acc_"
CREDENTIAL_ROLES = ("system", "ig_lead")
MAX_AUDIT_PAGE = 1000


def api_key_digest(api_key: str) -> str:
    """The stored form of an API key (keys are 256-bit random, so a plain digest suffices)."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


class Broker(IngestUseCases, LookupUseCases, KeyUseCases, NotificationUseCases, AggregateUseCases):
    """The service object the app factory builds once and the routes call."""

    def __init__(
        self,
        *,
        keys: KeyProvider,
        units: UnitOfWorkFactory,
        clock: Clock,
        limits: Limits | None = None,
        log: LogSchedule | None = None,
    ) -> None:
        super().__init__(keys=keys, units=units, clock=clock, limits=limits, log=log)
        self.audit = AuditTrail(
            units=units, signer=self.log_signer, audit=self._audit, now=self._now
        )
        self.audit_search = AuditSearch(
            units=units,
            audit=self._audit,
            registry=lambda: self.registry,
            subjects_for=self.subjects_for_identifiers,
        )

    # -- credentials ------------------------------------------------------

    def issue_api_key(self, agency_id: str, role: str = "system") -> str:
        """Create an API key for an agency that is a party to a loaded agreement.

        ``role`` is ``system`` (the agency's systems) or ``ig_lead`` (its
        information governance lead, who may only search and report on the audit).
        """
        if role not in CREDENTIAL_ROLES:
            raise ValidationError(
                f"role must be one of {', '.join(CREDENTIAL_ROLES)}", code="role_unknown"
            )
        if not any(a.party(agency_id) for a in self.registry):
            raise NotFound(f"agency '{agency_id}' is not a party to any loaded agreement")
        api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        with self._units() as uow:
            uow.credentials.add(agency_id, api_key_digest(api_key), self._now(), role)
            self._audit(
                uow,
                AuditEvent(
                    actor="operator",
                    action="credential_issued",
                    outcome="permitted",
                    detail={"agency": agency_id, "role": role},
                ),
            )
            uow.commit()
        return api_key

    def revoke_api_keys(self, agency_id: str) -> int:
        """Revoke every API key of an agency at once; returns how many were live."""
        with self._units() as uow:
            revoked = uow.credentials.revoke_all(agency_id, self._now())
            self._audit(
                uow,
                AuditEvent(
                    actor="operator",
                    action="credential_revoked",
                    outcome="permitted",
                    detail={"agency": agency_id, "revoked": revoked},
                ),
            )
            uow.commit()
        return revoked

    def authenticate(self, api_key: str, *, role: str = "system") -> str:
        """The agency an API key belongs to, if the key holds ``role``.

        AuthenticationFailed for an unknown or revoked key; Refused (``role_not_allowed``)
        for a key of another role, so an IG lead's key can never ingest or look up.
        """
        with self._units() as uow:
            found = uow.credentials.agency_for(api_key_digest(api_key))
        if found is None:
            raise AuthenticationFailed("API key not recognised; ask the broker operator for one")
        agency, held = found
        if held != role:
            raise Refused(
                f"this key is an {held.replace('_', ' ')} key; this request needs a "
                f"{role.replace('_', ' ')} key",
                code="role_not_allowed",
            )
        return agency

    # -- audit --------------------------------------------------------------

    def audit_page(self, *, actor: str | None, after: int, limit: int) -> list[LoggedEntry]:
        """Entries after position ``after``; ``actor`` None means every actor's (operator use)."""
        if not 1 <= limit <= MAX_AUDIT_PAGE:
            raise ValidationError(
                f"limit must be between 1 and {MAX_AUDIT_PAGE}",
                code="page_size_invalid",
                location=Location(field="limit"),
            )
        if after < 0:
            raise ValidationError(
                "after must not be negative", code="page_invalid", location=Location(field="after")
            )
        with self._units() as uow:
            return uow.audit.page(actor=actor, after=after, limit=limit)

    def verify_audit(self) -> Verified:
        """Recompute the whole audit log; raises AuditIntegrityError at the first bad entry."""
        return self.audit.verify()

    def audit_head(self) -> tuple[int, str]:
        """The log's size and its Merkle root (hex)."""
        with self._units() as uow:
            return uow.audit.head()
