"""Rate limits and lookup budgets as use cases: the agreement's limits, applied and audited.

The web layer asks ``admit`` before each limited request; the lookup use case
spends the recipient's daily budget for the purpose inside its own transaction.
Refusals are audited under the action that was refused, with outcome
``refused``: a rate-limit refusal as counts per minute (``broker.rate_limit``
explains the tally), a budget refusal one entry per refused lookup (the rate
limit bounds how many there can be).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, date, datetime
from typing import get_args

from agreements.models import Agreement, LimitKind, Limits
from audit.events import Action, AuditEvent
from broker.errors import NotFound, Refused, StorageError
from broker.interfaces import UnitOfWork
from broker.rate_limit import MICROSECONDS, TALLY_WINDOW_US, Rate, RateLimiter, RefusalReport
from broker.service_core import BrokerCore

log = logging.getLogger("broker.limits")
LIMIT_KINDS: tuple[str, ...] = get_args(LimitKind)
# The audit action a refusal of each kind is recorded under. Notification covers
# subscribing, polling and acknowledging; its refusals are recorded as polls.
_ACTION: dict[str, Action] = {
    "ingest": "ingest",
    "rekey": "rekey",
    "lookup": "lookup",
    "aggregate": "aggregate",
    "notification": "notification_poll",
}
# An agreement the broker does not hold still gets a bucket (so a flood of
# requests naming made-up agreements is limited too), but one shared bucket,
# so that made-up names cannot grow memory.
UNKNOWN_AGREEMENT = "(unknown)"
# How long an agreement's limits are reused before the register is read again.
LIMITS_TTL_SECONDS = 5.0


class LimitUseCases(BrokerCore):
    """Per-agency rate limits and per-purpose lookup budgets, from each agreement's limits."""

    _rate_limiter: RateLimiter | None = None
    _limits_cache: dict[str, tuple[float, Agreement | None]]

    @property
    def rate_limiter(self) -> RateLimiter:
        """This process's token buckets (one worker's share of each limit)."""
        if self._rate_limiter is None:
            self.configure_rate_limits(workers=1)
        assert self._rate_limiter is not None
        return self._rate_limiter

    def configure_rate_limits(self, *, workers: int) -> None:
        """Start fresh buckets; ``workers`` processes share each agreement's limits."""
        self._rate_limiter = RateLimiter(self._clock, workers=workers)
        self._limits_cache = {}
        self._limits_lock = threading.Lock()

    def admit(
        self, *, agency: str, agreement_id: str, kind: str, request_id: str | None = None
    ) -> None:
        """Count one request of ``kind``; RateLimited (with ``retry_after``) beyond the limit.

        Refusals are audited in their own transaction, as counts (see the module).
        """
        if kind not in LIMIT_KINDS:
            raise ValueError(f"unknown limit kind {kind!r}")
        limiter = self.rate_limiter
        agreement = self._limited_agreement(agreement_id)
        limits = agreement.effective_limits if agreement is not None else Limits()
        limit = limits.rate(kind)

        def report(reports: list[RefusalReport]) -> None:
            self._audit_rate_refusals(reports, agreement, request_id)

        limiter.admit(
            (agency, agreement.id if agreement is not None else UNKNOWN_AGREEMENT, kind),
            Rate(limit.per_minute, limit.burst),
            report=report,
        )

    def settle_rate_refusals(self, *, final: bool = False) -> int:
        """Audit the totals of refusal windows that have ended; returns how many entries.

        ``final`` (at shutdown) closes every window, ended or not, so no count is lost.
        """
        reports = self.rate_limiter.settle(final=final)
        if not reports:
            return 0
        try:
            self._audit_rate_refusals(reports, None, None)
        except StorageError:
            # Called at shutdown too, when the database may be gone: say what was lost.
            log.warning("rate-limit refusals of %d windows could not be audited", len(reports))
            return 0
        return len(reports)

    def _limited_agreement(self, agreement_id: str) -> Agreement | None:
        """The agreement in force, from a cache refreshed every few seconds; None if unknown."""
        now = time.monotonic()
        with self._limits_lock:
            cached = self._limits_cache.get(agreement_id)
        if cached is not None and now - cached[0] < LIMITS_TTL_SECONDS:
            return cached[1]
        try:
            agreement: Agreement | None = self.registry.get(agreement_id, self._today())
        except NotFound:
            agreement = None
        with self._limits_lock:
            if len(self._limits_cache) > 1000:
                self._limits_cache.clear()
            if agreement is not None:
                self._limits_cache[agreement_id] = (now, agreement)
        return agreement

    def _audit_rate_refusals(
        self, reports: list[RefusalReport], agreement: Agreement | None, request_id: str | None
    ) -> None:
        with self._units() as uow:
            for found in reports:
                agency, agreement_id, kind = found.key
                known = (
                    agreement if agreement is not None and found.key[1] == agreement.id else None
                )
                self._audit(
                    uow,
                    AuditEvent(
                        actor=agency,
                        action=_ACTION[kind],
                        outcome="refused",
                        reason_code="rate_limited",
                        agreement_id=None if agreement_id == UNKNOWN_AGREEMENT else agreement_id,
                        agreement_version=None if known is None else known.version,
                        # The request that opened the window; a total names none.
                        request_id=None if found.final else request_id,
                        detail={
                            "kind": kind,
                            "refused": found.refused,
                            "window_start": _iso(found.window_start),
                            "window_seconds": TALLY_WINDOW_US // MICROSECONDS,
                            "window_closed": found.final,
                        },
                    ),
                )
            uow.commit()
        for found in reports:
            self.instruments.refused("rate_limited", action=_ACTION[found.key[2]])

    # -- lookup budget --------------------------------------------------------

    def _spend_lookup_budget(
        self, uow: UnitOfWork, agreement: Agreement, *, agency: str, purpose: str, on: date
    ) -> tuple[int, int] | None:
        """Count one lookup against today's budget: (used now, allowed), or None when spent.

        The count is written in the caller's transaction, so it commits with the
        lookup's audit entry and is rolled back with it.
        """
        allowed = agreement.effective_limits.lookups_per_day(purpose)
        used = uow.lookup_budget.spend(
            agreement.id, agency=agency, purpose=purpose, day=on.isoformat(), allowed=allowed
        )
        return None if used is None else (used, allowed)

    def _refuse_budget(self, base: AuditEvent, agreement: Agreement, purpose: str) -> Refused:
        allowed = agreement.effective_limits.lookups_per_day(purpose)
        self._refuse(base, "lookup_budget_exhausted", {"budget_per_day": allowed})
        return Refused(
            f"today's lookup budget for this purpose ({allowed} a day) is spent; it renews at "
            "midnight UTC. If your work needs more, ask your DPO to raise the agreement's "
            "lookup budget",
            code="lookup_budget_exhausted",
        )


def _iso(microseconds_since_epoch: int) -> str:
    seconds, micros = divmod(microseconds_since_epoch, MICROSECONDS)
    return (
        datetime.fromtimestamp(seconds, tz=UTC)
        .replace(microsecond=micros)
        .isoformat(timespec="seconds")
    )
