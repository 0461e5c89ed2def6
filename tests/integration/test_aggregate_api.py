"""Aggregates over HTTP: the published table as JSON and CSV, refusals, and minimisation."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from broker import aggregate as aggregate_module
from broker.bootstrap import Runtime, build_runtime
from broker.clock import FixedClock
from broker.config import Settings
from broker.release import AGE_BANDS
from broker.web.app import create_app
from tests.auth_helpers import agency_headers
from tests.dashboard import (
    DASHBOARD,
    ED,
    POLICE,
    PURPOSE,
    SCHOOL,
    Person,
    dashboard_folder,
    ingest,
    population,
)

AGGREGATES = f"/v1/agreements/{DASHBOARD}/aggregates"
SHARPS_BY_DISTRICT_AND_MONTH = {
    "purpose": PURPOSE,
    "measure": {
        "count": "subjects",
        "dataset": ED,
        "where": [{"field": "sharps_injury", "equals": True}],
    },
    "dimensions": [{"by": "postcode_district"}, {"by": "month", "field": "attendance_date"}],
}


@pytest.fixture
def people() -> list[Person]:
    return population()


@pytest.fixture
def runtime_with_records(
    settings: Settings, clock: FixedClock, tmp_path: Path, people: list[Person]
) -> Iterator[Runtime]:
    folder = dashboard_folder(tmp_path / "dash")
    built = build_runtime(settings.model_copy(update={"agreements_dir": folder}), clock=clock)
    ingest(built.broker, people)
    yield built
    built.engine.dispose()


@pytest.fixture
def client(runtime_with_records: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime_with_records)) as test_client:
        yield test_client


@pytest.fixture
def keys(runtime_with_records: Runtime) -> dict[str, dict[str, str]]:
    broker = runtime_with_records.broker
    return {agency: agency_headers(broker, agency) for agency in ("vru", "police", "social-care")}


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"code", "message", "location", "problems"}
    assert body["error"]["code"] == code
    return dict(body["error"])


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _raw_values(people: list[Person]) -> set[str]:
    """Every stored value a careless output might carry: identities, dates, references."""
    found: set[str] = set()
    for p in people:
        found |= {p.given, p.family, p.born.isoformat(), *p.identifiers().values()}
        for record in (*p.ed, *p.police, *p.school):
            found |= {str(v) for v in record.values() if isinstance(v, str)}
    return found


def test_the_table_as_json(client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    response = client.post(AGGREGATES, json=SHARPS_BY_DISTRICT_AND_MONTH, headers=keys["vru"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["agreement"] == {"id": DASHBOARD, "version": 1}
    assert (body["count"], body["dataset"]) == ("subjects", ED)
    assert body["dimensions"] == [
        {"by": "postcode_district", "field": "postcode"},
        {"by": "month", "field": "attendance_date"},
    ]
    assert body["rows"] == ["NS1", "NS2", "NS3", "NS9"]
    assert body["columns"] == ["2026-07", "2026-08", "2026-09", "2026-10", "2026-11"]
    assert (body["minimum_cell_size"], body["rounding_base"], body["redacted_at_or_below"]) == (
        10,
        5,
        7,
    )
    cells = body["cells"]
    assert len(cells) == (4 + 1) * (5 + 1)
    assert {"row": None, "column": None, "value": 75} in cells
    withheld = [c for c in cells if c["value"] is None]
    assert withheld
    # A withheld cell is null and says nothing about why.
    assert all(set(c) == {"row", "column", "value"} for c in cells)
    assert all(c["value"] is None or c["value"] % 5 == 0 for c in cells)
    assert isinstance(body["audit_entry"], int)


def test_minimisation_only_labels_and_counts_leave(
    client: TestClient, keys: dict[str, dict[str, str]], people: list[Person]
) -> None:
    bodies = [
        SHARPS_BY_DISTRICT_AND_MONTH,
        {
            "purpose": PURPOSE,
            "measure": {"count": "records", "dataset": POLICE},
            "dimensions": [{"by": "age_band"}, {"by": "sex"}],
        },
    ]
    raw = _raw_values(people)
    for body in bodies:
        response = client.post(AGGREGATES, json=body, headers=keys["vru"])
        assert response.status_code == 200, response.text
        answer = response.json()
        labels = set(answer["rows"]) | set(answer["columns"])
        assert labels <= {"NS1", "NS2", "NS3", "NS9", "F", "M", "X", "U", "Unknown"} | {
            b for _, _, b in AGE_BANDS
        } | {f"2026-{m:02d}" for m in range(1, 13)}
        known = {
            *answer.keys(),
            *(k for d in answer["dimensions"] for k in d),
            *(k for c in answer["cells"] for k in c),
            *answer["agreement"].keys(),
            DASHBOARD,
            PURPOSE,
            answer["count"],
            answer["dataset"],
            *(v for d in answer["dimensions"] for v in d.values()),
        }
        assert set(_strings(answer)) <= labels | known
        assert not [v for v in raw if v in response.text and v not in labels]
        as_csv = client.post(AGGREGATES, json={**body, "format": "csv"}, headers=keys["vru"])
        assert not [v for v in raw if v in as_csv.text and v not in labels]


def test_the_table_as_csv(client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    by_header = client.post(
        AGGREGATES,
        json=SHARPS_BY_DISTRICT_AND_MONTH,
        headers={**keys["vru"], "Accept": "text/csv"},
    )
    assert by_header.status_code == 200, by_header.text
    assert by_header.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(by_header.text)))
    assert lines[0] == [
        "postcode_district by month",
        "2026-07",
        "2026-08",
        "2026-09",
        "2026-10",
        "2026-11",
        "Total",
    ]
    assert [line[0] for line in lines[1:]] == ["NS1", "NS2", "NS3", "NS9", "Total"]
    assert lines[-1][-1] == "75"
    values = {v for line in lines[1:] for v in line[1:]}
    assert "[c]" in values
    assert all(v == "[c]" or re.fullmatch(r"\d+", v) for v in values)
    by_field = client.post(
        AGGREGATES, json={**SHARPS_BY_DISTRICT_AND_MONTH, "format": "csv"}, headers=keys["vru"]
    )
    assert list(csv.reader(io.StringIO(by_field.text)))[1:] == lines[1:]
    assert int(by_field.headers["x-audit-entry"]) > int(by_header.headers["x-audit-entry"])
    # The body's choice wins over the header's.
    as_json = client.post(
        AGGREGATES,
        json={**SHARPS_BY_DISTRICT_AND_MONTH, "format": "json"},
        headers={**keys["vru"], "Accept": "text/csv"},
    )
    assert as_json.headers["content-type"] == "application/json"


def _body(**changes: Any) -> dict[str, Any]:
    return {**SHARPS_BY_DISTRICT_AND_MONTH, **changes}


@pytest.mark.parametrize(
    ("agency", "path", "body", "status", "code"),
    [
        ("vru", AGGREGATES, _body(purpose="individual-targeting"), 403, "purpose_unknown"),
        ("police", AGGREGATES, _body(), 403, "agency_not_recipient"),
        (
            "social-care",
            "/v1/agreements/sv-early-identification/aggregates",
            _body(
                purpose="safeguarding-triage",
                measure={"count": "subjects", "dataset": "school-attendance"},
            ),
            403,
            "output_not_allowed",
        ),
        (
            "vru",
            AGGREGATES,
            _body(measure={"count": "subjects", "dataset": SCHOOL}, dimensions=[{"by": "sex"}]),
            403,
            "field_not_permitted",
        ),
        (
            "vru",
            AGGREGATES,
            _body(dimensions=[{"by": "week", "field": "attendance_date"}]),
            403,
            "dimension_not_permitted",
        ),
        (
            "vru",
            AGGREGATES,
            _body(dimensions=[{"by": "month"}]),
            422,
            "dimension_field_required",
        ),
        (
            "vru",
            AGGREGATES,
            _body(
                measure={
                    "count": "subjects",
                    "dataset": ED,
                    "where": [{"field": "sharps_injury", "equals": "yes"}],
                }
            ),
            422,
            "condition_invalid",
        ),
    ],
)
def test_refusals(
    client: TestClient,
    keys: dict[str, dict[str, str]],
    runtime_with_records: Runtime,
    *,
    agency: str,
    path: str,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    error = _error(client.post(path, json=body, headers=keys[agency]), status, code)
    assert "yes" not in error["message"]
    entries = runtime_with_records.broker.audit_page(actor=agency, after=0, limit=1000)
    last = entries[-1].event
    assert (last.action, last.outcome, last.reason_code) == ("aggregate", "refused", code)


def test_too_many_cells(
    client: TestClient, keys: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aggregate_module, "MAX_AGGREGATE_CELLS", 10)
    error = _error(
        client.post(AGGREGATES, json=SHARPS_BY_DISTRICT_AND_MONTH, headers=keys["vru"]),
        422,
        "aggregate_too_large",
    )
    assert error["location"] == {"field": "dimensions"}


def test_schema_errors_and_credentials(client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    _error(client.post(AGGREGATES, json=SHARPS_BY_DISTRICT_AND_MONTH), 401, "unauthenticated")
    three = [{"by": "sex"}, {"by": "age_band"}, {"by": "postcode_district"}]
    _error(
        client.post(AGGREGATES, json=_body(dimensions=three), headers=keys["vru"]),
        422,
        "request_invalid",
    )
    _error(
        client.post(AGGREGATES, json=_body(dimensions=[{"by": "ward"}]), headers=keys["vru"]),
        422,
        "request_invalid",
    )
    _error(
        client.post(
            "/v1/agreements/nope/aggregates", json=SHARPS_BY_DISTRICT_AND_MONTH, headers=keys["vru"]
        ),
        404,
        "not_found",
    )
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/agreements/{agreement_id}/aggregates" in paths
