"""What every use case of the broker shares: its keys, storage, clock, register and audit.

``broker.service.Broker`` is assembled from the use cases in ``service_ingest``
and ``service_lookup``, which build on this core.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from agreements.registry import AgreementRegistry
from audit import log as audit_log
from audit.events import AuditEvent, LoggedEntry
from audit.log import LogSigner
from broker.clock import Clock
from broker.interfaces import UnitOfWork, UnitOfWorkFactory
from broker.keys import KeyRing
from broker.lifecycle import AgreementBook

DEFAULT_LOG_ORIGIN = "accord.local/audit"


@dataclass(frozen=True)
class Limits:
    """Input limits the service enforces (the web layer enforces body size)."""

    max_batch_records: int = 10_000
    max_field_length: int = 1024


class BrokerCore:
    """Keys, storage, clock and agreement register, and the helpers every use case needs."""

    def __init__(
        self,
        *,
        keys: KeyRing,
        units: UnitOfWorkFactory,
        clock: Clock,
        limits: Limits | None = None,
        signer: LogSigner | None = None,
    ) -> None:
        self._keys = keys
        self._units = units
        self._clock = clock
        self.limits = limits or Limits()
        self.agreements = AgreementBook(units=units, audit=self._audit, now=self._now)
        self._signer = signer or LogSigner(
            origin=DEFAULT_LOG_ORIGIN, private_key=keys.log_signing_key()
        )

    @property
    def registry(self) -> AgreementRegistry:
        """The agreement versions held now (a suspension shows at the next call)."""
        return self.agreements.snapshot()

    # -- helpers ------------------------------------------------------------

    def _now(self) -> str:
        return self._clock.now().isoformat(timespec="microseconds")

    def _today(self) -> date:
        return self._clock.now().date()

    def today(self) -> date:
        """Today by the broker's clock, the date every decision is made on."""
        return self._today()

    def _audit(self, uow: UnitOfWork, event: AuditEvent) -> LoggedEntry:
        return audit_log.append(uow.audit, event, at=self._now(), signer=self._signer)

    def _refuse(self, base: AuditEvent, code: str, detail: dict[str, Any]) -> None:
        with self._units() as uow:
            self._audit(uow, with_changes(base, outcome="refused", reason_code=code, detail=detail))
            uow.commit()


def warning_codes(warnings: Sequence[str]) -> list[str]:
    """The stable code before the colon of each warning, for the audit entry."""
    return sorted({w.split(":", 1)[0] for w in warnings})


def with_changes(event: AuditEvent, **changes: Any) -> AuditEvent:
    """The event with some of its fields changed."""
    values = {**event.__dict__, **changes}
    return AuditEvent(**values)
