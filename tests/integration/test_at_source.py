"""Tokenised at source: batches an agency tokenised itself, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from adapters.tokenise import batch_body, read_tokenised, tokenise_rows, write_tokenised
from agreements.demo_approvals import approve_for_demo
from agreements.loader import load_agreement
from broker.bootstrap import Runtime, build_runtime
from broker.clock import FixedClock
from broker.config import Settings
from broker.db.repositories import RECORD, SUBJECT, TOKEN
from broker.errors import BatchRejected, Conflict
from broker.ingest import AtSource
from broker.keys import LinkageKey, load_linkage_key_file
from broker.web.app import create_app
from tests.auth_helpers import agency_headers
from tests.conftest import EXAMPLES
from tests.helpers import (
    AGREEMENT,
    IDENTIFIERS,
    ed_record,
    example_agreement,
    idempotent,
    school_record,
)

ED = "ed-attendances"
ED_BATCHES = f"/v1/agreements/{AGREEMENT}/datasets/{ED}/batches"
NHS_A, NHS_B = "9434765919", "9992188243"


def _count(runtime: Runtime, table: object) -> int:
    with runtime.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def _linkage(runtime: Runtime, tmp_path: Path) -> LinkageKey:
    """The operator exports the key; the agency loads it from the file, as it would."""
    path = tmp_path / "ed.linkage.json"
    if not path.exists():
        runtime.broker.export_linkage_key(AGREEMENT, path)
    return load_linkage_key_file(path, agreement_id=AGREEMENT)


def _at_source(
    runtime: Runtime, tmp_path: Path, rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], AtSource]:
    """ED's records tokenised in its own building, through the tokenised CSV file."""
    linkage = _linkage(runtime, tmp_path)
    dataset = example_agreement().dataset(ED)
    assert dataset is not None
    as_text = [
        {k: str(v).lower() if isinstance(v, bool) else v for k, v in r.items()} for r in rows
    ]
    tokenised = tokenise_rows(as_text, dataset, linkage, example_agreement().linkage.match_keys)
    assert tokenised.rejected == ()
    path = tmp_path / f"ed-tokens-{len(list(tmp_path.iterdir()))}.csv"
    write_tokenised(path, tokenised)
    return read_tokenised(path), AtSource(linkage.check_value, linkage.version)


def _ingest_school(runtime: Runtime, *records: dict[str, Any]) -> None:
    runtime.broker.ingest_batch(
        agency="school",
        agreement_id=AGREEMENT,
        dataset_id="school-attendance",
        records=list(records) or [school_record("SCH-1")],
    )


def _ingest_ed(runtime: Runtime, records: list[Any], at_source: AtSource | None) -> Any:
    return runtime.broker.ingest_batch(
        agency="ed", agreement_id=AGREEMENT, dataset_id=ED, records=records, at_source=at_source
    )


def _entries(runtime: Runtime) -> list[Any]:
    return runtime.broker.audit_page(actor=None, after=0, limit=1000)


def test_a_tokenised_batch_links_with_a_clear_one(runtime: Runtime, tmp_path: Path) -> None:
    _ingest_school(runtime)
    records, at_source = _at_source(
        runtime, tmp_path, [ed_record("ED-1", given="amira", family="OKAFOR")]
    )
    assert set(records[0]) == {
        "record_id",
        "tokens",
        "attendance_date",
        "injury_type",
        "arrival_mode",
        "safeguarding_referral_made",
    }
    result = _ingest_ed(runtime, records, at_source)
    assert (result.accepted, result.linked, result.new_subjects) == (1, 1, 0)
    assert result.linked_by_rule == {"name_dob_postcode": 1}
    assert _count(runtime, SUBJECT) == 1

    found = runtime.broker.lookup(
        agency="social-care",
        agreement_id=AGREEMENT,
        purpose="safeguarding-triage",
        identifiers=IDENTIFIERS,
    )
    by_agency = {h.agency: h for h in found.holdings}
    assert set(by_agency) == {"school", "ed"}
    assert by_agency["ed"].records[0].fields == {
        "attendance_date": "2026-11-20",
        "injury_type": "sharps",
        "safeguarding_referral_made": True,
    }
    assert by_agency["ed"].records[0].reference == "ED-1"


