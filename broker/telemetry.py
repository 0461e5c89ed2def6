"""OpenTelemetry traces and metrics, configured from the standard ``OTEL_*`` variables.

``Telemetry.from_environment()`` reads:

- ``OTEL_SDK_DISABLED=true``: no exporter at all;
- ``OTEL_TRACES_EXPORTER`` and ``OTEL_METRICS_EXPORTER``: ``none``, ``console`` or
  ``otlp``. Unset means ``none`` (the SDK's own default is ``otlp``; the embedded
  broker must not reach for a collector nobody started);
- ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT``,
  ``..._HEADERS``, ``..._TIMEOUT``, ``..._CERTIFICATE``: read by the OTLP exporters
  (HTTP/protobuf only, so ``OTEL_EXPORTER_OTLP_PROTOCOL`` may only be ``http/protobuf``);
- ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` (default service name
  ``accord-broker``), ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*`` and
  ``OTEL_METRIC_EXPORT_INTERVAL``: read by the SDK itself.

Exports run on the SDK's background threads. A collector that does not answer
costs telemetry, never service: a failed export is counted as dropped (spans, or
metric exports) in ``export_status()``, which ``/health/telemetry`` reports.

Nothing personal is recorded: server spans carry the route template, method and
status, never the path's values, the query string, headers or bodies; metric
labels pass ``_label``, which lets through only names (see ``broker.instruments``).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind, Status, StatusCode

import broker
from broker.errors import ConfigError
from broker.instruments import Instruments, Stage

ExporterName = Literal["none", "console", "otlp"]
_EXPORTERS: tuple[ExporterName, ...] = ("none", "console", "otlp")
DEFAULT_SERVICE_NAME = "accord-broker"
_SCOPE = "accord.broker"

# The SDK's BatchSpanProcessor default; spans beyond it are refused (and counted) by
# _AdmittingSpanProcessor before the SDK's own queue would drop them without a count.
_DEFAULT_QUEUE_SIZE = 2048

# Semantic-conventions bucket advice for http.server.request.duration, in seconds.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)

# A name has a letter and no spaces or capitals, so dates, NHS numbers, postcodes and
# "Amira Okafor" fail it; agreement, dataset and purpose ids and reason codes pass.
_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9][a-z0-9_.\-]{0,63}$")


def _label(value: str) -> str:
    """The value if it looks like a configured name or code, else ``"other"``."""
    return value if _NAME.match(value) else "other"


def _method(value: str) -> str:
    """The method, or ``_OTHER`` (as the HTTP conventions say) to keep cardinality bounded."""
    return value if value in _KNOWN_METHODS else "_OTHER"


# -- counting what is exported and what is dropped ----------------------------------


@dataclass(frozen=True)
class ExportCounts:
    """What one signal's exporter did: spans (traces) or collections (metrics)."""

    exporter: ExporterName
    exported: int
    dropped: int


class ExportLedger:
    """Thread-safe counts of items handed to an exporter, exported and dropped."""

    def __init__(self, exporter: ExporterName) -> None:
        self.exporter = exporter
        self._lock = threading.Lock()
        self._in_flight = 0
        self._exported = 0
        self._dropped = 0

    def admit(self, capacity: int) -> bool:
        """Take one item for export unless ``capacity`` are already waiting; a refusal is a drop."""
        with self._lock:
            if self._in_flight >= capacity:
                self._dropped += 1
                return False
            self._in_flight += 1
            return True

    def settle(self, count: int, *, ok: bool, admitted: bool = True) -> None:
        """Record the outcome of exporting ``count`` items."""
        with self._lock:
            if admitted:
                self._in_flight = max(0, self._in_flight - count)
            if ok:
                self._exported += count
            else:
                self._dropped += count

    def counts(self) -> ExportCounts:
        """The counts so far."""
        with self._lock:
            return ExportCounts(self.exporter, self._exported, self._dropped)


