"""Gauges monitoring reads at each metrics collection: checkpoint age and job queue depth."""

from __future__ import annotations

import logging
from collections.abc import Callable

from broker.jobs import JobRunner
from broker.service import Broker
from broker.telemetry import Telemetry

log = logging.getLogger("broker.web")


def _safe(read: Callable[[], float], what: str) -> Callable[[], float]:
    """A reading that never raises: a gauge read fails quietly (by type) rather than the export."""

    def reading() -> float:
        try:
            return read()
        except Exception as exc:  # a metrics thread must never die of a reading
            log.warning("gauge %s could not be read: %s", what, type(exc).__name__)
            return float("nan")

    return reading


def watch_broker(telemetry: Telemetry, broker: Broker, jobs: JobRunner | None) -> None:
    """Register the broker's gauges; they read the database only when metrics are collected."""
    telemetry.watch(
        "accord.checkpoint.age",
        _safe(broker.audit.checkpoint_age_seconds, "accord.checkpoint.age"),
        unit="s",
        description="How long audit entries have waited for a signed checkpoint to cover them",
    )
    if jobs is not None:
        telemetry.watch(
            "accord.jobs.overdue",
            _safe(lambda: float(jobs.overdue()), "accord.jobs.overdue"),
            unit="{job}",
            description="Background jobs due and not yet claimed by any worker",
        )
