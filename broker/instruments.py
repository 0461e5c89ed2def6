"""What the domain core reports about its own work, as a protocol free of OpenTelemetry.

The core calls an ``Instruments`` object it was given; ``broker.telemetry``
implements it with OpenTelemetry and ``NO_INSTRUMENTS`` does nothing, so the
core imports no telemetry library and its tests need none.

Every label passed here must be a name from an agreement (agreement, dataset,
purpose, match rule) or a stable code (stage, action, refusal reason), never a
value taken from a record or a request: labels are exported to monitoring
systems that are not cleared to hold personal data. Implementations replace a
label that does not look like a name with ``"other"``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Literal, Protocol

Stage = Literal["validate", "normalise", "tokenise", "link", "store", "decide", "release", "audit"]
"""The pipeline stages a request passes through, each timed and traced."""

STAGES: tuple[Stage, ...] = (
    "validate",
    "normalise",
    "tokenise",
    "link",
    "store",
    "decide",
    "release",
    "audit",
)


class Instruments(Protocol):
    """Counters and timings the domain core reports; see the module docstring for labels."""

    def stage(self, name: Stage) -> AbstractContextManager[None]:
        """Time and trace one pipeline stage: ``with instruments.stage("link"): ...``."""
        ...

    def records_ingested(self, count: int, *, agreement: str, dataset: str) -> None:
        """Records stored from one batch (after validation, so refused batches add nothing)."""
        ...

    def links_made(self, count: int, *, agreement: str, rule: str) -> None:
        """Records joined to an existing subject, by the match rule that joined them."""
        ...

    def released(self, *, agreement: str, purpose: str) -> None:
        """One lookup that released fields to a recipient."""
        ...

    def refused(self, code: str, *, action: str) -> None:
        """One refusal, by its stable reason code and the action refused (ingest, lookup...)."""
        ...


class _NoInstruments:
    """Reports nothing; the default where no telemetry was configured."""

    def stage(self, name: Stage) -> AbstractContextManager[None]:  # noqa: ARG002 - protocol
        return nullcontext()

    def records_ingested(self, count: int, *, agreement: str, dataset: str) -> None:
        pass

    def links_made(self, count: int, *, agreement: str, rule: str) -> None:
        pass

    def released(self, *, agreement: str, purpose: str) -> None:
        pass

    def refused(self, code: str, *, action: str) -> None:
        pass


NO_INSTRUMENTS: Instruments = _NoInstruments()
