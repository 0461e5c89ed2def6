"""Signed checkpoints: round trip, cosignatures, and refusal of anything altered or malformed."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.checkpoint import Checkpoint, add_signature, parse, sign, verify
from broker.errors import AuditIntegrityError, ValidationError

LOG = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
WITNESS = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
CHECKPOINT = Checkpoint("accord.example/audit", 42, hashlib.sha256(b"root").digest())


def test_sign_then_verify_round_trips() -> None:
    note = sign(CHECKPOINT, "accord.example/audit", LOG)
    assert note.startswith("accord.example/audit\n42\n")
    assert verify(note, "accord.example/audit", LOG.public_key()) == CHECKPOINT


def test_a_cosignature_verifies_alongside_the_log_signature() -> None:
    note = add_signature(sign(CHECKPOINT, "accord.example/audit", LOG), "witness.police", WITNESS)
    assert verify(note, "witness.police", WITNESS.public_key()) == CHECKPOINT
    assert verify(note, "accord.example/audit", LOG.public_key()) == CHECKPOINT
    assert len(parse(note)[1]) == 2


@pytest.mark.parametrize(
    ("old", "new"), [("\n42\n", "\n43\n"), ("accord.example/audit\n", "accord.evil/audit\n")]
)
def test_an_altered_checkpoint_does_not_verify(old: str, new: str) -> None:
    note = sign(CHECKPOINT, "accord.example/audit", LOG).replace(old, new, 1)
    with pytest.raises(AuditIntegrityError):
        verify(note, "accord.example/audit", LOG.public_key())


def test_a_signature_by_another_key_does_not_verify() -> None:
    note = sign(CHECKPOINT, "accord.example/audit", WITNESS)
    with pytest.raises(AuditIntegrityError):
        verify(note, "accord.example/audit", LOG.public_key())


@pytest.mark.parametrize(
    "note",
    [
        "",
        "accord\n1\n",
        "accord\n01\nAAAA\n\n— a AAAA\n",
        "accord\n-1\n" + "A" * 44 + "\n\n— a b\n",
        "accord\n1\nnot base64!\n\n— a AAAA\n",
        "x" * 20_000 + "\n",
    ],
)
def test_malformed_notes_are_one_clear_error(note: str) -> None:
    with pytest.raises(ValidationError):
        parse(note)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_parsing_arbitrary_text_only_raises_the_projects_error(text: str) -> None:
    with contextlib.suppress(ValidationError):
        parse(text)


@settings(max_examples=50, deadline=None)
@given(size=st.integers(min_value=0, max_value=2**63), root=st.binary(min_size=32, max_size=32))
def test_any_checkpoint_round_trips(size: int, root: bytes) -> None:
    checkpoint = Checkpoint("accord.example/audit", size, root)
    note = sign(checkpoint, "accord.example/audit", LOG)
    assert parse(note)[0] == checkpoint
