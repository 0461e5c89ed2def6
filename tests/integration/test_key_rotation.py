"""The key store on SQLite and PostgreSQL: wrapped random keys, rotation of each kind, shredding."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select, text

from adapters.tokenise import read_tokenised, tokenise_rows, write_tokenised
from broker.bootstrap import Runtime, build_runtime
from broker.clock import FixedClock
from broker.config import Settings
from broker.db.repositories import RECORD, TOKEN
from broker.db.uow import SqlUnitOfWorkFactory
from broker.errors import BatchRejected, Conflict, KeyFileError, NotFound, Refused
from broker.ingest import AtSource
from broker.keys import load_key_file, load_linkage_key_file
from broker.keystore import DATA, KeySlot, wrapping_context
from broker.sealing import SealBroken, associated_data, unseal
from broker.service import LookupResult
from broker.web.app import create_app
from tests.auth_helpers import agency_headers
from tests.helpers import AGREEMENT, IDENTIFIERS, ed_record, example_agreement, school_record

ED = "ed-attendances"
SCHOOL = "school-attendance"


def _school(runtime: Runtime, *records: dict[str, Any]) -> None:
    runtime.broker.ingest_batch(
        agency="school", agreement_id=AGREEMENT, dataset_id=SCHOOL, records=list(records)
    )


def _ed(runtime: Runtime, *records: dict[str, Any], at_source: AtSource | None = None) -> None:
    runtime.broker.ingest_batch(
        agency="ed",
        agreement_id=AGREEMENT,
        dataset_id=ED,
        records=list(records),
        at_source=at_source,
    )


def _lookup(runtime: Runtime, agency: str = "social-care") -> LookupResult:
    purpose = "safeguarding-triage" if agency == "social-care" else "violence-reduction"
    return runtime.broker.lookup(
        agency=agency, agreement_id=AGREEMENT, purpose=purpose, identifiers=IDENTIFIERS
    )


def _providers(result: LookupResult) -> list[str]:
    return sorted(h.agency for h in result.holdings)


def _scalar(runtime: Runtime, sql: str, **params: Any) -> Any:
    with runtime.engine.connect() as connection:
        return connection.execute(text(sql), params).scalar_one()


def _key_operations(runtime: Runtime) -> list[dict[str, Any]]:
    entries = runtime.broker.audit_page(actor="operator", after=0, limit=1000)
    return [e.event.detail for e in entries if e.event.action == "key_operation"]


@pytest.fixture
def linked(runtime: Runtime) -> Runtime:
    """School and ED records about the same young person, linked into one subject."""
    _school(runtime, school_record("SCH-1"), school_record("SCH-2", given="Other"))
    _ed(runtime, ed_record("ED-1"))
    assert _providers(_lookup(runtime)) == ["ed", "school"]
    return runtime


def test_working_keys_are_random_and_stored_only_wrapped(linked: Runtime) -> None:
    broker = linked.broker
    names = {k.name for k in broker.list_keys()}
    assert {f"linkage/{AGREEMENT}", f"data/{AGREEMENT}", "log-signing"} <= names
    assert f"pseudonym/{AGREEMENT}/social-care" in names
    ring = load_key_file(linked.settings.key_file)
    with linked.engine.connect() as connection:
        rows = connection.execute(text("SELECT kind, wrapped FROM wrapped_key")).all()
    wrapped = next(bytes(w) for kind, w in rows if kind == "data")
    data_key = ring.unwrap(wrapped, wrapping_context(_data_slot(), 1))
    # Not derived from the master key (the scheme before the store), and never stored in clear.
    assert len(data_key) == 32
    assert data_key != ring.legacy_key("data", AGREEMENT)
    assert all(data_key not in bytes(w) for _, w in rows)


def test_a_wrapped_key_moved_to_another_slot_does_not_unwrap(linked: Runtime) -> None:
    ring = load_key_file(linked.settings.key_file)
    with linked.engine.connect() as connection:
        wrapped = connection.execute(
            text("SELECT wrapped FROM wrapped_key WHERE kind = 'data'")
        ).scalar_one()
    with pytest.raises(KeyFileError, match="could not be unwrapped"):
        ring.unwrap(bytes(wrapped), wrapping_context(KeySlot("linkage", AGREEMENT), 1))


def test_rotating_the_data_key_reseals_every_payload_and_keeps_every_record(
    linked: Runtime,
) -> None:
    broker = linked.broker
    before = _lookup(linked)
    change = broker.rotate_key("data", AGREEMENT)
    assert (change.version, change.records) == (2, 3)
    assert _scalar(linked, "SELECT count(*) FROM record WHERE key_version = 2") == 3
    after = _lookup(linked)
    assert after.holdings == before.holdings
    assert after.pseudonym == before.pseudonym
    states = {(k.name, k.version): k.state for k in broker.list_keys()}
    assert states[(f"data/{AGREEMENT}", 1)] == "retired"
    # With nothing sealed under it any more, the old version can go.
    destroyed = broker.destroy_key("data", AGREEMENT, version=1, reason="rotated out")
    assert destroyed.records == 0
    assert _lookup(linked).holdings == before.holdings
    operations = [d["operation"] for d in _key_operations(linked)]
    assert operations[-3:] == ["key_rotated", "payloads_resealed", "key_destroyed"]


def test_a_data_key_version_still_sealing_payloads_cannot_be_destroyed_alone(
    linked: Runtime,
) -> None:
    with pytest.raises(Conflict) as active:
        linked.broker.destroy_key("data", AGREEMENT, version=1, reason="x")
    assert active.value.code == "key_in_use"


def test_rotating_a_pseudonym_key_changes_only_that_recipients_pseudonyms(linked: Runtime) -> None:
    broker = linked.broker
    social_before, police_before = _lookup(linked), _lookup(linked, "police")
    broker.rotate_key("pseudonym", AGREEMENT, "social-care")
    social_after, police_after = _lookup(linked), _lookup(linked, "police")
    assert social_before.pseudonym is not None
    assert social_before.pseudonym.startswith("ps_")
    assert social_after.pseudonym is not None
    assert social_after.pseudonym.startswith("ps2_")
    assert social_after.pseudonym != social_before.pseudonym
    assert police_after.pseudonym == police_before.pseudonym
    assert social_after.holdings == social_before.holdings  # the link is untouched
    broker.destroy_key("pseudonym", AGREEMENT, "social-care", version=1, reason="rotated")
    with pytest.raises(Conflict):
        broker.destroy_key("pseudonym", AGREEMENT, "social-care", version=2, reason="in use")


def test_the_linkage_key_rotation_procedure_keeps_every_link(linked: Runtime) -> None:
    broker = linked.broker
    subject_before = _scalar(linked, "SELECT subject_id FROM record WHERE source_ref = 'ED-1'")
    change = broker.rotate_key("linkage", AGREEMENT)
    assert change.version == 2
    # During the rotation a new record links on the old key and also gets new-key tokens.
    _ed(linked, ed_record("ED-2", attendance_date="2026-11-21"))
    subject_new = _scalar(linked, "SELECT subject_id FROM record WHERE source_ref = 'ED-2'")
    assert subject_new == subject_before
    with pytest.raises(Conflict) as early:
        broker.complete_linkage_rotation(AGREEMENT)
    assert early.value.code == "rekey_incomplete"
    assert "school/school-attendance: 2" in early.value.message
    assert "ed/ed-attendances: 1" in early.value.message  # ED-2 already has both
    # Each provider re-sends its records; the broker checks them against what it holds.
    school = broker.rekey_batch(
        agency="school",
        agreement_id=AGREEMENT,
        dataset_id=SCHOOL,
        records=[school_record("SCH-1"), school_record("SCH-2", given="Other")],
    )
    assert (school.records, school.key_version) == (2, 2)
    broker.rekey_batch(
        agency="ed", agreement_id=AGREEMENT, dataset_id=ED, records=[ed_record("ED-1")]
    )
    done = broker.complete_linkage_rotation(AGREEMENT)
    assert done.version == 2
    assert done.records > 0
    assert _scalar(linked, "SELECT count(*) FROM match_token WHERE key_version = 1") == 0
    states = {(k.name, k.version): k.state for k in broker.list_keys()}
    assert states[(f"linkage/{AGREEMENT}", 1)] == "destroyed"
    # Old and new records still form one subject, and later records join it.
    assert _providers(_lookup(linked)) == ["ed", "school"]
    _ed(linked, ed_record("ED-3", attendance_date="2026-11-22"))
    subjects = _scalar(
        linked, "SELECT count(DISTINCT subject_id) FROM record WHERE source_ref LIKE 'ED-%'"
    )
    assert subjects == 1
    operations = [d["operation"] for d in _key_operations(linked)]
    assert "linkage_key_rotation_started" in operations
    assert operations[-1] == "linkage_key_rotation_completed"


def test_a_rekey_batch_with_the_wrong_person_changes_nothing(linked: Runtime) -> None:
    broker = linked.broker
    broker.rotate_key("linkage", AGREEMENT)
    tokens_before = _count(linked, TOKEN)
    with pytest.raises(BatchRejected) as wrong:
        broker.rekey_batch(
            agency="school",
            agreement_id=AGREEMENT,
            dataset_id=SCHOOL,
            records=[school_record("SCH-1"), school_record("SCH-2", given="Amira")],
        )
    assert [p.code for p in wrong.value.problems] == ["record_mismatch"]
    assert wrong.value.problems[0].location.record == 1
    with pytest.raises(BatchRejected) as unknown:
        broker.rekey_batch(
            agency="school",
            agreement_id=AGREEMENT,
            dataset_id=SCHOOL,
            records=[school_record("SCH-404")],
        )
    assert [p.code for p in unknown.value.problems] == ["record_unknown"]
    assert _count(linked, TOKEN) == tokens_before
    refused = linked.broker.audit_page(actor="school", after=0, limit=100)
    assert [e.event.outcome for e in refused if e.event.action == "rekey"] == [
        "refused",
        "refused",
    ]


def test_rekey_without_a_rotation_is_refused(linked: Runtime) -> None:
    with pytest.raises(Conflict) as refused:
        linked.broker.rekey_batch(
            agency="school",
            agreement_id=AGREEMENT,
            dataset_id=SCHOOL,
            records=[school_record("SCH-1")],
        )
    assert refused.value.code == "no_rotation"


def test_at_source_providers_follow_the_rotation(linked: Runtime, tmp_path: Path) -> None:
    broker = linked.broker
    broker.rotate_key("linkage", AGREEMENT)
    path = tmp_path / "ed.linkage.json"
    broker.export_linkage_key(AGREEMENT, path)
    new_key = load_linkage_key_file(path, agreement_id=AGREEMENT)
    assert new_key.version == 2
    dataset = example_agreement().dataset(ED)
    assert dataset is not None
    rows = [{k: str(v).lower() if isinstance(v, bool) else v for k, v in ed_record("ED-1").items()}]
    tokenised = tokenise_rows(rows, dataset, new_key, example_agreement().linkage.match_keys)
    write_tokenised(tmp_path / "ed-tokens.csv", tokenised)
    records = read_tokenised(tmp_path / "ed-tokens.csv")
    at_source = AtSource(new_key.check_value, new_key.version)
    # New records must still come under the key linking uses until the rotation completes.
    with pytest.raises(Conflict) as early:
        _ed(linked, {**records[0], "record_id": "ED-9"}, at_source=at_source)
    assert "rotated" in early.value.message
    assert "rekey" in early.value.message
    result = broker.rekey_batch(
        agency="ed", agreement_id=AGREEMENT, dataset_id=ED, records=records, at_source=at_source
    )
    assert result.records == 1
    broker.rekey_batch(
        agency="school",
        agreement_id=AGREEMENT,
        dataset_id=SCHOOL,
        records=[school_record("SCH-1"), school_record("SCH-2", given="Other")],
    )
    broker.complete_linkage_rotation(AGREEMENT)
    _ed(linked, {**records[0], "record_id": "ED-9"}, at_source=at_source)
    assert _providers(_lookup(linked)) == ["ed", "school"]
    ed_subjects = _scalar(
        linked, "SELECT count(DISTINCT subject_id) FROM record WHERE agency_id = 'ed'"
    )
    assert ed_subjects == 1


def test_destroying_every_data_key_version_shreds_the_agreements_payloads(
    linked: Runtime,
) -> None:
    broker = linked.broker
    with pytest.raises(Conflict) as live:
        broker.destroy_key("data", AGREEMENT, version=None, reason="agreement ended")
    assert live.value.code == "agreement_live"
    with linked.engine.connect() as connection:
        sealed = connection.execute(select(RECORD.c.id, RECORD.c.payload)).all()
    with _keys(linked) as repo:  # the key as it was, to show what it opened
        data_key = linked.broker._keystore.version(repo, _data_slot(), 1)
    assert data_key is not None
    broker.agreements.terminate(AGREEMENT, "partnership dissolved", actor="social-care")
    change = broker.destroy_key("data", AGREEMENT, version=None, reason="agreement ended")
    assert change.records == 3
    left = "SELECT count(*) FROM wrapped_key WHERE kind = 'data' AND wrapped IS NOT NULL"
    assert _scalar(linked, left) == 0
    with _keys(linked) as repo, pytest.raises(KeyFileError, match="no active version"):
        linked.broker._keystore.active(repo, _data_slot())
    # Only the destroyed key ever opened them; a fresh key from the same master cannot.
    wrong = load_key_file(linked.settings.key_file).legacy_key("data", AGREEMENT)
    for record_id, payload in sealed:
        assert unseal(data_key.key, bytes(payload), associated_data(AGREEMENT, record_id))
        with pytest.raises(SealBroken):
            unseal(wrong, bytes(payload), associated_data(AGREEMENT, record_id))
    shred = [d for d in _key_operations(linked) if d["operation"] == "key_destroyed"][-1]
    assert shred["records_shredded"] == 3
    assert shred["versions"] == [1]
    assert "agreement ended" in shred["reason"]


def test_shredded_records_are_never_released(linked: Runtime) -> None:
    broker = linked.broker
    broker.rotate_key("data", AGREEMENT)  # all payloads move to version 2
    # A record sealed under version 1 (as if written by a worker that had not seen
    # the rotation) becomes unreadable when version 1 is destroyed.
    with linked.engine.begin() as connection:
        connection.execute(text("UPDATE record SET key_version = 1 WHERE source_ref = 'ED-1'"))
    with linked.engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE wrapped_key SET state = 'destroyed', wrapped = NULL "
                "WHERE kind = 'data' AND version = 1"
            )
        )
    # Another process changed the keys: this one notices within seconds, or at once here.
    linked.broker._keystore.refresh()
    result = _lookup(linked)
    assert _providers(result) == ["school"]
    entries = linked.broker.audit_page(actor="social-care", after=0, limit=100)
    entry = next(e for e in entries if e.seq == result.audit_entry)
    assert entry.event.detail["shredded_records"] == 1


def test_bad_key_commands_are_clear_errors(linked: Runtime) -> None:
    broker = linked.broker
    with pytest.raises(Refused) as kind:
        broker.rotate_key("log-signing", AGREEMENT)
    assert kind.value.code == "key_kind_unknown"
    with pytest.raises(NotFound):
        broker.rotate_key("data", "no-such-agreement")
    with pytest.raises(Refused) as recipient:
        broker.rotate_key("pseudonym", AGREEMENT)
    assert recipient.value.code == "recipient_needed"
    with pytest.raises(NotFound):
        broker.rotate_key("pseudonym", AGREEMENT, "nobody")
    with pytest.raises(Refused) as reason:
        broker.destroy_key("data", AGREEMENT, version=1, reason="  ")
    assert reason.value.code == "reason_needed"
    with pytest.raises(Refused) as whole:
        broker.destroy_key("linkage", AGREEMENT, version=None, reason="x")
    assert whole.value.code == "version_needed"
    broker.rotate_key("linkage", AGREEMENT)
    with pytest.raises(Conflict) as twice:
        broker.rotate_key("linkage", AGREEMENT)
    assert twice.value.code == "rotation_in_progress"
    with pytest.raises(Conflict) as retiring:
        broker.destroy_key("linkage", AGREEMENT, version=1, reason="x")
    assert retiring.value.code == "key_in_use"


def test_the_master_key_can_come_from_the_environment(
    settings: Settings, clock: FixedClock
) -> None:
    master = base64.b64encode(bytes(range(32))).decode("ascii")
    from_env = settings.model_copy(update={"key_provider": "env", "master_key": _secret(master)})
    runtime = build_runtime(from_env, clock=clock)
    try:
        _school(runtime, school_record("SCH-1"))
    finally:
        runtime.engine.dispose()
    assert not settings.key_file.exists()  # the file provider was never asked
    again = build_runtime(from_env, clock=clock)
    again.engine.dispose()
    other = base64.b64encode(bytes(range(1, 33))).decode("ascii")
    with pytest.raises(KeyFileError, match="BROKER_MASTER_KEY does not match"):
        build_runtime(from_env.model_copy(update={"master_key": _secret(other)}), clock=clock)
    with pytest.raises(KeyFileError, match="32 random bytes") as bad:
        build_runtime(from_env.model_copy(update={"master_key": _secret("c2hvcnQ=")}), clock=clock)
    assert "c2hvcnQ" not in str(bad.value)
    with pytest.raises(KeyFileError, match="not set"):
        build_runtime(from_env.model_copy(update={"master_key": None}), clock=clock)


def test_keys_of_a_database_from_before_the_store_are_adopted(
    runtime: Runtime, settings: Settings, clock: FixedClock
) -> None:
    _school(runtime, school_record("SCH-1"))
    runtime.engine.dispose()
    # A database written before the key store: its keys were derived from the master key.
    with runtime.engine.begin() as connection:
        connection.execute(text("DELETE FROM wrapped_key"))
    adopted = build_runtime(settings, clock=clock)
    try:
        ring = load_key_file(settings.key_file)
        store = adopted.broker._keystore
        with _keys(adopted) as repo:
            data = store.active(repo, _data_slot())
            linkage = store.linkage(repo, AGREEMENT)
        assert (data.version, data.key) == (1, ring.legacy_key("data", AGREEMENT))
        assert linkage.key == ring.legacy_key("linkage", AGREEMENT)
    finally:
        adopted.engine.dispose()


def _secret(value: str) -> SecretStr:
    return SecretStr(value)


def _data_slot() -> KeySlot:
    return KeySlot(DATA, AGREEMENT)


@contextmanager
def _keys(runtime: Runtime) -> Iterator[Any]:
    """The key repository inside a unit of work that is rolled back afterwards."""
    with SqlUnitOfWorkFactory(runtime.engine)() as uow:
        yield uow.keys


def _count(runtime: Runtime, table: Any) -> int:
    with runtime.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


# -- over HTTP -----------------------------------------------------------------------------


def test_rekey_over_http_is_all_or_nothing_with_json_errors(linked: Runtime) -> None:
    rekey = f"/v1/agreements/{AGREEMENT}/datasets/{SCHOOL}/rekey"
    with TestClient(create_app(linked)) as client:
        school = agency_headers(linked.broker, "school")
        early = client.post(rekey, json={"records": [school_record("SCH-1")]}, headers=school)
        assert early.status_code == 409
        assert early.json()["error"]["code"] == "no_rotation"
        linked.broker.rotate_key("linkage", AGREEMENT)
        wrong = client.post(
            rekey,
            json={"records": [school_record("SCH-1"), school_record("SCH-2", given="Amira")]},
            headers=school,
        )
        assert wrong.status_code == 422
        body = wrong.json()["error"]
        assert body["problems"][0]["code"] == "record_mismatch"
        assert body["problems"][0]["location"] == {"record": 1, "field": "record_id"}
        assert "Amira" not in wrong.text
        ok = client.post(
            rekey,
            json={"records": [school_record("SCH-1"), school_record("SCH-2", given="Other")]},
            headers=school,
        )
        assert ok.status_code == 200
        assert ok.json()["records"] == 2
        assert ok.json()["key_version"] == 2
        anonymous = client.post(rekey, json={"records": []})
        assert anonymous.status_code == 401


def test_refused_key_operations_are_audited(linked: Runtime) -> None:
    broker = linked.broker
    with pytest.raises(Conflict):
        broker.destroy_key("data", AGREEMENT, version=None, reason="ended")
    with pytest.raises(Refused):
        broker.rotate_key("master", AGREEMENT)
    with pytest.raises(NotFound):
        broker.rotate_key("data", "no-such-agreement")
    entries = broker.audit_page(actor="operator", after=0, limit=1000)
    refused = [
        (e.event.reason_code, e.event.detail["operation"], e.event.detail["kind"])
        for e in entries
        if e.event.action == "key_operation" and e.event.outcome == "refused"
    ]
    assert refused == [
        ("agreement_live", "destroy", "data"),
        ("key_kind_unknown", "rotate", "other"),
        ("not_found", "rotate", "data"),
    ]
