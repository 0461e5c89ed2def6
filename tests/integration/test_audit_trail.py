"""The audit trail over a real database (SQLite and PostgreSQL): verify, checkpoint, prove.

Everything a partner would check is checked here from the outside: checkpoints
with the broker's published key, inclusion and consistency proofs with
``audit.merkle``, leaf hashes recomputed from the entries as served.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, inspect, select, text

from audit import checkpoint as notes
from audit.entries import leaf_hash
from audit.events import AuditEvent, LoggedEntry
from audit.merkle import InMemoryTree, verify_consistency, verify_inclusion
from audit.tree import root_at
from audit.verify import verify_log
from broker.bootstrap import Runtime, build_runtime
from broker.clock import FixedClock
from broker.config import Settings
from broker.db.engine import create_database_engine
from broker.db.migrate import current_revision, head_revision, upgrade
from broker.db.repositories import AUDIT, CHECKPOINT, SqlAudit
from broker.errors import AuditIntegrityError, NotFound, Refused
from tests.helpers import AGREEMENT, IDENTIFIERS, ed_record, school_record

WITNESS = "witness.police.example"


def _count(runtime: Runtime, table: Any) -> int:
    with runtime.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def _entries(runtime: Runtime) -> list[LoggedEntry]:
    found: list[LoggedEntry] = []
    while page := runtime.broker.audit_page(actor=None, after=len(found), limit=1000):
        found += page
    return found


def _log_key(runtime: Runtime) -> Ed25519PublicKey:
    """The broker's checkpoint key as a partner receives it: published base64 text."""
    raw = base64.b64decode(runtime.broker.audit.public_key_text())
    return Ed25519PublicKey.from_public_bytes(raw)


def _signed_root(runtime: Runtime, note: str, size: int) -> bytes:
    signed = notes.verify(note, runtime.broker.audit.origin, _log_key(runtime))
    assert signed.size == size
    return signed.root_hash


def _public_text(private_key: Ed25519PrivateKey) -> str:
    raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def _ingest(runtime: Runtime, agency: str, ref: str, given: str = "Amira") -> None:
    if agency == "school":
        runtime.broker.ingest_batch(
            agency="school",
            agreement_id=AGREEMENT,
            dataset_id="school-attendance",
            records=[school_record(ref, given=given)],
        )
    else:
        runtime.broker.ingest_batch(
            agency="ed",
            agreement_id=AGREEMENT,
            dataset_id="ed-attendances",
            records=[ed_record(ref, given=given)],
        )


def _lookup(runtime: Runtime, agency: str = "social-care") -> int:
    purpose = {"social-care": "safeguarding-triage", "police": "violence-reduction"}[agency]
    result = runtime.broker.lookup(
        agency=agency, agreement_id=AGREEMENT, purpose=purpose, identifiers=IDENTIFIERS
    )
    assert result.matched
    return result.audit_entry


def _activity(runtime: Runtime) -> int:
    """Two ingests and a lookup; returns the lookup's audit entry."""
    _ingest(runtime, "school", "SCH-1")
    _ingest(runtime, "ed", "ED-1")
    return _lookup(runtime)


@pytest.fixture
def every_three(settings: Settings, clock: FixedClock) -> Iterator[Runtime]:
    """A runtime that signs a checkpoint every three entries."""
    built = build_runtime(settings.model_copy(update={"checkpoint_every_entries": 3}), clock=clock)
    yield built
    built.engine.dispose()


# -- verify and checkpoints -----------------------------------------------------------


def test_the_trail_verifies_after_broker_actions(runtime: Runtime) -> None:
    _activity(runtime)
    entries = _entries(runtime)
    leaves = [leaf_hash(e.seq, e.at, e.event) for e in entries]
    assert [leaf.hex() for leaf in leaves] == [e.leaf_hash for e in entries]
    verified = runtime.broker.audit.verify()
    assert verified.size == len(entries) == _count(runtime, AUDIT)
    assert verified.root_hash == InMemoryTree(leaves).root().hex()
    assert runtime.broker.audit_head() == (verified.size, verified.root_hash)
    assert verified.checkpoints == _count(runtime, CHECKPOINT) == 1  # at 1; every 100 by default
    assert verified.cosignatures == 0


