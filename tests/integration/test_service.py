"""The broker's use cases against a real database, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from agreements.demo_approvals import approve_for_demo
from broker.bootstrap import Runtime, build_runtime
from broker.clock import FixedClock
from broker.config import Settings
from broker.db.repositories import AUDIT, RECORD, SUBJECT, TOKEN
from broker.errors import (
    AgreementError,
    AuditIntegrityError,
    AuthenticationFailed,
    BatchRejected,
    ConfigError,
    Conflict,
    KeyFileError,
    Refused,
    StorageError,
)
from broker.keys import create_key_file
from broker.principal import Principal, Role
from tests.auth_helpers import client_token, register_agency_client
from tests.conftest import EXAMPLES
from tests.helpers import AGREEMENT, IDENTIFIERS, ed_record, school_record


def _count(runtime: Runtime, table: object) -> int:
    with runtime.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def _ingest_pair(runtime: Runtime) -> None:
    broker = runtime.broker
    broker.ingest_batch(
        agency="school",
        agreement_id=AGREEMENT,
        dataset_id="school-attendance",
        records=[school_record("SCH-1"), school_record("SCH-2", given="Bilal", family="Hussain")],
    )
    broker.ingest_batch(
        agency="ed",
        agreement_id=AGREEMENT,
        dataset_id="ed-attendances",
        records=[ed_record("ED-1")],
    )


def test_same_young_person_is_linked_across_agencies(runtime: Runtime) -> None:
    broker = runtime.broker
    first = broker.ingest_batch(
        agency="school",
        agreement_id=AGREEMENT,
        dataset_id="school-attendance",
        records=[school_record("SCH-1")],
    )
    second = broker.ingest_batch(
        agency="ed",
        agreement_id=AGREEMENT,
        dataset_id="ed-attendances",
        records=[ed_record("ED-1", given="amira", family="OKAFOR")],
    )
    assert (first.new_subjects, first.linked) == (1, 0)
    assert (second.new_subjects, second.linked) == (0, 1)
    assert second.linked_by_rule == {"name_dob_postcode": 1}
    assert _count(runtime, SUBJECT) == 1


def test_lookup_releases_only_permitted_fields_in_their_forms(runtime: Runtime) -> None:
    _ingest_pair(runtime)
    result = runtime.broker.lookup(
        agency="social-care",
        agreement_id=AGREEMENT,
        purpose="safeguarding-triage",
        identifiers=IDENTIFIERS,
    )
    assert result.matched
    assert result.pseudonym is not None
    assert result.pseudonym.startswith("ps_")
    by_agency = {h.agency: h for h in result.holdings}
    assert set(by_agency) == {"school", "ed"}
    school_fields = by_agency["school"].records[0].fields
    assert school_fields == {
        "attendance_pct": 82.5,
        "persistent_absence": True,
        "excluded": False,
    }  # sen_support is special category and not released to social care
    assert by_agency["ed"].records[0].fields == {
        "attendance_date": "2026-11-20",
        "injury_type": "sharps",
        "safeguarding_referral_made": True,
    }
    assert by_agency["ed"].records[0].reference == "ED-1"

    police = runtime.broker.lookup(
        agency="police",
        agreement_id=AGREEMENT,
        purpose="violence-reduction",
        identifiers=IDENTIFIERS,
    )
    ed = next(h for h in police.holdings if h.agency == "ed")
    assert ed.records[0].fields == {"injury_type": "sharps", "attendance_date": "2026-11"}
    assert ed.records[0].reference is None
    assert police.pseudonym != result.pseudonym


def test_lookup_of_unknown_person_matches_nothing(runtime: Runtime) -> None:
    _ingest_pair(runtime)
    result = runtime.broker.lookup(
        agency="social-care",
        agreement_id=AGREEMENT,
        purpose="safeguarding-triage",
        identifiers={**IDENTIFIERS, "given_name": "Somebody"},
    )
    assert not result.matched
    assert result.holdings == ()
    assert result.pseudonym is None


def test_refused_lookup_is_audited_with_its_reason(runtime: Runtime) -> None:
    with pytest.raises(Refused) as refused:
        runtime.broker.lookup(
            agency="school",
            agreement_id=AGREEMENT,
            purpose="safeguarding-triage",
            identifiers=IDENTIFIERS,
            fields=[("police-incidents", "incident_type")],
        )
    assert refused.value.code == "field_not_permitted"
    entries = runtime.broker.audit_page(actor="school", after=0, limit=10)
    assert [(e.event.action, e.event.outcome, e.event.reason_code) for e in entries] == [
        ("lookup", "refused", "field_not_permitted")
    ]


def test_rejected_batch_stores_nothing_and_is_audited(runtime: Runtime) -> None:
    bad = [school_record("SCH-1"), school_record("SCH-2", date_of_birth="2011-02-30")]
    with pytest.raises(BatchRejected) as rejected:
        runtime.broker.ingest_batch(
            agency="school", agreement_id=AGREEMENT, dataset_id="school-attendance", records=bad
        )
    assert rejected.value.problems[0].location.record == 1
    assert rejected.value.problems[0].location.field == "date_of_birth"
    for table in (RECORD, SUBJECT, TOKEN):
        assert _count(runtime, table) == 0
    entries = runtime.broker.audit_page(actor="school", after=0, limit=10)
    assert len(entries) == 1
    assert entries[0].event.outcome == "refused"
    assert entries[0].event.detail == {"problems": {"identifier_invalid": 1}, "records": 2}


def test_every_step_is_audited_and_the_log_verifies(runtime: Runtime) -> None:
    _ingest_pair(runtime)
    runtime.broker.lookup(
        agency="social-care",
        agreement_id=AGREEMENT,
        purpose="safeguarding-triage",
        identifiers=IDENTIFIERS,
    )
    entries = runtime.broker.audit_page(actor=None, after=0, limit=100)
    actions = [(e.event.actor, e.event.action) for e in entries]
    installed = [e for e in entries if e.event.action == "agreement_change"]
    # Start-up records the master key, then installs each example agreement file.
    assert {e.event.detail["operation"] for e in installed} == {"installed_from_file"}
    assert AGREEMENT in {e.event.agreement_id for e in installed}
    actions = [a for a in actions if a[1] != "agreement_change"]
    assert actions == [
        ("operator", "key_operation"),
        ("school", "ingest"),
        ("school", "link"),
        ("ed", "ingest"),
        ("ed", "link"),
        ("social-care", "lookup"),
    ]
    lookup = entries[-1].event.detail
    assert lookup["matched"] is True
    assert {"field": "ed-attendances.injury_type", "form": "as_supplied"} in lookup["released"]
    verified = runtime.broker.verify_audit()
    assert verified.size == len(entries)


@pytest.mark.parametrize("column", ["detail", "actor", "at", "leaf_hash"])
def test_tampering_with_a_stored_entry_is_detected(runtime: Runtime, column: str) -> None:
    _ingest_pair(runtime)
    value = {
        "detail": "{}",
        "actor": "police",
        "at": "2020-01-01T00:00:00+00:00",
        "leaf_hash": "f" * 64,
    }[column]
    with runtime.engine.begin() as connection:
        connection.execute(
            # column comes from the parametrize list above, never from input
            text(f"UPDATE audit_entry SET {column} = :v WHERE seq = 3"),  # noqa: S608
            {"v": value},
        )
    with pytest.raises(AuditIntegrityError) as broken:
        runtime.broker.verify_audit()
    assert broken.value.location.record == 3


def test_deleting_the_last_entry_is_detected(runtime: Runtime) -> None:
    _ingest_pair(runtime)
    with runtime.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_entry WHERE seq = 4"))
    with pytest.raises(AuditIntegrityError) as broken:
        runtime.broker.verify_audit()
    assert broken.value.location.record == 4


def test_database_holds_no_clear_identifier_or_payload(runtime: Runtime) -> None:
    _ingest_pair(runtime)
    planted = ["amira", "okafor", "bilal", "hussain", "2011-03-14", "ns1 4ab", "ns14ab", "sharps"]
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


def test_a_different_key_file_is_refused(
    settings: Settings, clock: FixedClock, runtime: Runtime
) -> None:
    _ingest_pair(runtime)
    settings.key_file.unlink()
    with pytest.raises(Exception) as refused:  # noqa: PT011 - the exact class is asserted below
        build_runtime(settings, clock=clock)
    assert "key" in str(refused.value).lower()
    other = settings.model_copy(update={"key_file": settings.key_file.with_name("other.key")})
    create_key_file(other.key_file, at=clock.now())
    with pytest.raises(KeyFileError):
        build_runtime(other, clock=clock)


def test_audit_entries_never_hold_identifiers(runtime: Runtime) -> None:
    _ingest_pair(runtime)
    runtime.broker.lookup(
        agency="social-care",
        agreement_id=AGREEMENT,
        purpose="safeguarding-triage",
        identifiers=IDENTIFIERS,
    )
    with runtime.engine.connect() as connection:
        rows = connection.execute(select(AUDIT)).all()
    dump = " ".join(str(tuple(r)) for r in rows).lower()
    for value in ("amira", "okafor", "2011-03-14", "ns1 4ab", "sharps", "82.5"):
        assert value not in dump


def test_a_failed_audit_append_rolls_back_the_action(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_append(*_args: object, **_kwargs: object) -> None:
        raise StorageError("audit store unavailable")

    before = runtime.broker.verify_audit().size
    monkeypatch.setattr("audit.log.append", failing_append)
    with pytest.raises(StorageError):
        runtime.broker.ingest_batch(
            agency="school",
            agreement_id=AGREEMENT,
            dataset_id="school-attendance",
            records=[school_record("SCH-1")],
        )
    monkeypatch.undo()
    for table in (RECORD, SUBJECT, TOKEN):
        assert _count(runtime, table) == 0
    assert runtime.broker.verify_audit().size == before


def test_tokens_under_two_agreements_cannot_be_joined(
    settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    folder = tmp_path / "two"
    folder.mkdir()
    example = (EXAMPLES / f"{AGREEMENT}.yaml").read_text()
    (folder / "a.yaml").write_text(example)
    (folder / "b.yaml").write_text(example.replace(f"id: {AGREEMENT}", "id: sv-second", 1))
    # A changed agreement carries its old approvals, which no longer match: approve it again.
    approve_for_demo(folder / "b.yaml")
    built = build_runtime(settings.model_copy(update={"agreements_dir": folder}), clock=clock)
    try:
        for agreement in (AGREEMENT, "sv-second"):
            built.broker.ingest_batch(
                agency="school",
                agreement_id=agreement,
                dataset_id="school-attendance",
                records=[school_record("SCH-1")],
            )
        with built.engine.connect() as connection:
            rows = connection.execute(select(TOKEN.c.agreement_id, TOKEN.c.token)).all()
        first = {token for agreement, token in rows if agreement == AGREEMENT}
        second = {token for agreement, token in rows if agreement == "sv-second"}
        assert len(first) == len(second) == 1
        assert first.isdisjoint(second)
    finally:
        built.engine.dispose()


def test_a_disabled_client_no_longer_authenticates(runtime: Runtime) -> None:
    credential = register_agency_client(runtime.broker, "police")
    token = client_token(runtime.broker, credential)
    expected = Principal(credential.client_id, Role.SYSTEM, "police")
    assert runtime.broker.authenticate(token) == expected
    runtime.broker.identity.disable_client(credential.client_id, reason="key may have leaked")
    with pytest.raises(AuthenticationFailed):
        runtime.broker.authenticate(token)


def test_a_record_stored_concurrently_is_a_conflict_not_a_server_error(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = {"agency": "school", "agreement_id": AGREEMENT, "dataset_id": "school-attendance"}
    runtime.broker.ingest_batch(**batch, records=[school_record("SCH-1")])
    # As if a second worker checked for the record before the first committed it.
    monkeypatch.setattr(
        "broker.db.repositories.SqlRecords.existing_refs", lambda *_args, **_kw: set()
    )
    with pytest.raises(Conflict):
        runtime.broker.ingest_batch(**batch, records=[school_record("SCH-1")])
    assert _count(runtime, RECORD) == 1


def test_production_refuses_the_shipped_example_agreements(
    settings: Settings, clock: FixedClock
) -> None:
    production = settings.model_copy(
        update={"environment": "production", "agreements_dir": EXAMPLES}
    )
    with pytest.raises(ConfigError, match="example agreements"):
        build_runtime(production, clock=clock)


def test_production_refuses_approvals_by_unregistered_keys(
    settings: Settings, clock: FixedClock
) -> None:
    # A copy of the examples elsewhere still carries only throwaway demonstration keys.
    production = settings.model_copy(update={"environment": "production"})
    with pytest.raises(AgreementError, match="not registered"):
        build_runtime(production, clock=clock)


def test_only_the_match_keys_the_agreement_names_link_records(
    settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    folder = tmp_path / "nhs-only"
    folder.mkdir()
    text = (EXAMPLES / f"{AGREEMENT}.yaml").read_text()
    target = "  match_keys: [nhs, name_dob_postcode]\n"
    assert target in text
    (folder / "a.yaml").write_text(text.replace(target, "  match_keys: [nhs]\n"))
    approve_for_demo(folder / "a.yaml")
    built = build_runtime(settings.model_copy(update={"agreements_dir": folder}), clock=clock)
    try:
        _ingest_pair(built)
        with built.engine.connect() as connection:
            keys = {row[0] for row in connection.execute(select(TOKEN.c.match_key))}
            subjects = connection.execute(select(func.count()).select_from(SUBJECT)).scalar()
        # Name, date of birth and postcode would have linked ED-1 to SCH-1; here they may not.
        assert keys <= {"nhs"}
        assert subjects == 3
    finally:
        built.engine.dispose()
