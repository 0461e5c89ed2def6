"""The broker's use cases: ingest a batch, look up a subject, read and verify the audit log.

This is the domain core's front door. It knows nothing of HTTP or SQL: the web
layer calls it, and storage reaches it as a unit-of-work factory. Every action
appends its audit entry in the same transaction; a refusal is audited in a
transaction of its own, after the refused work was rolled back.
"""

from __future__ import annotations

from audit.events import LoggedEntry
from audit.verify import Verified
from broker.audit_search import AuditSearch
from broker.auditing import AuditTrail
from broker.clock import Clock
from broker.errors import Location, ValidationError
from broker.identity import IdentityConfig
from broker.identity_admin import Identity
from broker.interfaces import UnitOfWorkFactory
from broker.keys import KeyProvider
from broker.principal import Principal
from broker.service_aggregate import AggregateResult, AggregateUseCases
from broker.service_core import DEFAULT_LOG_ORIGIN, BrokerCore, Limits, LogSchedule
from broker.service_ingest import IngestResult, IngestUseCases
from broker.service_keys import KeyUseCases, RekeyResult
from broker.service_linkage import LinkageUseCases
from broker.service_lookup import Holding, LookupResult, LookupUseCases, ReleasedRecord
from broker.service_notify import NotificationUseCases

__all__ = [
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
]

MAX_AUDIT_PAGE = 1000


class Broker(
    IngestUseCases,
    LookupUseCases,
    KeyUseCases,
    NotificationUseCases,
    AggregateUseCases,
    LinkageUseCases,
):
    """The service object the app factory builds once and the routes call."""

    def __init__(
        self,
        *,
        keys: KeyProvider,
        units: UnitOfWorkFactory,
        clock: Clock,
        limits: Limits | None = None,
        log: LogSchedule | None = None,
        identity: IdentityConfig | None = None,
    ) -> None:
        super().__init__(keys=keys, units=units, clock=clock, limits=limits, log=log)
        self.identity = Identity(
            units=units,
            keystore=self._keystore,
            clock=clock,
            audit=self._audit,
            is_party=lambda agency: any(a.party(agency) for a in self.registry),
            config=identity,
        )
        self.audit = AuditTrail(
            units=units, signer=self.log_signer, audit=self._audit, now=self._now
        )
        self.audit_search = AuditSearch(
            units=units,
            audit=self._audit,
            registry=lambda: self.registry,
            subjects_for=self.subjects_for_identifiers,
        )

    # -- identity -------------------------------------------------------------

    def authenticate(self, bearer: str, *, client_cert: str | None = None) -> Principal:
        """The principal a bearer token proves (see ``broker.identity``).

        ``client_cert`` is the client certificate's thumbprint as the TLS proxy
        reported it; a certificate-bound token needs the same one.
        """
        return self.identity.authenticate(bearer, client_cert=client_cert)

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