class _AccountedSpanExporter(SpanExporter):
    """Passes spans on and counts each batch as exported or dropped; never raises."""

    def __init__(self, inner: SpanExporter, ledger: ExportLedger) -> None:
        self._inner = inner
        self._ledger = ledger
        self._abandoned = False

    def abandon(self) -> None:
        """Stop the inner exporter now, so a retry in progress ends and what is left is dropped."""
        if not self._abandoned:
            self._abandoned = True
            self._inner.shutdown()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._abandoned:
            self._ledger.settle(len(spans), ok=False)
            return SpanExportResult.FAILURE
        # An exporter's failure is counted here and must not reach the SDK's thread.
        try:
            result = self._inner.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        self._ledger.settle(len(spans), ok=result is SpanExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self.abandon()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _AdmittingSpanProcessor(SpanProcessor):
    """Hands ended spans to a batch processor only while its queue has room."""

    def __init__(self, inner: SpanProcessor, ledger: ExportLedger, capacity: int) -> None:
        self._inner = inner
        self._ledger = ledger
        self._capacity = capacity

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        # Unsampled spans are never exported, so they neither take room nor count as dropped.
        if span.context is None or not span.context.trace_flags.sampled:
            return
        if self._ledger.admit(self._capacity):
            self._inner.on_end(span)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _AccountedMetricExporter(MetricExporter):
    """Passes collections on and counts each export as exported or dropped; never raises."""

    def __init__(self, inner: MetricExporter, ledger: ExportLedger) -> None:
        # The SDK's own readers copy these private preferences the same way.
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._ledger = ledger

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:  # counted, as for spans
            result = MetricExportResult.FAILURE
        self._ledger.settle(1, ok=result is MetricExportResult.SUCCESS, admitted=False)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


# -- configuration from the environment ----------------------------------------------


def _exporter_choice(environ: Mapping[str, str], variable: str) -> ExporterName:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return "none"
    raw = environ.get(variable, "").strip().lower() or "none"
    for choice in _EXPORTERS:
        if raw == choice:
            return choice
    raise ConfigError(f"{variable} must be none, console or otlp (one exporter), not '{raw}'")


def _check_protocol(environ: Mapping[str, str], signal: str) -> None:
    for variable in (f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = environ.get(variable, "").strip()
        if value and value != "http/protobuf":
            raise ConfigError(f"{variable} must be http/protobuf (the only OTLP transport shipped)")


def _resource(environ: Mapping[str, str]) -> Resource:
    attributes: dict[str, str] = {SERVICE_VERSION: broker.__version__}
    named = environ.get("OTEL_SERVICE_NAME") or "service.name=" in environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    if not named:
        attributes[SERVICE_NAME] = DEFAULT_SERVICE_NAME
    return Resource.create(attributes)


def _span_exporter(choice: ExporterName) -> SpanExporter:
    if choice == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    return OTLPSpanExporter()


def _metric_exporter(choice: ExporterName) -> MetricExporter:
    if choice == "console":
        return ConsoleMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # noqa: PLC0415
        OTLPMetricExporter,
    )

    return OTLPMetricExporter()


def _queue_size(environ: Mapping[str, str]) -> int:
    raw = environ.get("OTEL_BSP_MAX_QUEUE_SIZE", "").strip()
    if not raw:
        return _DEFAULT_QUEUE_SIZE
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError("OTEL_BSP_MAX_QUEUE_SIZE must be a positive whole number")
    return int(raw)


# -- the telemetry object --------------------------------------------------------------


class Telemetry:
    """The broker's tracer and meter, its HTTP and domain instruments, and export counts.

    Implements ``broker.instruments.Instruments``. Build one per process with
    ``from_environment()``; tests pass their own span processors and metric
    readers (the SDK's in-memory ones). Providers are not installed globally,
    so several can live side by side; call ``shutdown()`` once at exit.
    """

    def __init__(
        self,
        *,
        span_processors: Sequence[SpanProcessor] = (),
        metric_readers: Sequence[MetricReader] = (),
        resource: Resource | None = None,
        traces: ExportLedger | None = None,
        metrics: ExportLedger | None = None,
        span_exporters: Sequence[_AccountedSpanExporter] = (),
    ) -> None:
        resource = resource or _resource(os.environ)
        self._span_exporters = tuple(span_exporters)
        # No exit hooks: whoever builds a Telemetry shuts it down (the app's lifespan does),
        # and tests build hundreds that an exit hook would keep alive.
        self.tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        for processor in span_processors:
            self.tracer_provider.add_span_processor(processor)
        self.meter_provider = MeterProvider(
            resource=resource, metric_readers=list(metric_readers), shutdown_on_exit=False
        )
        self._traces = traces or ExportLedger("none")
        self._metrics = metrics or ExportLedger("none")
        self.tracer = self.tracer_provider.get_tracer(_SCOPE, broker.__version__)
        meter = self.meter_provider.get_meter(_SCOPE, broker.__version__)
        self.meter = meter

        self._request_duration = meter.create_histogram(
            "http.server.request.duration",
            unit="s",
            description="HTTP requests served, by route template, method and status",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self._stage_duration = meter.create_histogram(
            "accord.stage.duration",
            unit="s",
            description="Time spent in one pipeline stage",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self._ingested = meter.create_counter(
            "accord.records.ingested", unit="{record}", description="Records stored"
        )
        self._links = meter.create_counter(
            "accord.links.made", unit="{record}", description="Records linked to a known subject"
        )
        self._releases = meter.create_counter(
            "accord.releases", unit="{release}", description="Lookups that released fields"
        )
        self._refusals = meter.create_counter(
            "accord.refusals", unit="{refusal}", description="Refusals, by reason code"
        )
        meter.create_observable_counter(
            "accord.telemetry.dropped",
            callbacks=[self._observe_dropped],
            unit="{item}",
            description="Spans and metric exports the exporters failed to deliver",
        )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Telemetry:
        """Exporters as the standard ``OTEL_*`` variables say; ``ConfigError`` if one is wrong."""
        environ = os.environ if environ is None else environ
        traces_choice = _exporter_choice(environ, "OTEL_TRACES_EXPORTER")
        metrics_choice = _exporter_choice(environ, "OTEL_METRICS_EXPORTER")
        if traces_choice == "otlp":
            _check_protocol(environ, "TRACES")
        if metrics_choice == "otlp":
            _check_protocol(environ, "METRICS")
        traces, metrics = ExportLedger(traces_choice), ExportLedger(metrics_choice)
        processors: list[SpanProcessor] = []
        exporters: list[_AccountedSpanExporter] = []
        if traces_choice != "none":
            queue_size = _queue_size(environ)
            exporter = _AccountedSpanExporter(_span_exporter(traces_choice), traces)
            # BatchSpanProcessor reads the other OTEL_BSP_* variables itself.
            batch = BatchSpanProcessor(exporter, max_queue_size=queue_size)
            processors.append(_AdmittingSpanProcessor(batch, traces, queue_size))
            exporters.append(exporter)
        readers: list[MetricReader] = []
        if metrics_choice != "none":
            exporter_m = _AccountedMetricExporter(_metric_exporter(metrics_choice), metrics)
            readers.append(PeriodicExportingMetricReader(exporter_m))
        return cls(
            span_processors=processors,
            metric_readers=readers,
            resource=_resource(environ),
            traces=traces,
            metrics=metrics,
            span_exporters=exporters,
        )

    # -- HTTP ---------------------------------------------------------------------

    def server_span(
        self, method: str, parent: Context | None
    ) -> AbstractContextManager[trace.Span]:
        """The current span for one HTTP request, named by its method until the route is known.

        Exceptions are neither recorded nor turned into a status here: their
        messages may hold data. ``finish_request`` names and labels the span.
        """
        cm: AbstractContextManager[trace.Span] = self.tracer.start_as_current_span(
            _method(method),
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": _method(method)},
            record_exception=False,
            set_status_on_exception=False,
        )
        return cm

    def finish_request(
        self,
        span: trace.Span,
        *,
        method: str,
        route: str | None,
        status: int,
        seconds: float,
        error_type: str | None = None,
    ) -> None:
        """Label the request's span and record its duration.

        ``route`` must be the route's template (``/v1/agreements/{agreement_id}/lookups``),
        never the path that was asked for; ``None`` when no route matched.
        """
        method = _method(method)
        attributes: dict[str, str | int] = {
            "http.request.method": method,
            "http.response.status_code": status,
        }
        if route is not None:
            attributes["http.route"] = route
        if status >= 500:
            error_type = error_type or str(status)
        if error_type is not None:
            attributes["error.type"] = error_type
        self._request_duration.record(seconds, attributes)
        span.update_name(f"{method} {route}" if route else method)
        span.set_attributes(attributes)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))

    # -- the domain's instruments (broker.instruments.Instruments) ----------------

    @contextmanager
    def stage(self, name: Stage) -> Iterator[None]:
        """Time and trace one pipeline stage as a child of the current span."""
        stage = _label(name)
        started = perf_counter()
        with self.tracer.start_as_current_span(
            f"accord.{stage}",
            attributes={"accord.stage": stage},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield
            except BaseException as exc:
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR))
                raise
            finally:
                self._stage_duration.record(perf_counter() - started, {"accord.stage": stage})

    def records_ingested(self, count: int, *, agreement: str, dataset: str) -> None:
        """Records stored from one batch."""
        self._ingested.add(
            count, {"accord.agreement": _label(agreement), "accord.dataset": _label(dataset)}
        )

    def links_made(self, count: int, *, agreement: str, rule: str) -> None:
        """Records joined to a known subject, by match rule."""
        self._links.add(count, {"accord.agreement": _label(agreement), "accord.rule": _label(rule)})

    def released(self, *, agreement: str, purpose: str) -> None:
        """One lookup that released fields."""
        self._releases.add(
            1, {"accord.agreement": _label(agreement), "accord.purpose": _label(purpose)}
        )

    def refused(self, code: str, *, action: str) -> None:
        """One refusal by reason code."""
        self._refusals.add(1, {"accord.reason": _label(code), "accord.action": _label(action)})

    def watch(
        self, name: str, read: Callable[[], float], *, unit: str = "", description: str = ""
    ) -> None:
        """A gauge read at each collection (queue depth, checkpoint age); ``name`` is ``accord.*``.

        ``read`` runs on the metrics thread and must be cheap and never raise.
        """
        if not name.startswith("accord.") or _label(name) != name:
            raise ValueError(f"gauge name must be accord.<name>, not {name!r}")

        def observe(_options: CallbackOptions) -> list[Observation]:
            return [Observation(read())]

        self.meter.create_observable_gauge(
            name, callbacks=[observe], unit=unit, description=description
        )

    # -- export health and lifetime -----------------------------------------------

    def _observe_dropped(self, _options: CallbackOptions) -> list[Observation]:
        return [
            Observation(self._traces.counts().dropped, {"accord.signal": "traces"}),
            Observation(self._metrics.counts().dropped, {"accord.signal": "metrics"}),
        ]

    def export_status(self) -> dict[str, ExportCounts]:
        """Per signal, the exporter in use and how many items it exported and dropped."""
        return {"traces": self._traces.counts(), "metrics": self._metrics.counts()}

    def force_flush(self, timeout_seconds: float = 5.0) -> None:
        """Export what is waiting, giving up after the timeout (for tests and shutdown)."""
        millis = int(timeout_seconds * 1000)
        self.tracer_provider.force_flush(millis)
        self.meter_provider.force_flush(millis)

    def shutdown(self, timeout_seconds: float = 3.0) -> None:
        """Flush and stop the exporters, waiting at most about twice the timeout.

        The SDK's span shutdown takes no timeout and retries an unanswered
        collector for ``OTEL_EXPORTER_OTLP_TIMEOUT``; past our timeout the
        exporters are abandoned, so what is left counts as dropped.
        """
        stopping = threading.Thread(
            target=self.tracer_provider.shutdown, name="accord-telemetry-shutdown", daemon=True
        )
        stopping.start()
        stopping.join(timeout_seconds)
        if stopping.is_alive():
            for exporter in self._span_exporters:
                exporter.abandon()
            stopping.join(1.0)
        self.meter_provider.shutdown(timeout_millis=timeout_seconds * 1000)


if TYPE_CHECKING:
    # mypy proves here that Telemetry satisfies the protocol the domain core calls.
    _satisfies: type[Instruments] = Telemetry
