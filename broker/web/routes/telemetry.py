"""What the telemetry exporters have delivered and dropped, for operators and probes."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from broker.telemetry import Telemetry

router = APIRouter(tags=["health"])


class ExportOut(BaseModel):
    """One signal's exporter and its counts since the process started."""

    exporter: Literal["none", "console", "otlp"]
    exported: int = Field(description="Spans (traces) or collections (metrics) delivered")
    dropped: int = Field(description="Spans or collections that failed or found the queue full")


class TelemetryOut(BaseModel):
    """Export counts per signal; a rising ``dropped`` means the collector is not answering."""

    traces: ExportOut
    metrics: ExportOut


def get_telemetry(request: Request) -> Telemetry:
    """The telemetry the app factory installed."""
    telemetry: Telemetry = request.app.state.telemetry
    return telemetry


@router.get("/health/telemetry", response_model=TelemetryOut)
def telemetry_health(telemetry: Annotated[Telemetry, Depends(get_telemetry)]) -> TelemetryOut:
    """Always 200: telemetry that cannot be delivered never makes the broker unready."""
    status = telemetry.export_status()
    return TelemetryOut(
        traces=ExportOut(**vars(status["traces"])),
        metrics=ExportOut(**vars(status["metrics"])),
    )
