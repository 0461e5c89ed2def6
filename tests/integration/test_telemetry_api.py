"""Telemetry and logs over HTTP: a span and a measurement per request, and nothing personal in them.

Requests carrying real identifiers go through the app with in-memory span and
metric exporters and a JSON log handler on the root logger. Every span (name,
attributes, events, resource), every metric data point and every log line is
then searched for the identifiers, record ids, payload values, API keys, stored
tokens and key material; none is there.
"""

from __future__ import annotations

import io
import json
import logging
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import text

from broker.bootstrap import Runtime
from broker.log_format import JsonFormatter
from broker.permissions import MATRIX, Entry
from broker.startup import JobOptions, job_runner_for
from broker.telemetry import Telemetry
from broker.web.app import create_app
from tests.auth_helpers import agency_headers, bearer_token, person_headers
from tests.helpers import AGREEMENT, IDENTIFIERS, ed_record, idempotent, school_record

BATCHES = "/v1/agreements/{agreement}/datasets/{dataset}/batches"
BATCH_ROUTE = "/v1/agreements/{agreement_id}/datasets/{dataset_id}/batches"
LOOKUPS = f"/v1/agreements/{AGREEMENT}/lookups"
LOOKUP_ROUTE = "/v1/agreements/{agreement_id}/lookups"

