"""The Merkle audit log over an in-memory repository: what it writes, and what it detects.

Each tampering test changes the stored log the way someone with write access to
the database could, and checks that ``verify_log`` refuses it, naming the entry
(or checkpoint) where the log stops being what was written.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json

import pytest

from audit import checkpoint as notes
from audit.entries import FORMAT_VERSION, canonical_entry, leaf_hash, seal_entry
from audit.events import LoggedEntry
from audit.log import append, checkpoint_now
from audit.merkle import (
    EMPTY_ROOT,
    InMemoryTree,
    verify_consistency,
    verify_inclusion,
)
from audit.tree import consistency_proof_at, inclusion_proof_at, nodes_for_append, root_at
from broker.errors import AuditIntegrityError
from tests.audit_fakes import (
    ORIGIN,
    DuplicateKey,
    MemoryAudit,
    as_repository,
    at,
    event,
    fill,
    key,
    reseal,
    signer,
    verify,
)

SIGNER = signer(every_entries=4)
WITNESS = key(100)
WITNESS_NAME = "witness.police.example"


def _log(size: int = 10, every_entries: int = 4) -> MemoryAudit:
    audit = MemoryAudit()
    fill(audit, (event(n) for n in range(size)), log_signer=signer(every_entries=every_entries))
    return audit


def _broken(audit: MemoryAudit, **kwargs: object) -> AuditIntegrityError:
    with pytest.raises(AuditIntegrityError) as raised:
        verify(audit, SIGNER, **kwargs)  # type: ignore[arg-type]
    return raised.value


def _replace(audit: MemoryAudit, seq: int, new: LoggedEntry) -> None:
    audit.entries = [new if e.seq == seq else e for e in audit.entries]


def _entry(audit: MemoryAudit, seq: int) -> LoggedEntry:
    found = audit.entry(seq)
    assert found is not None
    return found


# -- the fake itself ---------------------------------------------------------------


def test_the_fake_is_a_full_audit_repository() -> None:
    audit = MemoryAudit()
    repository = as_repository(audit)
    assert repository.head() == (0, EMPTY_ROOT.hex())
    entry = append(repository, event(1), at=at(0))
    assert repository.entry(1) == entry
    assert repository.entry(2) is None
    with pytest.raises(DuplicateKey):
        repository.append(entry)
    append(repository, event(2, actor="police"), at=at(1))
    assert [e.seq for e in repository.page(actor="police", after=0, limit=5)] == [2]
    assert [e.seq for e in repository.page(actor=None, after=1, limit=5)] == [2]
    assert repository.latest_checkpoint() is None  # no signer, no checkpoint


# -- entries and leaves ------------------------------------------------------------


def test_canonical_entry_is_sorted_compact_json_of_format_2() -> None:
    item = event(7, detail={"zeta": 1, "alpha": ["x", "y"], "name": "Zoë"})
    data = canonical_entry(3, at(5), item)
    assert b" " not in data.replace("Zoë".encode(), b"")
    body = json.loads(data)
    assert body["v"] == FORMAT_VERSION == 2
    assert body["seq"] == 3
    assert body["at"] == at(5)
    assert body["actor"] == item.actor
    assert body["detail"] == item.detail
    assert list(body) == sorted(body)
    assert list(body["detail"]) == sorted(body["detail"])
    expected = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert data == expected.encode()
    assert "Zoë".encode() in data  # UTF-8, not \u escapes


def test_leaf_hash_is_sha256_of_zero_byte_then_canonical_bytes() -> None:
    item = event(1)
    expected = hashlib.sha256(b"\x00" + canonical_entry(1, at(0), item)).digest()
    assert leaf_hash(1, at(0), item) == expected
    assert seal_entry(1, at(0), item).leaf_hash == expected.hex()
    # Position and time are part of the leaf.
    assert leaf_hash(2, at(0), item) != expected
    assert leaf_hash(1, at(1), item) != expected


# -- appending ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 9, 33])
def test_appended_events_verify_with_the_right_size_and_root(size: int) -> None:
    audit = MemoryAudit()
    events = [event(n, actor=("school", "ed", "police")[n % 3]) for n in range(size)]
    written = fill(audit, events, log_signer=SIGNER)
    assert [e.seq for e in written] == list(range(1, size + 1))
    assert [e.event for e in audit.iter_all()] == events
    leaves = [
        hashlib.sha256(b"\x00" + canonical_entry(e.seq, e.at, e.event)).digest() for e in written
    ]
    root = InMemoryTree(leaves).root()
    assert audit.head() == (size, root.hex())
    assert root_at(audit.nodes, size) == root
    verified = verify(audit, SIGNER)
    assert (verified.size, verified.root_hash) == (size, root.hex())
    assert verified.checkpoints == len(audit.checkpoints()) >= 1
    assert verified.cosignatures == 0
    assert audit.head_locks == size  # every append took the head first


def test_the_head_root_after_each_append_is_the_root_of_the_leaves_so_far() -> None:
    audit = MemoryAudit()
    tree = InMemoryTree()
    for n in range(20):
        written = append(audit, event(n), at=at(n))
        tree.append(bytes.fromhex(written.leaf_hash))
        assert audit.head() == (n + 1, tree.root().hex())
        for earlier in range(1, n + 2):
            assert root_at(audit.nodes, earlier) == tree.root(earlier)


def test_checkpoints_are_signed_at_one_then_every_n_entries() -> None:
    audit = _log(size=14, every_entries=4)
    assert [c.size for c in audit.checkpoints()] == [1, 5, 9, 13]
    tree = InMemoryTree([bytes.fromhex(e.leaf_hash) for e in audit.iter_all()])
    for stored in audit.checkpoints():
        signed = notes.verify(stored.note, ORIGIN, SIGNER.public_key)
        assert signed.size == stored.size
        assert signed.root_hash == tree.root(stored.size)
        assert stored.root_hash == tree.root(stored.size).hex()
        assert stored.created_at == at(stored.size - 1)


def test_a_checkpoint_is_signed_when_the_interval_has_elapsed() -> None:
    log_signer = signer(every_entries=100, every_seconds=60)
    audit = MemoryAudit()
    # Entry times in seconds; the first entry is always checkpointed.
    times = [0, 10, 59, 60, 61, 119, 121, 500, 501]
    fill(audit, (event(n) for n in range(len(times))), log_signer=log_signer, seconds=times)
    # 60 s after entry 1 (entry 4), 60 s after that (entry 7 at 121 s), then entry 8 at 500 s.
    assert [(c.size, c.created_at) for c in audit.checkpoints()] == [
        (1, at(0)),
        (4, at(60)),
        (7, at(121)),
        (8, at(500)),
    ]
    assert verify(audit, log_signer).checkpoints == 4


def test_no_signer_signs_nothing_and_checkpoint_now_signs_the_current_size() -> None:
    audit = MemoryAudit()
    fill(audit, (event(n) for n in range(6)), log_signer=None)
    assert audit.checkpoints() == []
    first = checkpoint_now(audit, SIGNER, at=at(100))
    assert (first.size, first.root_hash) == (6, audit.head_root)
    assert checkpoint_now(audit, SIGNER, at=at(200)) == first  # nothing new: the same one
    append(audit, event(6), at=at(300))
    second = checkpoint_now(audit, SIGNER, at=at(400))
    assert second.size == 7
    assert [c.size for c in audit.checkpoints()] == [6, 7]
    assert verify(audit, SIGNER).checkpoints == 2


def test_proofs_from_the_stored_nodes_verify_against_signed_checkpoints() -> None:
    audit = _log(size=14, every_entries=4)
    for stored in audit.checkpoints():
        root = notes.verify(stored.note, ORIGIN, SIGNER.public_key).root_hash
        for index in range(stored.size):
            leaf = bytes.fromhex(_entry(audit, index + 1).leaf_hash)
            proof = inclusion_proof_at(audit.nodes, index, stored.size)
            verify_inclusion(leaf, index, stored.size, proof, root)
        later = audit.latest_checkpoint()
        assert later is not None
        proof = consistency_proof_at(audit.nodes, stored.size, later.size)
        verify_consistency(stored.size, later.size, root, bytes.fromhex(later.root_hash), proof)


# -- tampering with entries ----------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"detail": {}},
        {"detail": {"matched": True, "subject": "sub_0004", "released": ["x"]}},
        {"actor": "police"},
        {"reason_code": "field_not_permitted"},
        {"at": at(999)},
    ],
    ids=lambda c: next(iter(c)),
)
@pytest.mark.parametrize("seq", [1, 6, 10])
def test_a_changed_entry_is_named(change: dict[str, object], seq: int) -> None:
    audit = _log()
    entry = _entry(audit, seq)
    entry_fields = {k: v for k, v in change.items() if k in {"seq", "at"}}
    event_fields = {k: v for k, v in change.items() if k not in entry_fields}
    tampered = dataclasses.replace(
        entry,
        **entry_fields,  # type: ignore[arg-type]
        event=dataclasses.replace(entry.event, **event_fields),  # type: ignore[arg-type]
    )
    assert tampered != entry
    _replace(audit, seq, tampered)
    broken = _broken(audit)
    assert broken.message == f"audit entry {seq} has been changed since it was written"
    assert broken.location.record == seq
    assert broken.code == "audit_tampered"


@pytest.mark.parametrize("seq", [1, 5, 10])
def test_a_changed_leaf_hash_is_named(seq: int) -> None:
    audit = _log()
    entry = _entry(audit, seq)
    _replace(audit, seq, dataclasses.replace(entry, leaf_hash="f" * 64))
    broken = _broken(audit)
    assert broken.message == f"audit entry {seq} has been changed since it was written"
    assert broken.location.record == seq


@pytest.mark.parametrize(("seq", "checkpoint"), [(1, 1), (2, 5), (5, 5), (7, 9), (9, 9)])
def test_an_entry_rewritten_with_its_leaf_hash_is_caught_by_the_checkpoint_over_it(
    seq: int, checkpoint: int
) -> None:
    audit = _log(size=10, every_entries=4)  # checkpoints at 1, 5 and 9
    entry = _entry(audit, seq)
    _replace(audit, seq, reseal(entry, detail={"matched": False}))
    broken = _broken(audit)
    assert broken.message == (
        f"entries up to {checkpoint} do not match the checkpoint signed at that size: "
        "the log was rewritten after it was signed"
    )
    assert broken.location.record == checkpoint


def test_an_entry_rewritten_after_the_last_checkpoint_is_caught_by_its_stored_leaf() -> None:
    audit = _log(size=10, every_entries=4)  # entry 10 is after the checkpoint at 9
    _replace(audit, 10, reseal(_entry(audit, 10), actor="police"))
    broken = _broken(audit)
    assert broken.message.startswith("the stored tree node over entries 10 to 10")
    assert broken.location.record == 10


def test_a_rewrite_with_a_new_head_is_caught_by_the_stored_nodes() -> None:
    audit = _log(size=10, every_entries=4)
    rewritten = [reseal(e, detail={"hidden": True}) if e.seq == 10 else e for e in audit.iter_all()]
    audit.entries = rewritten
    audit.head_root = InMemoryTree([bytes.fromhex(e.leaf_hash) for e in rewritten]).root().hex()
    broken = _broken(audit)
    assert "does not match the entries; proofs built from it would be wrong" in broken.message


def _rewrite_everything(audit: MemoryAudit, entries: list[LoggedEntry]) -> None:
    """Replace entries, nodes and head consistently: all an attacker without the key can do."""
    fresh = MemoryAudit()
    for entry in entries:
        fresh.append(entry)
        leaf = [bytes.fromhex(entry.leaf_hash)]
        fresh.nodes.put_nodes(nodes_for_append(fresh.nodes, entry.seq - 1, leaf))
    audit.entries = entries
    audit.nodes.nodes = fresh.nodes.nodes
    audit.set_head(len(entries), root_at(fresh.nodes, len(entries)).hex())


@pytest.mark.parametrize(("seq", "checkpoint"), [(1, 1), (3, 5), (9, 9)])
def test_a_full_rewrite_under_a_checkpoint_is_caught_by_it(seq: int, checkpoint: int) -> None:
    audit = _log(size=10)  # checkpoints at 1, 5, 9
    entries = [reseal(e, detail={"hidden": True}) if e.seq == seq else e for e in audit.iter_all()]
    _rewrite_everything(audit, entries)
    broken = _broken(audit)
    assert broken.message.startswith(f"entries up to {checkpoint} do not match the checkpoint")
    assert broken.location.record == checkpoint


def test_a_full_rewrite_after_the_last_checkpoint_is_beyond_the_brokers_own_checks() -> None:
    # The limit of what the broker can show alone: entries after its last checkpoint
    # are covered only once a later checkpoint is signed and witnessed.
    audit = _log(size=10)  # checkpoints at 1, 5, 9
    entries = [reseal(e, detail={"hidden": True}) if e.seq == 10 else e for e in audit.iter_all()]
    _rewrite_everything(audit, entries)
    assert verify(audit, SIGNER).size == 10


@pytest.mark.parametrize("seq", [1, 4, 9])
def test_a_deleted_entry_is_named(seq: int) -> None:
    audit = _log()
    audit.entries = [e for e in audit.entries if e.seq != seq]
    broken = _broken(audit)
    assert broken.message == (f"audit entry {seq} is missing or out of order (found {seq + 1})")
    assert broken.location.record == seq


@pytest.mark.parametrize(("first", "second"), [(1, 2), (3, 8), (9, 10)])
def test_two_swapped_entries_are_named(first: int, second: int) -> None:
    audit = _log()
    one, two = _entry(audit, first), _entry(audit, second)
    # Each row keeps its position but holds the other's content and leaf hash.
    _replace(audit, first, dataclasses.replace(two, seq=first))
    _replace(audit, second, dataclasses.replace(one, seq=second))
    broken = _broken(audit)
    assert broken.message == f"audit entry {first} has been changed since it was written"
    assert broken.location.record == first


@pytest.mark.parametrize(("first", "second"), [(1, 2), (3, 8), (9, 10)])
def test_entries_served_out_of_order_are_named(first: int, second: int) -> None:
    audit = _log()
    served = list(audit.iter_all())
    served[first - 1], served[second - 1] = served[second - 1], served[first - 1]
    broken = _broken(audit, entries=served)
    assert broken.message == f"audit entry {first} is missing or out of order (found {second})"
    assert broken.location.record == first


@pytest.mark.parametrize(("first", "second"), [(1, 2), (6, 7), (9, 10)])
def test_swapped_entries_renumbered_and_rehashed_are_caught_by_a_checkpoint_or_the_head(
    first: int, second: int
) -> None:
    audit = _log()  # checkpoints at 1, 5, 9
    one, two = _entry(audit, first), _entry(audit, second)
    _replace(audit, first, reseal(two, seq=first))
    _replace(audit, second, reseal(one, seq=second))
    broken = _broken(audit)
    covering = min((c.size for c in audit.checkpoints() if c.size >= first), default=None)
    if covering is None:
        assert broken.message == "the log's head does not record the root of its entries"
    else:
        assert broken.message.startswith(f"entries up to {covering} do not match the checkpoint")
        assert broken.location.record == covering


@pytest.mark.parametrize("removed", [1, 3, 9])
def test_a_truncated_tail_is_named(removed: int) -> None:
    audit = _log(size=10)
    kept = 10 - removed
    audit.entries = [e for e in audit.entries if e.seq <= kept]
    broken = _broken(audit)
    assert broken.message == (
        f"audit log holds {kept} entries but its head records 10: "
        f"entries from {kept + 1} have been removed or added"
    )
    assert broken.location.record == kept + 1


@pytest.mark.parametrize("kept", [1, 4, 8])
def test_a_truncated_tail_with_the_head_rewritten_is_caught_by_a_later_checkpoint(
    kept: int,
) -> None:
    audit = _log(size=10)  # checkpoints at 1, 5, 9
    audit.entries = [e for e in audit.entries if e.seq <= kept]
    audit.set_head(kept, root_at(audit.nodes, kept).hex())
    broken = _broken(audit)
    assert broken.message == f"a checkpoint covers 9 entries but the log holds {kept}"


def test_a_truncation_to_the_last_checkpoint_with_a_new_head_is_not_detectable_alone() -> None:
    # What the broker's own checkpoints cannot show: the entries after the last one.
    # A witness's later checkpoint, or a client's inclusion proof, covers them.
    audit = _log(size=10)
    audit.entries = [e for e in audit.entries if e.seq <= 9]
    # Entry 10 (leaf 9) completed its own leaf node and the node over leaves 8 and 9.
    del audit.nodes.nodes[0, 9]
    del audit.nodes.nodes[1, 4]
    audit.set_head(9, root_at(audit.nodes, 9).hex())
    assert verify(audit, SIGNER).size == 9


def test_a_truncation_that_leaves_the_nodes_behind_is_detected() -> None:
    audit = _log(size=10)
    audit.entries = [e for e in audit.entries if e.seq <= 9]
    audit.set_head(9, root_at(audit.nodes, 9).hex())
    assert _broken(audit).message == "the stored tree holds nodes that no entry accounts for"


def test_an_extra_entry_without_a_head_is_named() -> None:
    audit = _log(size=10)
    audit.entries.append(seal_entry(11, at(50), event(50)))
    broken = _broken(audit)
    assert broken.message == (
        "audit log holds 11 entries but its head records 10: entries from 11 have been "
        "removed or added"
    )
    assert broken.location.record == 11


# -- tampering with checkpoints and cosignatures -----------------------------------


def _cosigned(audit: MemoryAudit, size: int) -> dict[str, object]:
    stored = audit.checkpoint(size)
    assert stored is not None
    note = notes.add_signature(stored.note, WITNESS_NAME, WITNESS)
    line = note.splitlines()[-1]
    audit.add_witness_key(WITNESS_NAME, "unused-by-the-fake", at(0))
    audit.add_cosignature(size, WITNESS_NAME, line, at(0))
    return {"witness_keys": {WITNESS_NAME: WITNESS.public_key()}}


def test_a_cosigned_log_verifies_and_counts_the_cosignatures() -> None:
    audit = _log()
    keys = _cosigned(audit, 5)
    verified = verify(audit, SIGNER, **keys)  # type: ignore[arg-type]
    assert (verified.checkpoints, verified.cosignatures) == (3, 1)
    latest = audit.checkpoint(5)
    assert latest is not None
    cosigned = latest.cosigned_note()
    assert notes.verify(cosigned, WITNESS_NAME, WITNESS.public_key()).size == 5
    assert notes.verify(cosigned, ORIGIN, SIGNER.public_key).size == 5


def test_a_checkpoint_signed_by_another_key_is_named() -> None:
    audit = _log()
    stored = audit.stored_checkpoints[5]
    forged = notes.sign(
        notes.Checkpoint(ORIGIN, 5, bytes.fromhex(stored.root_hash)), ORIGIN, key(50)
    )
    audit.stored_checkpoints[5] = dataclasses.replace(stored, note=forged)
    broken = _broken(audit)
    assert broken.message == "checkpoint at size 5 is not signed by the log's key"


@pytest.mark.parametrize("what", ["root", "size"])
def test_a_checkpoint_that_does_not_say_what_was_stored_is_named(what: str) -> None:
    audit = _log()
    stored = audit.stored_checkpoints[5]
    if what == "root":
        changed = dataclasses.replace(stored, root_hash=audit.stored_checkpoints[9].root_hash)
    else:
        # The note signed at 9, filed as the checkpoint at 5.
        changed = dataclasses.replace(stored, note=audit.stored_checkpoints[9].note)
    audit.stored_checkpoints[5] = changed
    broken = _broken(audit)
    assert broken.message == "checkpoint at size 5 does not say what the broker stored"


def test_a_cosignature_by_an_unknown_witness_is_named() -> None:
    audit = _log()
    _cosigned(audit, 5)
    broken = _broken(audit)  # the witness's key is not handed to the verifier
    assert broken.message == f"checkpoint at size 5 is cosigned by unknown '{WITNESS_NAME}'"


@pytest.mark.parametrize("how", ["other_checkpoint", "other_key", "garbled"])
def test_a_cosignature_that_does_not_verify_is_named(how: str) -> None:
    audit = _log()
    keys = _cosigned(audit, 5)
    if how == "other_checkpoint":  # a genuine line, but over checkpoint 9
        line = notes.add_signature(audit.stored_checkpoints[9].note, WITNESS_NAME, WITNESS)
    elif how == "other_key":
        line = notes.add_signature(audit.stored_checkpoints[5].note, WITNESS_NAME, key(60))
    else:  # one bit of the signature flipped
        dash, name, blob = audit.cosignature_lines[5][WITNESS_NAME].split(" ")
        raw = bytearray(base64.b64decode(blob))
        raw[-1] ^= 1
        line = f"{dash} {name} {base64.b64encode(bytes(raw)).decode()}"
    audit.cosignature_lines[5][WITNESS_NAME] = line.splitlines()[-1]
    broken = _broken(audit, **keys)
    assert broken.message == f"the cosignature of '{WITNESS_NAME}' on checkpoint 5 does not verify"


def test_a_cosignature_filed_under_another_witness_does_not_verify() -> None:
    audit = _log()
    _cosigned(audit, 5)
    other = "witness.ed.example"
    audit.cosignature_lines[5][other] = audit.cosignature_lines[5].pop(WITNESS_NAME)
    keys = {WITNESS_NAME: WITNESS.public_key(), other: key(70).public_key()}
    broken = _broken(audit, witness_keys=keys)
    assert broken.message == f"the cosignature of '{other}' on checkpoint 5 does not verify"


# -- tampering with the stored tree ----------------------------------------------------


@pytest.mark.parametrize(
    ("size", "node"),
    [
        (9, (0, 8)),  # the newest leaf, alone on the right edge
        (10, (3, 0)),  # the perfect subtree over entries 1-8
        (10, (1, 4)),  # entries 9 and 10
        (8, (3, 0)),
        (1, (0, 0)),
    ],
)
def test_a_tampered_node_on_the_root_path_is_detected(size: int, node: tuple[int, int]) -> None:
    audit = _log(size=size)
    audit.nodes.nodes[node] = hashlib.sha256(b"forged").digest()
    broken = _broken(audit)
    assert "does not match the entries; proofs built from it would be wrong" in broken.message


def test_a_missing_node_is_not_read_as_anything() -> None:
    audit = _log(size=10)
    del audit.nodes.nodes[3, 0]
    with pytest.raises(Exception) as raised:  # noqa: PT011 - the class is asserted below
        verify(audit, SIGNER)
    assert getattr(raised.value, "code", None) in {"proof_request_invalid", "audit_tampered"}


# A node off the head's root path, and the entry whose inclusion proof reads it.
OFF_PATH = [
    (8, (0, 0), 2),
    (10, (1, 0), 3),
    (10, (0, 8), 10),
    (10, (0, 9), 9),  # the newest leaf: read only to show the size is held
    (10, (2, 1), 1),
]


@pytest.mark.parametrize(("size", "node", "seq"), OFF_PATH)
def test_a_tampered_node_off_the_root_path_breaks_proofs(
    size: int, node: tuple[int, int], seq: int
) -> None:
    audit = _log(size=size)
    audit.nodes.nodes[node] = hashlib.sha256(b"forged").digest()
    leaf = bytes.fromhex(_entry(audit, seq).leaf_hash)
    proof = inclusion_proof_at(audit.nodes, seq - 1, size)
    with pytest.raises(AuditIntegrityError):
        verify_inclusion(leaf, seq - 1, size, proof, bytes.fromhex(audit.head_root))


@pytest.mark.parametrize(("size", "node", "seq"), OFF_PATH)
def test_a_tampered_node_off_the_root_path_is_detected(
    size: int, node: tuple[int, int], seq: int
) -> None:
    audit = _log(size=size)
    audit.nodes.nodes[node] = hashlib.sha256(b"forged").digest()
    broken = _broken(audit)
    assert "does not match the entries; proofs built from it would be wrong" in broken.message
