"""Telemetry: exporters chosen by OTEL_* variables, labels that hold only names, counted drops."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from broker.errors import ConfigError
from broker.instruments import NO_INSTRUMENTS, STAGES, Instruments
from broker.telemetry import (
    DEFAULT_SERVICE_NAME,
    ExportLedger,
    Telemetry,
    _AccountedSpanExporter,
    _AdmittingSpanProcessor,
    _label,
)

UNREACHABLE = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def _no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the developer's shell says about OTEL_*, these tests start from nothing."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def recorded() -> Iterator[tuple[Telemetry, InMemorySpanExporter, InMemoryMetricReader]]:
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    telemetry = Telemetry(span_processors=[SimpleSpanProcessor(spans)], metric_readers=[reader])
    yield telemetry, spans, reader
    telemetry.shutdown()


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    if data is None:
        return found
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


# -- configuration ---------------------------------------------------------------------


def test_unset_means_no_exporter_at_all() -> None:
    telemetry = Telemetry.from_environment({})
    status = telemetry.export_status()
    assert status["traces"].exporter == "none"
    assert status["metrics"].exporter == "none"
    telemetry.shutdown()


@pytest.mark.parametrize("choice", ["console", "otlp", "none", " OTLP "])
def test_each_exporter_can_be_chosen(choice: str) -> None:
    telemetry = Telemetry.from_environment(
        {"OTEL_TRACES_EXPORTER": choice, "OTEL_METRICS_EXPORTER": choice}
    )
    assert telemetry.export_status()["traces"].exporter == choice.strip().lower()
    assert telemetry.export_status()["metrics"].exporter == choice.strip().lower()
    telemetry.shutdown(timeout_seconds=0.5)


def test_sdk_disabled_overrides_the_exporters() -> None:
    telemetry = Telemetry.from_environment(
        {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}
    )
    assert telemetry.export_status()["traces"].exporter == "none"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_METRICS_EXPORTER": "otlp,console"}, "OTEL_METRICS_EXPORTER"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_MAX_QUEUE_SIZE": "lots"},
            "OTEL_BSP_MAX_QUEUE_SIZE",
        ),
    ],
)
def test_a_wrong_variable_is_a_config_error_naming_it(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Telemetry.from_environment(environ)


def test_service_name_defaults_to_the_broker_and_yields_to_otel_service_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = Telemetry.from_environment({})
    assert default.tracer_provider.resource.attributes["service.name"] == DEFAULT_SERVICE_NAME
    monkeypatch.setenv("OTEL_SERVICE_NAME", "accord-north")
    named = Telemetry.from_environment()
    assert named.tracer_provider.resource.attributes["service.name"] == "accord-north"


# -- labels ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["sv-early-identification", "school-attendance", "not_permitted", "name_dob", "ingest"],
)
def test_names_and_codes_pass_as_labels(value: str) -> None:
    assert _label(value) == value


@pytest.mark.parametrize(
    "value",
    ["Amira Okafor", "2011-03-14", "9434765919", "NS1 4AB", "ns14ab ", "Okafor", "", "a" * 65],
)
def test_values_that_are_not_names_become_other(value: str) -> None:
    assert _label(value) == "other"


# -- the domain's instruments ----------------------------------------------------------


def test_telemetry_and_the_null_object_both_satisfy_the_protocol(
    recorded: tuple[Telemetry, InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    telemetry, _, _ = recorded
    for instruments in (telemetry, NO_INSTRUMENTS):
        checked: Instruments = instruments
        with checked.stage("link"):
            checked.records_ingested(3, agreement="a-1", dataset="school-attendance")
            checked.links_made(2, agreement="a-1", rule="name_dob")
            checked.released(agreement="a-1", purpose="safeguarding-triage")
            checked.refused("not_permitted", action="lookup")


def test_domain_counters_carry_only_names(
    recorded: tuple[Telemetry, InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    telemetry, _, reader = recorded
    telemetry.records_ingested(3, agreement="sv-early-identification", dataset="school-attendance")
    telemetry.records_ingested(2, agreement="sv-early-identification", dataset="Amira Okafor")
    telemetry.links_made(2, agreement="sv-early-identification", rule="name_dob")
    telemetry.released(agreement="sv-early-identification", purpose="safeguarding-triage")
    telemetry.refused("not_permitted", action="lookup")
    telemetry.refused("not_permitted", action="lookup")
    points = _points(reader)
    ingested = {p.attributes["accord.dataset"]: p.value for p in points["accord.records.ingested"]}
    assert ingested == {"school-attendance": 3, "other": 2}
    assert points["accord.links.made"][0].value == 2
    assert points["accord.releases"][0].attributes["accord.purpose"] == "safeguarding-triage"
    refusals = points["accord.refusals"]
    assert [(dict(p.attributes), p.value) for p in refusals] == [
        ({"accord.reason": "not_permitted", "accord.action": "lookup"}, 2)
    ]


def test_a_stage_is_a_child_span_and_a_timing(
    recorded: tuple[Telemetry, InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    telemetry, spans, reader = recorded
    with telemetry.tracer.start_as_current_span("request") as parent:
        for name in STAGES:
            with telemetry.stage(name):
                pass
        with pytest.raises(KeyError), telemetry.stage("decide"):
            raise KeyError("Amira Okafor")
    finished = {s.name: s for s in spans.get_finished_spans()}
    assert {f"accord.{name}" for name in STAGES} <= set(finished)
    for name in STAGES:
        stage = finished[f"accord.{name}"]
        assert stage.parent is not None
        assert stage.parent.span_id == parent.get_span_context().span_id
    failed = [s for s in spans.get_finished_spans() if s.attributes.get("error.type")]
    assert [s.attributes["error.type"] for s in failed] == ["KeyError"]
    assert not failed[0].events, "exception events would carry the exception's message"
    timed = {
        p.attributes["accord.stage"]: p.count for p in _points(reader)["accord.stage.duration"]
    }
    assert timed["decide"] == 2
    assert set(timed) == set(STAGES)


def test_a_watched_gauge_is_read_at_collection(
    recorded: tuple[Telemetry, InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    telemetry, _, reader = recorded
    depth = [4]
    telemetry.watch("accord.jobs.queue_depth", lambda: depth[0], unit="{job}")
    assert _points(reader)["accord.jobs.queue_depth"][0].value == 4
    depth[0] = 1
    assert _points(reader)["accord.jobs.queue_depth"][0].value == 1
    with pytest.raises(ValueError, match="accord"):
        telemetry.watch("queue_depth", lambda: 0)


# -- counting drops ----------------------------------------------------------------------


class _Failing(SpanExporter):
    def __init__(self, outcome: str) -> None:
        self.outcome = outcome

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:  # noqa: ARG002 - SDK signature
        if self.outcome == "raise":
            raise ConnectionError("collector gone")
        return SpanExportResult.FAILURE if self.outcome == "fail" else SpanExportResult.SUCCESS


@pytest.mark.parametrize(("outcome", "exported", "dropped"), [("ok", 3, 0), ("fail", 0, 3)])
def test_export_outcomes_are_counted(outcome: str, exported: int, dropped: int) -> None:
    ledger = ExportLedger("otlp")
    for _ in range(3):
        assert ledger.admit(10)
    accounted = _AccountedSpanExporter(_Failing(outcome), ledger)
    accounted.export([object()] * 3)  # type: ignore[list-item]
    counts = ledger.counts()
    assert (counts.exported, counts.dropped) == (exported, dropped)


def test_an_exporter_that_raises_is_a_counted_failure() -> None:
    ledger = ExportLedger("otlp")
    accounted = _AccountedSpanExporter(_Failing("raise"), ledger)
    assert accounted.export([object()] * 2) is SpanExportResult.FAILURE  # type: ignore[list-item]
    assert ledger.counts().dropped == 2


def test_spans_beyond_the_queue_are_dropped_and_counted() -> None:
    ledger = ExportLedger("otlp")
    held = InMemorySpanExporter()

    class _Holding(SimpleSpanProcessor):
        """Keeps every span waiting, as a batch processor does while its exporter hangs."""

        def on_end(self, span: ReadableSpan) -> None:
            held.export([span])

    telemetry = Telemetry(span_processors=[_AdmittingSpanProcessor(_Holding(held), ledger, 5)])
    for _ in range(8):
        with telemetry.tracer.start_as_current_span("s"):
            pass
    assert len(held.get_finished_spans()) == 5
    assert ledger.counts().dropped == 3


def test_an_unreachable_collector_costs_telemetry_not_time(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": UNREACHABLE,
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        "OTEL_BSP_SCHEDULE_DELAY": "20",
        "OTEL_METRIC_EXPORT_INTERVAL": "50",
    }.items():
        monkeypatch.setenv(name, value)
    telemetry = Telemetry.from_environment()
    started = time.perf_counter()
    for _ in range(200):
        with telemetry.stage("link"):
            telemetry.records_ingested(1, agreement="a-1", dataset="d-1")
    assert time.perf_counter() - started < 0.5
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status = telemetry.export_status()
        if status["traces"].dropped >= 200 and status["metrics"].dropped >= 1:
            break
        time.sleep(0.05)
    status = telemetry.export_status()
    assert status["traces"].dropped == 200
    assert status["traces"].exported == 0
    assert status["metrics"].dropped >= 1
    started = time.perf_counter()
    telemetry.shutdown(timeout_seconds=1.0)
    assert time.perf_counter() - started < 4.0