# One young person, as two agencies typed her, plus someone nobody holds.
PERSON = {
    "given_name": "Zephyrine",
    "family_name": "Quillfeather",
    "date_of_birth": "2010-08-27",
    "postcode": "NS7 3QX",
}
STRANGER = {
    "given_name": "Tobias",
    "family_name": "Wrenfield",
    "date_of_birth": "2012-05-06",
    "postcode": "NS9 1ZZ",
}
RECORD_IDS = ["SCH-QX-4471", "ED-QX-9083"]
PAYLOAD_VALUES = ["blunt", "ambulance", "2026-11-19", "67.25"]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: what is traced does not depend on the store."""
    return f"sqlite:///{tmp_path / 'accord.db'}"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def telemetry(spans: InMemorySpanExporter, reader: InMemoryMetricReader) -> Iterator[Telemetry]:
    built = Telemetry(span_processors=[SimpleSpanProcessor(spans)], metric_readers=[reader])
    yield built
    built.shutdown()


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Every record any logger emits at INFO and above, as the JSON lines the server writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(saved)


@pytest.fixture
def app(runtime: Runtime, telemetry: Telemetry) -> FastAPI:
    return create_app(runtime, telemetry=telemetry)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def keys(runtime: Runtime) -> dict[str, str]:
    broker = runtime.broker
    issued = {agency: bearer_token(agency_headers(broker, agency)) for agency in ("school", "ed")}
    issued["social-care"] = bearer_token(agency_headers(broker, "social-care"))
    issued["lead"] = bearer_token(person_headers(broker, "ig_lead", "social-care"))
    return issued


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _server_spans(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]


def _metric_points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource_metrics in data.resource_metrics
        for scope in resource_metrics.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def test_each_request_is_one_server_span_named_by_its_route_template(
    client: TestClient, spans: InMemorySpanExporter, keys: dict[str, str]
) -> None:
    client.get("/health")
    path = BATCHES.format(agreement=AGREEMENT, dataset="school-attendance")
    client.post(
        path,
        json={"records": [school_record("SCH-1")]},
        headers=idempotent(_bearer(keys["school"])),
    )
    client.get("/v1/agreements/sv-early-identification/versions/99?page=2")
    client.get("/no/such/place?nhs_number=9434765919")
    served = _server_spans(spans)
    assert [s.name for s in served] == [
        "GET /health",
        f"POST {BATCH_ROUTE}",
        "GET /v1/agreements/{agreement_id}/versions/{version}",
        "GET",
    ]
    health, batch, version, unknown = (dict(s.attributes or {}) for s in served)
    assert health == {
        "http.request.method": "GET",
        "http.route": "/health",
        "http.response.status_code": 200,
    }
    assert batch["http.route"] == BATCH_ROUTE
    assert batch["http.response.status_code"] == 201
    assert version["http.response.status_code"] == 401
    assert unknown == {"http.request.method": "GET", "http.response.status_code": 404}
    everything = json.dumps([json.loads(s.to_json()) for s in served])
    for value in ("school-attendance", "page=2", "9434765919", "/no/such/place", "/99"):
        assert value not in everything


def test_a_caller_trace_is_continued(client: TestClient, spans: InMemorySpanExporter) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    client.get("/health", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    (span,) = _server_spans(spans)
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"


def test_requests_are_counted_and_timed_by_route_and_status(
    client: TestClient, reader: InMemoryMetricReader, keys: dict[str, str]
) -> None:
    for _ in range(3):
        client.get("/health")
    client.post(LOOKUPS, json={"purpose": "x", "identifiers": PERSON})
    client.post(LOOKUPS, content=b"a,b", headers={"Content-Type": "text/csv"})
    counts = {
        (p.attributes.get("http.route"), p.attributes["http.response.status_code"]): p.count
        for p in _metric_points(reader, "http.server.request.duration")
    }
    assert counts[("/health", 200)] == 3
    assert counts[(LOOKUP_ROUTE, 401)] == 1
    # The guard refuses before routing, so the refusal has a status but no route.
    assert counts[(None, 415)] == 1
    assert all(
        p.sum >= 0 and p.attributes["http.request.method"] in {"GET", "POST"}
        for p in _metric_points(reader, "http.server.request.duration")
    )


def test_an_unexpected_failure_is_an_error_span_without_its_message(
    app: FastAPI,
    spans: InMemorySpanExporter,
    logs: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode() -> None:
        raise RuntimeError(f"could not store {PERSON['family_name']}")

    app.add_api_route("/explode", explode)
    # The permission matrix refuses a route it does not name; this one is declared public.
    monkeypatch.setitem(MATRIX, "explode", Entry(why="a test route", public=True))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/explode", headers={"X-Request-Id": "req-explode-1"})
    assert response.status_code == 500
    (span,) = _server_spans(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "RuntimeError"
    assert not span.events
    lines = _log_lines(logs)
    access = [line for line in lines if line["logger"] == "broker.access"]
    assert access[0]["status"] == 500
    assert access[0]["request_id"] == "req-explode-1"
    assert PERSON["family_name"] not in logs.getvalue()
    assert PERSON["family_name"] not in span.to_json()


def test_access_lines_are_json_with_the_request_id_the_response_carries(
    client: TestClient, logs: io.StringIO, spans: InMemorySpanExporter
) -> None:
    assigned = client.get("/health")
    client.get("/ready", headers={"X-Request-Id": "partner-req.0042"})
    refused = client.get("/health", headers={"X-Request-Id": "not a safe id!"})
    lines = _log_lines(logs)
    access = [line for line in lines if line["logger"] == "broker.access"]
    assert [line["request_id"] for line in access] == [
        assigned.headers["x-request-id"],
        "partner-req.0042",
        refused.headers["x-request-id"],
    ]
    assert refused.headers["x-request-id"] != "not a safe id!"
    assert [line["route"] for line in access] == ["/health", "/ready", "/health"]
    assert [line["status"] for line in access] == [200, 200, 200]
    assert all(line["duration_ms"] >= 0 for line in access)
    trace_ids = {format(s.context.trace_id, "032x") for s in _server_spans(spans)}
    assert {line["trace_id"] for line in access} == trace_ids
    assert all(
        {"time", "level", "logger", "message", "request_id", "trace_id", "span_id"} <= set(line)
        for line in lines
    )


def _secrets(runtime: Runtime, keys: dict[str, str]) -> list[str]:
    """Everything that must stay out of telemetry, lower-cased."""
    values: set[str] = set(keys.values()) | set(RECORD_IDS) | set(PAYLOAD_VALUES)
    for person in (PERSON, STRANGER):
        for value in person.values():
            values.update({value, value.replace(" ", ""), value.replace("-", "")})
    with runtime.engine.connect() as connection:
        tokens = connection.execute(text("SELECT token FROM match_token")).scalars().all()
        subjects = connection.execute(text("SELECT id FROM subject")).scalars().all()
    assert tokens
    values.update(tokens)
    values.update(subjects)
    key_document = json.loads(Path(runtime.settings.key_file).read_text())
    values.update(
        str(value) for value in _leaves(key_document) if isinstance(value, str) and len(value) >= 16
    )
    return sorted(v.lower() for v in values if len(v) >= 5)


def _leaves(document: Any) -> Iterator[Any]:
    if isinstance(document, dict):
        for value in document.values():
            yield from _leaves(value)
    elif isinstance(document, list):
        for value in document:
            yield from _leaves(value)
    else:
        yield document


def test_no_identifier_token_key_or_payload_value_reaches_telemetry_or_logs(
    client: TestClient,
    runtime: Runtime,
    keys: dict[str, str],
    *,
    spans: InMemorySpanExporter,
    reader: InMemoryMetricReader,
    logs: io.StringIO,
) -> None:
    school = school_record(RECORD_IDS[0], attendance_pct=PAYLOAD_VALUES[3], **PERSON)
    ed = ed_record(
        RECORD_IDS[1],
        **PERSON,
        attendance_date=PAYLOAD_VALUES[2],
        injury_type=PAYLOAD_VALUES[0],
        arrival_mode=PAYLOAD_VALUES[1],
    )
    for agency, dataset, record in (
        ("school", "school-attendance", school),
        ("ed", "ed-attendances", ed),
    ):
        stored = client.post(
            BATCHES.format(agreement=AGREEMENT, dataset=dataset),
            json={"records": [record]},
            headers=idempotent(_bearer(keys[agency])),
        )
        assert stored.status_code == 201, stored.text
    # A batch refused for a bad identifier, whose error names the field but not the value.
    bad = client.post(
        BATCHES.format(agreement=AGREEMENT, dataset="school-attendance"),
        json={
            "records": [school_record("SCH-QX-BAD", **{**PERSON, "date_of_birth": "2010-27-08"})]
        },
        headers=idempotent(_bearer(keys["school"])),
    )
    assert bad.status_code == 422
    found = client.post(
        LOOKUPS,
        json={"purpose": "safeguarding-triage", "identifiers": PERSON},
        headers=_bearer(keys["social-care"]),
    )
    assert found.json()["matched"] is True
    assert PAYLOAD_VALUES[0] in found.text  # the release really carried the values searched for
    missed = client.post(
        LOOKUPS,
        json={"purpose": "safeguarding-triage", "identifiers": STRANGER},
        headers=_bearer(keys["social-care"]),
    )
    assert missed.json()["matched"] is False
    refused = client.post(
        LOOKUPS,
        json={"purpose": "no-such-purpose", "identifiers": PERSON},
        headers=_bearer(keys["social-care"]),
    )
    assert refused.status_code in {403, 404, 422}
    searched = client.post(
        "/v1/audit/search", json={"identifiers": PERSON}, headers=_bearer(keys["lead"])
    )
    assert searched.status_code == 200, searched.text
    unauthorised = client.post(
        LOOKUPS,
        json={"purpose": "safeguarding-triage", "identifiers": PERSON},
        headers=_bearer(keys["school"] + "x"),
    )
    assert unauthorised.status_code == 401

    served = spans.get_finished_spans()
    assert len(_server_spans(spans)) == 8
    metrics = reader.get_metrics_data()
    assert metrics is not None
    exported = "\n".join(
        [*(span.to_json() for span in served), metrics.to_json(), logs.getvalue()]
    ).lower()
    assert "http.server.request.duration" in exported
    leaked = [value for value in _secrets(runtime, keys) if value in exported]
    assert leaked == []


def _latencies(client: TestClient, count: int) -> list[float]:
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get("/ready")
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200
    return timings


def test_a_collector_that_does_not_answer_neither_fails_nor_slows_requests(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    with TestClient(create_app(runtime)) as quiet:
        baseline = statistics.median(_latencies(quiet, 30))
    for name, value in {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        "OTEL_BSP_SCHEDULE_DELAY": "20",
        "OTEL_METRIC_EXPORT_INTERVAL": "50",
    }.items():
        monkeypatch.setenv(name, value)
    client = TestClient(create_app(runtime))
    with client:
        timings = _latencies(client, 30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            report = client.get("/health/telemetry").json()
            if report["traces"]["dropped"] >= 30 and report["metrics"]["dropped"] >= 1:
                break
            time.sleep(0.1)
        stopping = time.perf_counter()
    shutdown = time.perf_counter() - stopping
    assert statistics.median(timings) < baseline + 0.05
    assert max(timings) < 1.0
    assert report["traces"]["exporter"] == "otlp"
    assert report["traces"]["dropped"] >= 30
    assert report["traces"]["exported"] == 0
    assert report["metrics"]["dropped"] >= 1
    assert shutdown < 8.0


def test_the_pipeline_reports_its_stages_records_links_releases_and_refusals(
    client: TestClient, reader: InMemoryMetricReader, keys: dict[str, str]
) -> None:
    school = f"/v1/agreements/{AGREEMENT}/datasets/school-attendance/batches"
    ed = f"/v1/agreements/{AGREEMENT}/datasets/ed-attendances/batches"
    posted = client.post(
        school,
        json={"records": [school_record("SCH-1")]},
        headers=idempotent(_bearer(keys["school"])),
    )
    assert posted.status_code == 201
    assert (
        client.post(
            ed, json={"records": [ed_record("ED-1")]}, headers=idempotent(_bearer(keys["ed"]))
        ).status_code
        == 201
    )
    found = client.post(
        LOOKUPS,
        json={"purpose": "safeguarding-triage", "identifiers": IDENTIFIERS},
        headers=_bearer(keys["social-care"]),
    )
    assert found.status_code == 200
    refused = client.post(
        LOOKUPS,
        json={"purpose": "no-such-purpose", "identifiers": IDENTIFIERS},
        headers=_bearer(keys["social-care"]),
    )
    assert refused.status_code == 403
    ingested = {
        p.attributes["accord.dataset"]: p.value
        for p in _metric_points(reader, "accord.records.ingested")
    }
    assert ingested == {"school-attendance": 1, "ed-attendances": 1}
    links = _metric_points(reader, "accord.links.made")
    assert [(p.attributes["accord.rule"], p.value) for p in links] == [("name_dob_postcode", 1)]
    releases = _metric_points(reader, "accord.releases")
    assert [(p.attributes["accord.purpose"], p.value) for p in releases] == [
        ("safeguarding-triage", 1)
    ]
    refusals = {
        p.attributes["accord.reason"]: p.value for p in _metric_points(reader, "accord.refusals")
    }
    assert sum(refusals.values()) == 1
    stages = {p.attributes["accord.stage"] for p in _metric_points(reader, "accord.stage.duration")}
    assert {"validate", "tokenise", "link", "store", "audit", "decide", "release"} <= stages


def test_checkpoint_age_and_job_queue_depth_are_gauges(
    runtime: Runtime, telemetry: Telemetry, reader: InMemoryMetricReader, keys: dict[str, str]
) -> None:
    jobs = job_runner_for(runtime, JobOptions(poll_seconds=3600))
    app = create_app(runtime, telemetry=telemetry, jobs=jobs)
    with TestClient(app) as client:
        batches = f"/v1/agreements/{AGREEMENT}/datasets/school-attendance/batches"
        posted = client.post(
            batches,
            json={"records": [school_record("SCH-1")]},
            headers=idempotent(_bearer(keys["school"])),
        )
        assert posted.status_code == 201
        ages = [p.value for p in _metric_points(reader, "accord.checkpoint.age")]
        overdue = [p.value for p in _metric_points(reader, "accord.jobs.overdue")]
    # Entries wait for a checkpoint (the clock is fixed, so the wait reads as 0 s or more).
    assert len(ages) == 1
    assert ages[0] >= 0
    assert overdue in ([0], [1], [2])
    runtime.broker.audit.checkpoint_now()
    assert runtime.broker.audit.checkpoint_age_seconds() == 0.0
