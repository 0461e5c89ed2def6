"""Sealed payloads: AES-256-GCM bound to agreement and record."""

from __future__ import annotations

import pytest

from broker.sealing import SealBroken, associated_data, seal, unseal

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
AAD = associated_data("sv-early-identification", "rec-1")


def test_round_trip() -> None:
    payload = b'{"attendance_pct": 85.5}'
    sealed = seal(KEY, payload, AAD)
    assert unseal(KEY, sealed, AAD) == payload
    assert payload not in sealed


def test_empty_payload_round_trips() -> None:
    assert unseal(KEY, seal(KEY, b"", AAD), AAD) == b""


def test_each_seal_uses_a_fresh_nonce() -> None:
    first = seal(KEY, b"same", AAD)
    second = seal(KEY, b"same", AAD)
    assert first != second
    assert first[1:13] != second[1:13]
    assert first[0] == second[0] == 1


def test_every_single_flipped_bit_is_detected() -> None:
    payload = b"hello"
    sealed = seal(KEY, payload, AAD)
    assert len(sealed) == 1 + 12 + len(payload) + 16
    for bit in range(len(sealed) * 8):
        changed = bytearray(sealed)
        changed[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(SealBroken):
            unseal(KEY, bytes(changed), AAD)


def test_truncated_or_extended_blob_is_detected() -> None:
    sealed = seal(KEY, b"hello", AAD)
    for length in range(len(sealed)):
        with pytest.raises(SealBroken):
            unseal(KEY, sealed[:length], AAD)
    with pytest.raises(SealBroken):
        unseal(KEY, sealed + b"\x00", AAD)


def test_wrong_key_fails() -> None:
    sealed = seal(KEY, b"hello", AAD)
    with pytest.raises(SealBroken, match="failed authentication") as caught:
        unseal(OTHER_KEY, sealed, AAD)
    assert caught.value.code == "payload_unreadable"


@pytest.mark.parametrize(
    "other",
    [
        associated_data("sv-early-identification", "rec-2"),
        associated_data("another-agreement", "rec-1"),
        associated_data("sv-early-identification", "rec-1 "),
        associated_data("sv-early-identificationrec", "-1"),
        b"",
    ],
)
def test_wrong_associated_data_fails(other: bytes) -> None:
    sealed = seal(KEY, b"hello", AAD)
    with pytest.raises(SealBroken):
        unseal(KEY, sealed, other)


def test_associated_data_is_framed() -> None:
    assert associated_data("a", "bc") != associated_data("ab", "c")


def test_unknown_version_byte_is_refused() -> None:
    sealed = seal(KEY, b"hello", AAD)
    with pytest.raises(SealBroken, match="known sealed format"):
        unseal(KEY, b"\x02" + sealed[1:], AAD)


def test_a_key_of_the_wrong_length_is_one_opaque_error() -> None:
    sealed = seal(bytes(32), b"payload", b"aad")
    with pytest.raises(SealBroken):
        unseal(bytes(7), sealed, b"aad")
