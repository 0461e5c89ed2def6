"""What every use case of the broker shares: its keys, storage, clock, register and audit.

``broker.service.Broker`` is assembled from the use cases in ``service_ingest``
and ``service_lookup``, which build on this core.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from agreements.registry import AgreementRegistry
from audit import log as audit_log
from audit.events import AuditEvent, LoggedEntry
from audit.log import LogSigner
from broker.clock import Clock
from broker.errors import Conflict, KeyFileError
from broker.instruments import NO_INSTRUMENTS, Instruments
from broker.interfaces import UnitOfWork, UnitOfWorkFactory
from broker.keys import KeyProvider, KeyRing, signing_key_from_bytes
from broker.keystore import DATA, LINKAGE, LOG_SIGNING, PSEUDONYM, KeySlot, KeyStore
from broker.lifecycle import AgreementBook

DEFAULT_LOG_ORIGIN = "accord.local/audit"
_T = TypeVar("_T")


@dataclass(frozen=True)
class Limits:
    """Input limits the service enforces (the web layer enforces body size)."""

    max_batch_records: int = 10_000
    max_field_length: int = 1024


@dataclass(frozen=True)
class LogSchedule:
    """The audit log's name in its checkpoints and how often they are signed."""

    origin: str = DEFAULT_LOG_ORIGIN
    every_entries: int = 100
    every_seconds: float = 60.0


class BrokerCore:
    """Keys, storage, clock and agreement register, and the helpers every use case needs."""

    def __init__(
        self,
        *,
        keys: KeyProvider,
        units: UnitOfWorkFactory,
        clock: Clock,
        limits: Limits | None = None,
        log: LogSchedule | None = None,
    ) -> None:
        """Check the master key against the database and load the log's signing key.

        Refuses (KeyFileError) a master key other than the one the database was
        written with; a database written before the key store has its keys adopted.
        """
        self._provider = keys
        self._keystore = KeyStore(keys, self._now)
        self._units = units
        self._clock = clock
        self.limits = limits or Limits()
        # Replaced by the app factory when telemetry is configured.
        self.instruments: Instruments = NO_INSTRUMENTS
        self.agreements = AgreementBook(units=units, audit=self._audit, now=self._now)
        self._signer: LogSigner | None = None
        self._signer = _retry_on_conflict(lambda: self._prepare_keys(log or LogSchedule()))

    def ensure_agreement_keys(self) -> None:
        """Create every held agreement's keys now (linkage, data, each party's pseudonym key).

        Several workers start at once: the first creates each key, and the
        others, refused by the key's primary key, read it instead.
        """

        def ensure() -> None:
            with self._units() as uow:
                for agreement in self.agreements.registry(uow):
                    slots = [KeySlot(LINKAGE, agreement.id), KeySlot(DATA, agreement.id)]
                    slots += [KeySlot(PSEUDONYM, agreement.id, p.id) for p in agreement.parties]
                    for slot in slots:
                        self._keystore.ensure(uow.keys, slot)
                uow.commit()

        _retry_on_conflict(ensure)

    def _prepare_keys(self, log: LogSchedule) -> LogSigner:
        with self._units() as uow:
            stored = uow.meta.key_check()
            if stored is not None and stored != self._provider.check_value():
                raise KeyFileError(
                    f"the master key from {self._provider.source} does not match the database; "
                    "restore the master key it was written with"
                )
            if stored is None and uow.meta.has_data():
                raise KeyFileError("database holds records but no key check; restore its key")
            if stored is not None and not uow.keys.all():
                self._adopt_derived_keys(uow)
            seed = self._keystore.active(uow.keys, KeySlot(LOG_SIGNING))
            signer = LogSigner(
                origin=log.origin,
                private_key=signing_key_from_bytes(seed.key),
                every_entries=log.every_entries,
                every_seconds=log.every_seconds,
            )
            if stored is None:
                uow.meta.set_key_check(self._provider.check_value(), self._now())
                audit_log.append(
                    uow.audit,
                    AuditEvent(
                        actor="operator",
                        action="key_operation",
                        outcome="permitted",
                        detail={
                            "operation": "master_key_registered",
                            "source": self._provider.source,
                        },
                    ),
                    at=self._now(),
                    signer=signer,
                )
            uow.commit()
        return signer

    def _adopt_derived_keys(self, uow: UnitOfWork) -> None:
        """Store, wrapped, the keys a database from before the key store was written with."""
        if not isinstance(self._provider, KeyRing):
            raise KeyFileError(
                "this database was written before the key store; start the broker once with "
                "the key file it was written with so that its keys can be adopted"
            )
        ring = self._provider
        owners: set[tuple[str, str, str]] = {(LOG_SIGNING, "", "")}
        for agreement_id in uow.meta.agreements_with_data():
            owners |= {(LINKAGE, agreement_id, ""), (DATA, agreement_id, "")}
        for agreement in self.agreements.registry(uow):
            owners |= {(PSEUDONYM, agreement.id, p.id) for p in agreement.parties}
        legacy_kind = {LOG_SIGNING: "audit-log-signing"}
        for kind, agreement_id, recipient in sorted(owners):
            parts = [p for p in (agreement_id, recipient) if p]
            key = ring.legacy_key(legacy_kind.get(kind, kind), *parts)
            self._keystore.add_version(uow.keys, KeySlot(kind, agreement_id, recipient), key=key)

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

    @property
    def log_signer(self) -> LogSigner:
        """The audit log's checkpoint key and schedule."""
        assert self._signer is not None  # set before any use case can run
        return self._signer

    def _audit(self, uow: UnitOfWork, event: AuditEvent) -> LoggedEntry:
        return audit_log.append(uow.audit, event, at=self._now(), signer=self._signer)

    def _refuse(self, base: AuditEvent, code: str, detail: dict[str, Any]) -> None:
        with self._units() as uow:
            self._audit(uow, with_changes(base, outcome="refused", reason_code=code, detail=detail))
            uow.commit()
        self.instruments.refused(code, action=base.action)


def _retry_on_conflict(action: Callable[[], _T], attempts: int = 3) -> _T:
    """Run ``action`` again when another worker won a race to create the same row."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Conflict:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def warning_codes(warnings: Sequence[str]) -> list[str]:
    """The stable code before the colon of each warning, for the audit entry."""
    return sorted({w.split(":", 1)[0] for w in warnings})


def with_changes(event: AuditEvent, **changes: Any) -> AuditEvent:
    """The event with some of its fields changed."""
    values = {**event.__dict__, **changes}
    return AuditEvent(**values)
