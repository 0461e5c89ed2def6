"""Properties of payload sealing: it round-trips, and any change to the sealed bytes fails."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.sealing import SealBroken, associated_data, seal, unseal

KEYS = st.binary(min_size=32, max_size=32)
IDS = st.text(alphabet="abcdef0123456789_-", min_size=1, max_size=20)


@settings(max_examples=100, deadline=None)
@given(key=KEYS, plaintext=st.binary(max_size=300), agreement=IDS, record=IDS)
def test_seal_round_trips(key: bytes, plaintext: bytes, agreement: str, record: str) -> None:
    aad = associated_data(agreement, record)
    assert unseal(key, seal(key, plaintext, aad), aad) == plaintext


@settings(max_examples=150, deadline=None)
@given(
    key=KEYS,
    plaintext=st.binary(max_size=200),
    position=st.integers(0, 10_000),
    bit=st.integers(0, 7),
)
def test_any_flipped_bit_fails_authentication(
    key: bytes, plaintext: bytes, position: int, bit: int
) -> None:
    aad = associated_data("agreement", "rec_1")
    sealed = bytearray(seal(key, plaintext, aad))
    sealed[position % len(sealed)] ^= 1 << bit
    with pytest.raises(SealBroken):
        unseal(key, bytes(sealed), aad)


@settings(max_examples=60, deadline=None)
@given(key=KEYS, other=KEYS, plaintext=st.binary(max_size=100), record=IDS, elsewhere=IDS)
def test_another_key_or_another_record_fails(
    key: bytes, other: bytes, plaintext: bytes, record: str, elsewhere: str
) -> None:
    aad = associated_data("agreement", record)
    sealed = seal(key, plaintext, aad)
    if other != key:
        with pytest.raises(SealBroken):
            unseal(other, sealed, aad)
    if elsewhere != record:
        with pytest.raises(SealBroken):
            unseal(key, sealed, associated_data("agreement", elsewhere))
