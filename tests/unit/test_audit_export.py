"""CSV, JSON and FHIR AuditEvent exports of audit entries."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from audit.events import AuditEvent, LoggedEntry
from audit.export import (
    CSV_COLUMNS,
    safe_cell,
    to_csv,
    to_fhir_audit_event,
    to_fhir_bundle,
    to_json,
)
from broker.errors import ValidationError

ORIGIN = "accord.test/audit"


def _release(seq: int = 7, **detail: Any) -> LoggedEntry:
    values: dict[str, Any] = {
        "matched": True,
        "subject": "sub_5f0c",
        "rule": "nhs_number",
        "released": [
            {"field": "ed-attendances.injury_type", "form": "as_supplied"},
            {"field": "ed-attendances.attendance_date", "form": "month"},
        ],
        "providers": ["ed", "school"],
        "warnings": [],
    }
    values.update(detail)
    event = AuditEvent(
        actor="police",
        action="lookup",
        outcome="permitted",
        agreement_id="sv-early-identification",
        agreement_version=2,
        purpose="violence-reduction",
        request_id="req-1",
        detail=values,
    )
    return LoggedEntry(seq=seq, at="2026-11-26T12:00:00.000000+00:00", event=event, leaf_hash="ab")


def _refused() -> LoggedEntry:
    event = AuditEvent(
        actor="=cmd|'/c calc'!A1",
        action="lookup",
        outcome="refused",
        reason_code="purpose_unknown",
        purpose="+SUM(1,1)",
        detail={"note": "-2+3"},
    )
    return LoggedEntry(seq=8, at="2026-11-26T12:01:00.000000+00:00", event=event, leaf_hash="cd")


@pytest.mark.parametrize("lead", ["=", "+", "-", "@", "\t", "\r", "\n", " =", "\uff1d"])
def test_formula_cells_are_quoted(lead: str) -> None:
    assert safe_cell(lead + "1+1") == "'" + lead + "1+1"


def test_ordinary_cells_are_left_alone() -> None:
    assert safe_cell("sv-early-identification") == "sv-early-identification"
    assert safe_cell(12) == "12"
    assert safe_cell(None) == ""
    assert safe_cell("") == ""


def test_csv_has_a_header_and_only_codes_from_the_detail() -> None:
    rows = list(csv.reader(io.StringIO(to_csv([_release(), _refused()]))))
    assert rows[0] == list(CSV_COLUMNS)
    release = dict(zip(CSV_COLUMNS, rows[1], strict=True))
    assert release["subject"] == "sub_5f0c"
    assert release["matched"] == "true"
    assert release["released"] == (
        "ed-attendances.injury_type:as_supplied;ed-attendances.attendance_date:month"
    )
    assert release["providers"] == "ed;school"
    refused = dict(zip(CSV_COLUMNS, rows[2], strict=True))
    assert refused["actor"] == "'=cmd|'/c calc'!A1"
    assert refused["purpose"] == "'+SUM(1,1)"
    assert refused["reason_code"] == "purpose_unknown"
    # A detail value that is not a code or field name never reaches the CSV.
    assert "-2+3" not in to_csv([_refused()])


def test_json_keeps_the_whole_entry() -> None:
    (data,) = json.loads(to_json([_release()]))
    assert data["seq"] == 7
    assert data["detail"]["providers"] == ["ed", "school"]
    assert data["agreement_version"] == 2


def test_fhir_audit_event_has_the_balp_disclosure_shape() -> None:
    event = to_fhir_audit_event(_release(), ORIGIN)
    assert event["resourceType"] == "AuditEvent"
    assert event["type"] == {
        "system": "http://dicom.nema.org/resources/ontology/DCM",
        "code": "110106",
        "display": "Export",
    }
    assert event["subtype"][0]["system"] == (
        "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
    )
    assert event["subtype"][0]["code"] == "disclose"
    assert event["action"] == "R"
    assert event["recorded"] == "2026-11-26T12:00:00.000000+00:00"
    assert event["outcome"] == "0"
    source, recipient = event["agent"]
    assert source["type"]["coding"][0]["code"] == "110153"
    # The source agent is the observer (BALP's val-audit-source rule).
    assert source["who"] == event["source"]["observer"] == {"display": ORIGIN}
    assert recipient["type"]["coding"][0]["code"] == "110152"
    assert recipient["who"]["identifier"]["value"] == "police"
    assert recipient["policy"] == ["urn:accord:agreement:sv-early-identification:2"]
    patient, data = event["entity"]
    assert patient["role"]["code"] == "1"
    assert patient["type"]["code"] == "1"
    assert patient["what"] == {
        "type": "Patient",
        "identifier": {"system": "urn:accord:subject", "value": "sub_5f0c"},
    }
    assert {"type": "released", "valueString": "ed-attendances.attendance_date:month"} in data[
        "detail"
    ]
    assert {"type": "provider", "valueString": "ed"} in data["detail"]
    assert event["purposeOfEvent"][0]["coding"][0]["code"] == "violence-reduction"


def test_only_disclosures_become_fhir_audit_events() -> None:
    with pytest.raises(ValidationError) as caught:
        to_fhir_audit_event(_refused(), ORIGIN)
    assert caught.value.code == "entry_not_disclosure"
    with pytest.raises(ValidationError):
        to_fhir_audit_event(_release(released=[]), ORIGIN)
    bundle = to_fhir_bundle([_release(1), _refused(), _release(2, released=[])], ORIGIN)
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "collection"
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["accord-audit-1"]
