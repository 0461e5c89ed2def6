"""The witness's decision: cosign honest extensions only, and keep its state safely."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import checkpoint as notes
from audit.merkle import InMemoryTree, hash_leaf
from audit.witness import (
    WitnessState,
    checkpoint_of,
    cosign,
    decide_cosign,
    generate_key,
    load_private_key,
    load_state,
    public_key_text,
    save_state,
    signed_by,
)
from broker.errors import AuditIntegrityError, ValidationError

ORIGIN = "accord.test/audit"
LOG_KEY = Ed25519PrivateKey.generate()
LOG_PUBLIC = public_key_text(LOG_KEY.public_key())


def _tree(entries: int, prefix: str = "entry") -> InMemoryTree:
    return InMemoryTree([hash_leaf(f"{prefix} {i}".encode()) for i in range(entries)])


def _note(tree: InMemoryTree, size: int, key: Ed25519PrivateKey = LOG_KEY) -> str:
    return notes.sign(notes.Checkpoint(ORIGIN, size, tree.root(size)), ORIGIN, key)


def _seen(tree: InMemoryTree, size: int) -> WitnessState:
    return WitnessState(ORIGIN, LOG_PUBLIC, size, tree.root(size).hex())


def test_first_use_trusts_a_validly_signed_checkpoint() -> None:
    tree = _tree(10)
    checkpoint, state = decide_cosign(None, _note(tree, 10), LOG_PUBLIC, [])
    assert checkpoint.size == 10
    assert state == _seen(tree, 10)


def test_first_use_still_requires_the_pinned_log_key() -> None:
    tree = _tree(10)
    other = Ed25519PrivateKey.generate()
    with pytest.raises(AuditIntegrityError, match="not signed by the pinned log key"):
        decide_cosign(None, _note(tree, 10, key=other), LOG_PUBLIC, [])


@pytest.mark.parametrize(("old", "new"), [(1, 2), (3, 10), (4, 8), (7, 7), (10, 33)])
def test_accepts_an_honest_extension(old: int, new: int) -> None:
    tree = _tree(new)
    proof = tree.consistency_proof(old, new)
    checkpoint, state = decide_cosign(_seen(tree, old), _note(tree, new), LOG_PUBLIC, proof)
    assert checkpoint.size == new
    assert state == _seen(tree, new)


def test_accepts_anything_after_an_empty_log() -> None:
    tree = _tree(5)
    empty = WitnessState(ORIGIN, LOG_PUBLIC, 0, InMemoryTree().root().hex())
    checkpoint, _ = decide_cosign(empty, _note(tree, 5), LOG_PUBLIC, [])
    assert checkpoint.size == 5


def test_refuses_a_fork() -> None:
    honest, forked = _tree(12), _tree(6)
    for index in range(6, 16):  # the same first six entries, then different ones
        forked.append(hash_leaf(f"other {index}".encode()))
    proof = forked.consistency_proof(12, 16)
    with pytest.raises(AuditIntegrityError) as refused:
        decide_cosign(_seen(honest, 12), _note(forked, 16), LOG_PUBLIC, proof)
    assert refused.value.message == (
        "the log at size 16 is not an extension of the log this witness saw at size 12: "
        "it has been rewritten"
    )


def test_refuses_a_shrink() -> None:
    tree = _tree(12)
    with pytest.raises(AuditIntegrityError, match=r"size 8 is smaller than .* size 12"):
        decide_cosign(_seen(tree, 12), _note(tree, 8), LOG_PUBLIC, [])


def test_refuses_a_different_root_at_the_same_size() -> None:
    seen, rewritten = _tree(9), _tree(9, prefix="changed")
    with pytest.raises(AuditIntegrityError, match="at size 9 is not the log this witness saw"):
        decide_cosign(_seen(seen, 9), _note(rewritten, 9), LOG_PUBLIC, [])


def test_refuses_a_proof_between_equal_sizes() -> None:
    tree = _tree(9)
    with pytest.raises(AuditIntegrityError, match="must be empty"):
        decide_cosign(_seen(tree, 9), _note(tree, 9), LOG_PUBLIC, [bytes(32)])


def test_refuses_a_wrong_log_key() -> None:
    tree = _tree(10)
    other = Ed25519PrivateKey.generate()
    proof = tree.consistency_proof(4, 10)
    with pytest.raises(AuditIntegrityError, match="not signed by the pinned log key"):
        decide_cosign(_seen(tree, 4), _note(tree, 10, key=other), LOG_PUBLIC, proof)


def test_refuses_a_log_key_other_than_the_one_pinned_in_the_state() -> None:
    tree = _tree(10)
    other = Ed25519PrivateKey.generate()
    with pytest.raises(AuditIntegrityError, match="differs from the one this witness pinned"):
        decide_cosign(_seen(tree, 10), _note(tree, 10, key=other), other.public_key(), [])


def test_refuses_another_origin() -> None:
    tree = _tree(3)
    with pytest.raises(AuditIntegrityError, match="names the log"):
        decide_cosign(None, _note(tree, 3), LOG_PUBLIC, [], origin="elsewhere/audit")


@pytest.mark.parametrize(
    "note",
    ["", "not a note\n", f"{ORIGIN}\n10\nAAAA\n\n", f"{ORIGIN}\n-1\nroot\n\n\u2014 x y\n"],
)
def test_refuses_a_malformed_note(note: str) -> None:
    with pytest.raises(AuditIntegrityError, match="not a well-formed signed note"):
        decide_cosign(None, note, LOG_PUBLIC, [])


def test_refuses_a_tampered_consistency_path() -> None:
    tree = _tree(20)
    proof = tree.consistency_proof(7, 20)
    for position in range(len(proof)):
        tampered = list(proof)
        tampered[position] = bytes(b ^ 1 for b in tampered[position])
        with pytest.raises(AuditIntegrityError, match="not an extension"):
            decide_cosign(_seen(tree, 7), _note(tree, 20), LOG_PUBLIC, tampered)
    with pytest.raises(AuditIntegrityError, match="not an extension"):
        decide_cosign(_seen(tree, 7), _note(tree, 20), LOG_PUBLIC, proof[:-1])
    with pytest.raises(AuditIntegrityError, match="not an extension"):
        decide_cosign(_seen(tree, 7), _note(tree, 20), LOG_PUBLIC, [*proof, bytes(32)])
    with pytest.raises(AuditIntegrityError, match="not an extension"):
        decide_cosign(_seen(tree, 7), _note(tree, 20), LOG_PUBLIC, [b"short"])


def test_cosign_adds_a_signature_the_witness_and_the_log_both_verify() -> None:
    tree = _tree(5)
    note = _note(tree, 5)
    witness = Ed25519PrivateKey.generate()
    assert not signed_by(note, "partner-witness", witness.public_key())
    cosigned = cosign(note, "partner-witness", witness)
    assert cosigned.startswith(note)
    assert signed_by(cosigned, "partner-witness", witness.public_key())
    assert notes.verify(cosigned, ORIGIN, LOG_KEY.public_key()).size == 5
    assert checkpoint_of(cosigned) == checkpoint_of(note)


def test_state_round_trips_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "witness.json"
    assert load_state(path) is None
    state = _seen(_tree(6), 6)
    save_state(path, state)
    assert load_state(path) == state
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    newer = _seen(_tree(9), 9)
    save_state(path, newer)  # replaced atomically, still private, no temporary left behind
    assert load_state(path) == newer
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["witness.json"]


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        json.dumps({"version": 1, "origin": ORIGIN}),
        json.dumps(
            {"version": 1, "origin": ORIGIN, "log_key": "x", "last_size": 1, "last_root": "00"}
        ),
        json.dumps(
            {
                "version": 1,
                "origin": ORIGIN,
                "log_key": LOG_PUBLIC,
                "last_size": -1,
                "last_root": "00" * 32,
            }
        ),
    ],
)
def test_a_corrupt_state_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "witness.json"
    path.write_text(content)
    with pytest.raises(ValidationError, match="is not a witness state"):
        load_state(path)


def test_generated_keys_load_and_other_files_do_not() -> None:
    pem, public = generate_key()
    assert public_key_text(load_private_key(pem).public_key()) == public
    with pytest.raises(ValidationError, match="not a readable Ed25519 PEM private key"):
        load_private_key(b"-----BEGIN NOTHING-----\n")