def test_checkpoints_are_signed_every_n_entries_and_all_are_counted(every_three: Runtime) -> None:
    _activity(every_three)
    _lookup(every_three, "police")
    verified = every_three.broker.audit.verify()
    with every_three.engine.connect() as connection:
        sizes = [int(s) for (s,) in connection.execute(select(CHECKPOINT.c.size))]
    assert sorted(sizes) == list(range(1, verified.size + 1, 3))
    assert verified.checkpoints == len(sizes) >= 3
    leaves = [bytes.fromhex(e.leaf_hash) for e in _entries(every_three)]
    tree = InMemoryTree(leaves)
    for size in sizes:
        stored = every_three.broker.audit.checkpoint(size)
        assert _signed_root(every_three, stored.note, size) == tree.root(size)


def test_checkpoint_now_returns_the_latest_when_nothing_changed(runtime: Runtime) -> None:
    _activity(runtime)
    first = runtime.broker.audit.checkpoint_now()
    size, root = runtime.broker.audit_head()
    assert (first.size, first.root_hash) == (size, root)
    assert _signed_root(runtime, first.note, size) == bytes.fromhex(root)
    before = _count(runtime, CHECKPOINT)
    assert runtime.broker.audit.checkpoint_now() == first
    assert runtime.broker.audit.latest_checkpoint() == first
    assert _count(runtime, CHECKPOINT) == before
    _lookup(runtime)
    second = runtime.broker.audit.checkpoint_now()
    assert second.size == first.size + 1
    assert _count(runtime, CHECKPOINT) == before + 1
    assert runtime.broker.audit.verify().checkpoints == before + 1


# -- proofs ---------------------------------------------------------------------------


def test_an_agency_can_prove_its_own_entry_and_no_one_elses(runtime: Runtime) -> None:
    seq = _activity(runtime)
    entry = next(e for e in _entries(runtime) if e.seq == seq)
    assert entry.event.actor == "social-care"
    proof = runtime.broker.audit.inclusion_proof(seq, actor="social-care")
    assert proof.entry == seq
    assert proof.size >= seq
    assert proof.checkpoint.size == proof.size
    # Checked with nothing from the broker but the entry, the proof and the public key.
    leaf = leaf_hash(entry.seq, entry.at, entry.event)
    assert proof.leaf_hash == leaf.hex()
    root = _signed_root(runtime, proof.checkpoint.note, proof.size)
    path = [bytes.fromhex(p) for p in proof.path]
    verify_inclusion(leaf, seq - 1, proof.size, path, root)
    other = leaf_hash(entry.seq, entry.at, AuditEvent("police", "lookup", "permitted"))
    with pytest.raises(AuditIntegrityError):
        verify_inclusion(other, seq - 1, proof.size, path, root)
    with pytest.raises(NotFound) as refused:
        runtime.broker.audit.inclusion_proof(seq, actor="school")
    assert refused.value.code == "entry_unknown"
    with pytest.raises(NotFound):
        runtime.broker.audit.inclusion_proof(seq + 1000, actor="social-care")


def test_entry_one_is_proven_against_the_first_checkpoint(runtime: Runtime) -> None:
    _activity(runtime)
    proof = runtime.broker.audit.inclusion_proof(1)
    assert proof.size == 1  # the first checkpoint covering it
    first = _entries(runtime)[0]
    root = _signed_root(runtime, proof.checkpoint.note, 1)
    assert root == leaf_hash(1, first.at, first.event)
    verify_inclusion(bytes.fromhex(proof.leaf_hash), 0, 1, [], root)


def test_a_consistency_proof_between_two_checkpoints_verifies(runtime: Runtime) -> None:
    _ingest(runtime, "school", "SCH-1")
    old = runtime.broker.audit.checkpoint_now()
    _ingest(runtime, "ed", "ED-1")
    _lookup(runtime)
    new = runtime.broker.audit.checkpoint_now()
    assert new.size > old.size
    proof = runtime.broker.audit.consistency_proof(old.size, new.size)
    assert (proof.old_size, proof.new_size) == (old.size, new.size)
    old_root = _signed_root(runtime, old.note, old.size)
    new_root = _signed_root(runtime, new.note, new.size)
    path = [bytes.fromhex(p) for p in proof.path]
    verify_consistency(old.size, new.size, old_root, new_root, path)
    first = runtime.broker.audit.checkpoint(1)
    with pytest.raises(AuditIntegrityError):  # the proof is for these two trees only
        verify_consistency(old.size, new.size, bytes.fromhex(first.root_hash), new_root, path)


# -- witnesses --------------------------------------------------------------------------