def test_tokenised_records_link_to_each_other_and_keep_the_identity_guard(
    runtime: Runtime, tmp_path: Path
) -> None:
    runtime.broker.ingest_batch(
        agency="police",
        agreement_id=AGREEMENT,
        dataset_id="police-incidents",
        records=[
            {
                "record_id": "POL-1",
                **{k: v for k, v in ed_record("x").items() if k in IDENTIFIERS},
                "nhs_number": NHS_A,
                "incident_date": "2026-10-01",
                "incident_type": "robbery",
            }
        ],
    )
    # Same name, date of birth and postcode, but another NHS number: a twin, never linked.
    # Then the same NHS number typed with spaces and another postcode: linked by NHS.
    records, at_source = _at_source(
        runtime,
        tmp_path,
        [
            ed_record("ED-1", nhs_number=NHS_B),
            ed_record("ED-2", nhs_number="943 476 5919", postcode="NS9 9ZZ"),
        ],
    )
    result = _ingest_ed(runtime, records, at_source)
    assert (result.linked, result.new_subjects) == (1, 1)
    assert result.linked_by_rule == {"nhs": 1}
    assert _count(runtime, SUBJECT) == 2


def test_ingest_and_export_are_audited(runtime: Runtime, tmp_path: Path) -> None:
    _ingest_school(runtime)
    records, at_source = _at_source(runtime, tmp_path, [ed_record("ED-1")])
    _ingest_ed(runtime, records, at_source)
    entries = _entries(runtime)
    (exported,) = [e for e in entries if e.event.detail.get("operation") == "linkage_key_exported"]
    assert exported.event.action == "key_operation"
    assert exported.event.actor == "operator"
    assert exported.event.agreement_id == AGREEMENT
    assert exported.event.detail["agreement"] == AGREEMENT
    assert exported.event.detail["key_check"] == at_source.key_check
    ingests = {e.event.actor: e.event.detail for e in entries if e.event.action == "ingest"}
    assert ingests["ed"]["tokenised_at_source"] is True
    assert "tokenised_at_source" not in ingests["school"]


def test_a_wrong_key_check_is_refused_and_stores_nothing(runtime: Runtime, tmp_path: Path) -> None:
    records, at_source = _at_source(runtime, tmp_path, [ed_record("ED-1")])
    stale = "0123456789abcdef"
    for wrong in (AtSource(stale, 1), AtSource(at_source.key_check, 2)):
        with pytest.raises(Conflict) as refused:
            _ingest_ed(runtime, records, wrong)
        assert refused.value.code == "key_version_mismatch"
        assert "fetch the current linkage key" in refused.value.message
        assert stale not in refused.value.message
        assert at_source.key_check not in refused.value.message
    assert _count(runtime, RECORD) == 0
    assert _count(runtime, TOKEN) == 0
    refusals = [e.event for e in _entries(runtime) if e.event.outcome == "refused"]
    assert [e.reason_code for e in refusals] == ["key_version_mismatch"] * 2
    assert all(e.detail["tokenised_at_source"] is True for e in refusals)


def test_a_mixed_batch_is_refused_with_the_record_position(
    runtime: Runtime, tmp_path: Path
) -> None:
    records, at_source = _at_source(runtime, tmp_path, [ed_record("ED-1"), ed_record("ED-2")])
    with pytest.raises(BatchRejected) as tokenised_first:
        _ingest_ed(runtime, [records[0], ed_record("ED-3")], at_source)
    assert tokenised_first.value.location.record == 1
    assert "record_not_tokenised" in {p.code for p in tokenised_first.value.problems}
    with pytest.raises(BatchRejected) as clear_first:
        _ingest_ed(runtime, [ed_record("ED-3"), records[1]], None)
    assert clear_first.value.location.record == 1
    assert [p.code for p in clear_first.value.problems] == ["record_tokenised"]
    assert _count(runtime, RECORD) == 0
    assert _count(runtime, SUBJECT) == 0


def test_an_identifier_inside_a_tokenised_record_is_refused(
    runtime: Runtime, tmp_path: Path
) -> None:
    records, at_source = _at_source(runtime, tmp_path, [ed_record("ED-1")])
    leaky = {**records[0], "postcode": "NS1 4AB"}
    with pytest.raises(BatchRejected) as rejected:
        _ingest_ed(runtime, [leaky], at_source)
    (problem,) = rejected.value.problems
    assert (problem.code, problem.location.record, problem.location.field) == (
        "identifier_not_allowed",
        0,
        "postcode",
    )
    assert "ns1 4ab" not in rejected.value.one_line().lower()
    assert _count(runtime, RECORD) == 0


