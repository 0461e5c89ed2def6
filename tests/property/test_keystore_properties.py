"""Properties of the key store: keys differ by slot and version; wraps authenticate every bit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import KeyFileError
from broker.keys import KeyRing
from broker.keystore import DATA, LINKAGE, PSEUDONYM, RETIRED, KeySlot, KeyStore, wrapping_context
from broker.pseudonymise import pseudonym, token
from tests.unit.test_keystore import NOW, MemoryKeys

MASTERS = st.binary(min_size=32, max_size=32)
OWNERS = st.text(alphabet="abc-", min_size=1, max_size=6)
SLOTS = st.builds(
    KeySlot, st.sampled_from([DATA, LINKAGE, PSEUDONYM]), OWNERS, st.just("") | OWNERS
)


@settings(max_examples=80, deadline=None)
@given(
    master=MASTERS,
    key=st.binary(min_size=32, max_size=32),
    slot=SLOTS,
    version=st.integers(1, 9),
    bit=st.integers(0, 8 * 61 - 1),
)
def test_a_wrapped_key_round_trips_and_any_flipped_bit_fails(
    master: bytes, key: bytes, slot: KeySlot, version: int, bit: int
) -> None:
    ring = KeyRing(master_key=master, version=1)
    context = wrapping_context(slot, version)
    wrapped = ring.wrap(key, context)
    assert ring.unwrap(wrapped, context) == key
    flipped = bytearray(wrapped)
    flipped[bit // 8 % len(flipped)] ^= 1 << (bit % 8)
    with pytest.raises(KeyFileError):
        ring.unwrap(bytes(flipped), context)


@settings(max_examples=40, deadline=None)
@given(master=MASTERS, slots=st.lists(SLOTS, min_size=2, max_size=5, unique=True))
def test_every_slot_gets_its_own_key(master: bytes, slots: list[KeySlot]) -> None:
    store = KeyStore(KeyRing(master_key=master, version=1), lambda: NOW)
    repo = MemoryKeys()
    keys = [store.active(repo, slot).key for slot in slots]
    assert len(set(keys)) == len(keys)


@settings(max_examples=40, deadline=None)
@given(
    master=MASTERS,
    values=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=4),
    subject=st.text(alphabet="abcdef0123", min_size=1, max_size=12),
)
def test_tokens_and_pseudonyms_differ_across_key_versions(
    master: bytes, values: list[str], subject: str
) -> None:
    store = KeyStore(KeyRing(master_key=master, version=1), lambda: NOW)
    repo = MemoryKeys()
    for slot in (KeySlot(LINKAGE, "agr"), KeySlot(PSEUDONYM, "agr", "police")):
        first = store.active(repo, slot)
        repo.set_state(slot.kind, "agr", slot.recipient, 1, state=RETIRED, at=NOW)
        second = store.add_version(repo, slot)
        if slot.kind == LINKAGE:
            assert token(first.key, "nhs", values) != token(second.key, "nhs", values)
        else:
            old, new = pseudonym(first.key, subject, 1), pseudonym(second.key, subject, 2)
            assert old != new
            assert new.startswith("ps2_")