def test_a_witness_cosignature_is_stored_served_and_counted(runtime: Runtime) -> None:
    _activity(runtime)
    witness = Ed25519PrivateKey.generate()
    runtime.broker.audit.add_witness_key(WITNESS, _public_text(witness), actor="operator")
    stored = runtime.broker.audit.checkpoint_now()
    cosigned = notes.add_signature(stored.note, WITNESS, witness)
    assert runtime.broker.audit.add_cosignature(stored.size, cosigned, actor="police") == [WITNESS]
    served = runtime.broker.audit.checkpoint(stored.size)
    assert served.cosignatures == ((WITNESS, cosigned.splitlines()[-1]),)
    assert served.cosigned_note() == cosigned
    latest = runtime.broker.audit.latest_checkpoint()
    assert latest.size == stored.size  # the cosignature's own entry is not yet checkpointed
    assert latest.cosigned_note() == cosigned
    assert notes.verify(latest.cosigned_note(), WITNESS, witness.public_key()).size == stored.size
    verified = runtime.broker.audit.verify()
    assert verified.cosignatures == 1
    # Registering the witness and storing its signature are both in the log.
    operations = [e.event.detail.get("operation") for e in _entries(runtime)]
    assert operations[-2:] == ["witness_registered", "checkpoint_cosigned"]


def test_cosignatures_that_do_not_hold_are_refused(runtime: Runtime) -> None:
    _activity(runtime)
    witness = Ed25519PrivateKey.generate()
    runtime.broker.audit.add_witness_key(WITNESS, _public_text(witness), actor="operator")
    earlier = runtime.broker.audit.checkpoint(1)
    stored = runtime.broker.audit.checkpoint_now()
    trail = runtime.broker.audit

    unknown = notes.add_signature(stored.note, "witness.unknown", witness)
    with pytest.raises(Refused) as refused:
        trail.add_cosignature(stored.size, unknown, actor="police")
    assert refused.value.code == "witness_unknown"

    forged = notes.add_signature(stored.note, WITNESS, Ed25519PrivateKey.generate())
    with pytest.raises(Refused) as refused:
        trail.add_cosignature(stored.size, forged, actor="police")
    assert refused.value.code == "cosignature_invalid"

    elsewhere = notes.add_signature(earlier.note, WITNESS, witness)
    with pytest.raises(Refused) as refused:
        trail.add_cosignature(stored.size, elsewhere, actor="police")
    assert refused.value.code == "cosignature_invalid"

    with pytest.raises(NotFound):
        trail.add_cosignature(stored.size + 1000, elsewhere, actor="police")

    assert trail.checkpoint(stored.size).cosignatures == ()
    assert trail.verify().cosignatures == 0


@pytest.mark.parametrize("shape", ["witness_first", "witness_only"])
def test_a_cosignature_is_accepted_wherever_its_line_stands(runtime: Runtime, shape: str) -> None:
    witness = Ed25519PrivateKey.generate()
    runtime.broker.audit.add_witness_key(WITNESS, _public_text(witness), actor="operator")
    stored = runtime.broker.audit.checkpoint_now()
    lines = notes.add_signature(stored.note, WITNESS, witness).splitlines()
    body, broker_line, witness_line = lines[:4], lines[4], lines[5]
    signatures = [witness_line, broker_line] if shape == "witness_first" else [witness_line]
    note = "\n".join([*body, *signatures]) + "\n"
    assert notes.verify(note, WITNESS, witness.public_key()).size == stored.size
    assert runtime.broker.audit.add_cosignature(stored.size, note, actor="police") == [WITNESS]
    assert runtime.broker.audit.checkpoint(stored.size).cosignatures == ((WITNESS, witness_line),)


# -- tampering in SQL ---------------------------------------------------------------------


def test_an_updated_detail_makes_verify_name_the_entry(runtime: Runtime) -> None:
    seq = _activity(runtime)
    with runtime.engine.begin() as connection:
        connection.execute(
            text("UPDATE audit_entry SET detail = :d WHERE seq = :s"),
            {"d": json.dumps({"matched": False}), "s": seq},
        )
    with pytest.raises(AuditIntegrityError) as broken:
        runtime.broker.audit.verify()
    assert broken.value.message == f"audit entry {seq} has been changed since it was written"
    assert broken.value.location.record == seq