def test_database_holds_no_clear_identifier_from_either_batch(
    runtime: Runtime, tmp_path: Path
) -> None:
    _ingest_school(runtime, school_record("SCH-1"), school_record("SCH-2", given="Bilal"))
    records, at_source = _at_source(
        runtime,
        tmp_path,
        [ed_record("ED-1", nhs_number=NHS_A), ed_record("ED-2", given="Zephyrine")],
    )
    _ingest_ed(runtime, records, at_source)
    planted = [
        "amira",
        "okafor",
        "bilal",
        "zephyrine",
        "2011-03-14",
        "ns1 4ab",
        "ns14ab",
        NHS_A,
        "sharps",
    ]
    with runtime.engine.connect() as connection:
        tables = [
            row[0]
            for row in connection.execute(
                text(
                    "SELECT name FROM sqlite_master WHERE type='table'"
                    if runtime.engine.dialect.name == "sqlite"
                    else "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            )
        ]
        assert "record" in tables
        # The agreement itself names code values such as "sharps"; it holds no one's data.
        for table in (t for t in tables if t != "agreement_document"):
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):  # noqa: S608
                for cell in row:
                    blob = cell.decode("latin-1") if isinstance(cell, bytes) else str(cell)
                    for value in planted:
                        assert value not in blob.lower(), f"{table} holds a clear value"


# -- over HTTP ---------------------------------------------------------------


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime)) as test_client:
        yield test_client


def test_tokenised_batch_over_http(runtime: Runtime, client: TestClient, tmp_path: Path) -> None:
    headers = agency_headers(runtime.broker, "ed")
    records, _ = _at_source(runtime, tmp_path, [ed_record("ED-1")])
    body = batch_body(records, _linkage(runtime, tmp_path))

    stale = {**body, "tokenised": {"key_check": "0" * 16, "key_version": 1}}
    refused = client.post(ED_BATCHES, json=stale, headers=idempotent(headers))
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "key_version_mismatch"
    assert error["location"] == {"field": "tokenised.key_check"}
    assert "0" * 16 not in refused.text

    no_version = {**body, "tokenised": {"key_check": body["tokenised"]["key_check"]}}
    invalid = client.post(ED_BATCHES, json=no_version, headers=idempotent(headers))
    assert invalid.status_code == 422, invalid.text
    assert invalid.json()["error"]["code"] == "request_invalid"

    created = client.post(ED_BATCHES, json=body, headers=idempotent(headers))
    assert created.status_code == 201, created.text
    assert created.json()["accepted"] == 1
    assert created.json()["tokenised_at_source"] is True
    clear = client.post(
        ED_BATCHES,
        json={"records": [ed_record("ED-2", given="Bilal")]},
        headers=idempotent(headers),
    )
    assert clear.status_code == 201, clear.text
    assert clear.json()["tokenised_at_source"] is False


@pytest.fixture
def fuzzy_agreement(tmp_path: Path) -> Path:
    """The example agreement, re-approved with the fuzzy match keys added to its linkage."""
    folder = tmp_path / "fuzzy"
    folder.mkdir()
    text = (EXAMPLES / f"{AGREEMENT}.yaml").read_text()
    exact = "  match_keys: [nhs, name_dob_postcode]\n"
    assert exact in text
    fuzzy = (
        "  match_keys: [nhs, name_dob_postcode, variant_dob_postcode, swapped_names_dob_postcode]\n"
    )
    path = folder / f"{AGREEMENT}.yaml"
    path.write_text(text.replace(exact, fuzzy))
    approve_for_demo(path)
    return path


def test_fuzzy_keys_link_tokenised_records_where_the_agreement_names_them(
    settings: Settings, clock: FixedClock, fuzzy_agreement: Path, tmp_path: Path
) -> None:
    runtime = build_runtime(
        settings.model_copy(update={"agreements_dir": fuzzy_agreement.parent}), clock=clock
    )
    try:
        _ingest_school(
            runtime,
            school_record("SCH-1", given="William"),
            school_record("SCH-2", given="Amira", family="Mensah"),
        )
        agreement = load_agreement(fuzzy_agreement)
        dataset = agreement.dataset(ED)
        assert dataset is not None
        rows = [
            ed_record("ED-1", given="Bill"),  # William's nickname
            ed_record("ED-2", given="Mensah", family="Amira"),  # names the wrong way round
            ed_record("ED-3", given="Alex"),  # no group: Alexander's or Alexandra's
        ]
        as_text = [
            {k: str(v).lower() if isinstance(v, bool) else v for k, v in r.items()} for r in rows
        ]
        linkage = _linkage(runtime, tmp_path)
        tokenised = tokenise_rows(as_text, dataset, linkage, agreement.linkage.match_keys)
        path = tmp_path / "ed-fuzzy.csv"
        write_tokenised(path, tokenised)
        result = _ingest_ed(
            runtime, read_tokenised(path), AtSource(linkage.check_value, linkage.version)
        )
        assert result.linked_by_rule == {
            "variant_dob_postcode": 1,
            "swapped_names_dob_postcode": 1,
        }
        assert result.new_subjects == 1
        assert _count(runtime, SUBJECT) == 3
    finally:
        runtime.engine.dispose()
