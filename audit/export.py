"""Audit entries out: CSV a spreadsheet cannot be tricked by, JSON, and FHIR R4 AuditEvent.

CSV carries only the entry's columns and, from its detail, codes and field names
(subject id, match flag, rule, released fields and forms, providers, warnings);
every cell that a spreadsheet could read as a formula is prefixed with a quote.

The FHIR form follows the shape of IHE Basic Audit Log Patterns' "Privacy Disclosure
at Source" (``IHE.BasicAudit.PrivacyDisclosure.Source``): type DICOM 110106 Export,
subtype ISO 21089 ``disclose``, action R, the broker as source agent and observer,
the recipient agency as destination agent, the subject as a patient entity. The
subject is a pseudonymous identifier (the broker's random subject id), never an
identity. The broker records no network addresses, so the recipient agent has none
and the resource does not claim the profile in ``meta.profile``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from audit.events import LoggedEntry
from audit.reports import release_of
from broker.csv_safe import safe_cell, to_csv_text
from broker.errors import ValidationError

CSV_COLUMNS = (
    "seq",
    "at",
    "actor",
    "action",
    "outcome",
    "reason_code",
    "agreement_id",
    "agreement_version",
    "purpose",
    "dataset_id",
    "request_id",
    "subject",
    "matched",
    "rule",
    "released",
    "providers",
    "warnings",
    "leaf_hash",
)

DCM = "http://dicom.nema.org/resources/ontology/DCM"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
LIFECYCLE = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
AGENCY_SYSTEM = "urn:accord:agency"
SUBJECT_SYSTEM = "urn:accord:subject"
PURPOSE_SYSTEM = "urn:accord:purpose"


def _codes(value: object) -> str:
    if not isinstance(value, list):
        return ""
    return ";".join(str(v) for v in value if isinstance(v, str | int))


def csv_row(entry: LoggedEntry) -> list[str]:
    """One entry as CSV cells in ``CSV_COLUMNS`` order, each already made safe.

    Numbers too are made safe as text: nothing in an audit entry is a negative
    number, so a cell that starts with a sign is quoted like any other.
    """
    e = entry.event
    d = e.detail
    released = d.get("released")
    pairs = (
        [f"{r.get('field')}:{r.get('form')}" for r in released if isinstance(r, dict)]
        if isinstance(released, list)
        else []
    )
    matched = d.get("matched")
    subject = d.get("subject")
    rule = d.get("rule")
    cells: list[object] = [
        entry.seq,
        entry.at,
        e.actor,
        e.action,
        e.outcome,
        e.reason_code,
        e.agreement_id,
        e.agreement_version,
        e.purpose,
        e.dataset_id,
        e.request_id,
        subject if isinstance(subject, str) else None,
        ("true" if matched else "false") if isinstance(matched, bool) else None,
        rule if isinstance(rule, str) else None,
        ";".join(pairs),
        _codes(d.get("providers")),
        _codes(d.get("warnings")),
        entry.leaf_hash,
    ]
    return [safe_cell("" if c is None else str(c)) for c in cells]


def to_csv(entries: Iterable[LoggedEntry]) -> str:
    """Entries as CSV (RFC 4180, CRLF line ends) with a header row."""
    # Through the broker's one CSV writer (broker.csv_safe), like every export.
    return to_csv_text([CSV_COLUMNS, *(csv_row(entry) for entry in entries)])


def entry_dict(entry: LoggedEntry) -> dict[str, Any]:
    """One entry as JSON-ready data, detail included (it holds no identifier or value)."""
    e = entry.event
    return {
        "seq": entry.seq,
        "at": entry.at,
        "actor": e.actor,
        "action": e.action,
        "outcome": e.outcome,
        "reason_code": e.reason_code,
        "agreement_id": e.agreement_id,
        "agreement_version": e.agreement_version,
        "purpose": e.purpose,
        "dataset_id": e.dataset_id,
        "request_id": e.request_id,
        "detail": e.detail,
        "leaf_hash": entry.leaf_hash,
    }


def to_json(entries: Iterable[LoggedEntry]) -> str:
    """Entries as a JSON array, oldest first as given."""
    return json.dumps([entry_dict(e) for e in entries], sort_keys=True, indent=2)


def is_disclosure(entry: LoggedEntry) -> bool:
    """Whether an entry records a release of data (a permitted lookup that released fields)."""
    return release_of(entry) is not None


def to_fhir_audit_event(entry: LoggedEntry, origin: str) -> dict[str, Any]:
    """A FHIR R4 AuditEvent for a lookup entry that released data (see the module notes).

    ``origin`` names the broker (the log's origin). ValidationError
    (``entry_not_disclosure``) for any other entry.
    """
    release = release_of(entry)
    if release is None:
        raise ValidationError(
            f"audit entry {entry.seq} released no data, so it is not a disclosure",
            code="entry_not_disclosure",
        )
    broker_ref = {"display": origin}
    recipient = {
        "identifier": {"system": AGENCY_SYSTEM, "value": release.recipient},
        "display": release.recipient,
    }
    policy = []
    if release.agreement_id is not None:
        policy.append(f"urn:accord:agreement:{release.agreement_id}:{release.agreement_version}")
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"accord-audit-{entry.seq}",
        "type": {"system": DCM, "code": "110106", "display": "Export"},
        "subtype": [
            {"system": LIFECYCLE, "code": "disclose", "display": "Disclose Record Lifecycle Event"}
        ],
        "action": "R",
        "recorded": entry.at,
        "outcome": "0" if entry.event.outcome == "permitted" else "4",
        "agent": [
            {
                "type": _concept(DCM, "110153", "Source Role ID"),
                "who": broker_ref,
                "requestor": False,
                "network": {"address": origin.split("/", 1)[0], "type": "1"},
            },
            {
                "type": _concept(DCM, "110152", "Destination Role ID"),
                "who": recipient,
                "requestor": True,
                "policy": policy,
            },
        ],
        "source": {
            "site": origin,
            "observer": broker_ref,
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
        "entity": [
            {
                "what": {
                    "type": "Patient",
                    "identifier": {"system": SUBJECT_SYSTEM, "value": release.subject_id},
                },
                "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
            },
            {
                "what": {"display": f"lookup answer, audit entry {entry.seq}"},
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": OBJECT_ROLE, "code": "3", "display": "Report"},
                "detail": [
                    *(
                        {"type": "released", "valueString": f"{f}:{form}"}
                        for f, form in release.fields
                    ),
                    *({"type": "provider", "valueString": p} for p in release.providers),
                ],
            },
        ],
    }
    if release.purpose is not None:
        event["purposeOfEvent"] = [
            {
                "coding": [{"system": PURPOSE_SYSTEM, "code": release.purpose}],
                "text": release.purpose,
            }
        ]
    return event


def to_fhir_bundle(entries: Iterable[LoggedEntry], origin: str) -> dict[str, Any]:
    """A FHIR R4 Bundle (collection) of an AuditEvent per disclosure; other entries are skipped."""
    events = [to_fhir_audit_event(e, origin) for e in entries if is_disclosure(e)]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": event} for event in events],
    }


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}]}