def test_an_entry_rewritten_with_its_leaf_hash_is_caught_by_the_checkpoint(
    runtime: Runtime,
) -> None:
    _activity(runtime)
    first = _entries(runtime)[0]
    detail = {**first.event.detail, "version": 99}
    forged = leaf_hash(1, first.at, AuditEvent(**{**first.event.__dict__, "detail": detail}))
    with runtime.engine.begin() as connection:
        connection.execute(
            text("UPDATE audit_entry SET detail = :d, leaf_hash = :h WHERE seq = 1"),
            {"d": json.dumps(detail, sort_keys=True, separators=(",", ":")), "h": forged.hex()},
        )
    with pytest.raises(AuditIntegrityError) as broken:
        runtime.broker.audit.verify()
    assert "rewritten after it was signed" in broken.value.message
    assert broken.value.location.record == 1


def test_a_changed_stored_node_is_detected(runtime: Runtime) -> None:
    _activity(runtime)
    size, _ = runtime.broker.audit_head()
    # The leaf at an even index of an odd-sized tree is on the root's path.
    if size % 2 == 0:
        _lookup(runtime)
        size += 1
    with runtime.engine.begin() as connection:
        changed = connection.execute(
            text("UPDATE merkle_node SET hash = :h WHERE level = 0 AND idx = :i"),
            {"h": hashlib.sha256(b"forged").digest(), "i": size - 1},
        )
        assert changed.rowcount == 1
    with pytest.raises(AuditIntegrityError) as broken:
        runtime.broker.audit.verify()
    assert "does not match the entries" in broken.value.message


# -- concurrency ---------------------------------------------------------------------------


def test_concurrent_appends_from_separate_engines_make_one_linear_log(
    settings: Settings, clock: FixedClock, runtime: Runtime
) -> None:
    _ingest(runtime, "school", "SCH-0")  # so that lookups match
    before = runtime.broker.audit.verify().size
    every_seven = settings.model_copy(update={"checkpoint_every_entries": 7})
    workers = [build_runtime(every_seven, clock=clock) for _ in range(4)]
    after_start = runtime.broker.audit.verify().size  # installs are idempotent
    assert after_start == before
    failures: list[BaseException] = []
    start = threading.Barrier(len(workers))

    def work(number: int, worker: Runtime) -> None:
        try:
            start.wait()
            for step in range(25):
                if step % 5 == 0:
                    _ingest(
                        worker,
                        "ed",
                        f"ED-{number}-{step}",
                        given=f"Worker{'abcd'[number]}{chr(97 + step)}",
                    )
                else:
                    _lookup(worker, ("social-care", "police")[step % 2])
        except BaseException as exc:  # handed to the main thread
            failures.append(exc)

    threads = [
        threading.Thread(target=work, args=(n, w), name=f"worker-{n}")
        for n, w in enumerate(workers)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    finally:
        for worker in workers:
            worker.engine.dispose()
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    # Per worker: 5 ingests (an ingest and a link entry each) and 20 lookups.
    expected = before + 4 * (5 * 2 + 20)
    verified = runtime.broker.audit.verify()
    assert verified.size == expected
    seqs = [e.seq for e in _entries(runtime)]
    assert seqs == list(range(1, expected + 1))
    assert _count(runtime, AUDIT) == expected
    assert verified.checkpoints == _count(runtime, CHECKPOINT) >= 4 * 30 // 7


# -- migration from the hash chain -----------------------------------------------------------


def _v1_chain_hash(prev: str, seq: int, at: str, event: AuditEvent) -> str:
    """How release 1 chained entries (audit/chain.py before migration 0003)."""
    body = {
        "v": 1,
        "seq": seq,
        "at": at,
        "actor": event.actor,
        "action": event.action,
        "outcome": event.outcome,
        "reason_code": event.reason_code,
        "agreement_id": event.agreement_id,
        "agreement_version": event.agreement_version,
        "purpose": event.purpose,
        "dataset_id": event.dataset_id,
        "request_id": event.request_id,
        "detail": event.detail,
    }
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(b"accord.audit.v1\x00" + bytes.fromhex(prev) + data).hexdigest()


OLD_EVENTS = [
    AuditEvent("operator", "key_operation", "permitted", detail={"operation": "x", "version": 1}),
    AuditEvent(
        "school",
        "ingest",
        "permitted",
        agreement_id=AGREEMENT,
        agreement_version=1,
        dataset_id="school-attendance",
        detail={"records": 2, "fields": ["attendance_pct"]},
    ),
    AuditEvent(
        "social-care",
        "lookup",
        "permitted",
        agreement_id=AGREEMENT,
        agreement_version=1,
        purpose="safeguarding-triage",
        request_id="req-7",
        detail={"matched": True, "subject": "sub_abc", "released": [], "name": "Zoë"},
    ),
    AuditEvent("police", "lookup", "refused", reason_code="purpose_unknown", detail={}),
    AuditEvent("operator", "credential_issued", "permitted", detail={"agency": "ed"}),
]


def test_migration_0003_rebuilds_leaves_nodes_and_root_from_a_populated_log(
    database_url: str, settings: Settings, clock: FixedClock
) -> None:
    engine = create_database_engine(database_url)
    try:
        upgrade(engine, "0002")
        assert current_revision(engine) == "0002"
        prev, times = "0" * 64, [f"2026-11-20T09:0{n}:00+00:00" for n in range(len(OLD_EVENTS))]
        with engine.begin() as connection:
            for seq, (item, at) in enumerate(zip(OLD_EVENTS, times, strict=True), start=1):
                entry_hash = _v1_chain_hash(prev, seq, at, item)
                connection.execute(
                    text(
                        "INSERT INTO audit_entry (seq, at, actor, action, outcome, reason_code, "
                        "agreement_id, agreement_version, purpose, dataset_id, request_id, "
                        "detail, prev_hash, entry_hash) VALUES (:seq, :at, :actor, :action, "
                        ":outcome, :reason_code, :agreement_id, :agreement_version, :purpose, "
                        ":dataset_id, :request_id, :detail, :prev, :hash)"
                    ),
                    {
                        **item.__dict__,
                        "seq": seq,
                        "at": at,
                        "detail": json.dumps(item.detail, sort_keys=True, separators=(",", ":")),
                        "prev": prev,
                        "hash": entry_hash,
                    },
                )
                prev = entry_hash
            connection.execute(
                text("UPDATE audit_head SET size = :n, head_hash = :h WHERE id = 1"),
                {"n": len(OLD_EVENTS), "h": prev},
            )
        upgrade(engine)
        assert current_revision(engine) == head_revision()

        pairs = enumerate(zip(OLD_EVENTS, times, strict=True), start=1)
        leaves = [leaf_hash(n, t, e) for n, (e, t) in pairs]
        tree = InMemoryTree(leaves)
        signer_key = Ed25519PrivateKey.generate()
        with engine.connect() as connection:
            columns = {c["name"] for c in inspect(connection).get_columns("audit_entry")}
            assert {"prev_hash", "entry_hash"}.isdisjoint(columns)
            assert "leaf_hash" in columns
            audit = SqlAudit(connection)
            entries = list(audit.iter_all())
            assert [e.event for e in entries] == OLD_EVENTS
            assert [e.leaf_hash for e in entries] == [leaf.hex() for leaf in leaves]
            assert audit.head() == (len(OLD_EVENTS), tree.root().hex())
            for size in range(1, len(OLD_EVENTS) + 1):
                assert root_at(audit.nodes, size) == tree.root(size)
            subjects = connection.execute(
                text("SELECT seq FROM audit_entry WHERE subject_id = 'sub_abc'")
            ).all()
            assert [row[0] for row in subjects] == [3]
            assert audit.checkpoints() == []
            verified = verify_log(
                audit.iter_all(),
                head_size=len(OLD_EVENTS),
                head_root=tree.root().hex(),
                stored_root=lambda n: root_at(audit.nodes, n),
                checkpoints=[],
                origin="accord.local/audit",
                log_key=signer_key.public_key(),
                witness_keys={},
            )
        assert (verified.size, verified.root_hash) == (len(OLD_EVENTS), tree.root().hex())
    finally:
        engine.dispose()

    # The upgraded broker appends to the rebuilt tree and signs its first checkpoint.
    runtime = build_runtime(settings, clock=clock)
    try:
        verified = runtime.broker.audit.verify()
        assert verified.size > len(OLD_EVENTS)
        assert verified.checkpoints >= 1
        assert [e.event for e in _entries(runtime)[: len(OLD_EVENTS)]] == OLD_EVENTS
        proof = runtime.broker.audit.inclusion_proof(3, actor="social-care")
        root = _signed_root(runtime, proof.checkpoint.note, proof.size)
        path = [bytes.fromhex(p) for p in proof.path]
        verify_inclusion(leaves[2], 2, proof.size, path, root)
    finally:
        runtime.engine.dispose()
