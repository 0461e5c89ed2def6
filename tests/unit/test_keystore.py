"""The key store against an in-memory repository: creation, versions, states, the cache."""

from __future__ import annotations

from dataclasses import replace

import pytest

from broker.errors import KeyFileError, NotFound
from broker.interfaces import StoredKey
from broker.keys import KeyRing
from broker.keystore import (
    DATA,
    DESTROYED,
    LINKAGE,
    PSEUDONYM,
    RETIRED,
    RETIRING,
    KeySlot,
    KeyStore,
    wrapping_context,
)

RING = KeyRing(master_key=bytes(range(32)), version=1)
NOW = "2026-12-02T09:00:00+00:00"


class MemoryKeys:
    """A WrappedKeyRepository in a dict, as the SQL one behaves."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str, int], StoredKey] = {}

    def versions(self, kind: str, agreement_id: str, recipient: str) -> list[StoredKey]:
        return [r for k, r in self.rows.items() if k[:3] == (kind, agreement_id, recipient)]

    def all(self) -> list[StoredKey]:
        return [self.rows[k] for k in sorted(self.rows)]

    def add(self, key: StoredKey) -> None:
        slot = (key.kind, key.agreement_id, key.recipient, key.version)
        assert slot not in self.rows, "primary key"
        self.rows[slot] = key

    def set_state(
        self, kind: str, agreement_id: str, recipient: str, version: int, *, state: str, at: str
    ) -> None:
        slot = (kind, agreement_id, recipient, version)
        self.rows[slot] = replace(self.rows[slot], state=state, changed_at=at)

    def destroy(self, kind: str, agreement_id: str, recipient: str, version: int, at: str) -> None:
        slot = (kind, agreement_id, recipient, version)
        self.rows[slot] = replace(self.rows[slot], state=DESTROYED, wrapped=None, changed_at=at)


def _store() -> tuple[KeyStore, MemoryKeys]:
    return KeyStore(RING, lambda: NOW), MemoryKeys()


def test_first_use_creates_a_random_active_version_one_stored_wrapped() -> None:
    store, repo = _store()
    slot = KeySlot(DATA, "agr")
    key = store.active(repo, slot)
    assert key.version == 1
    assert len(key.key) == 32
    (row,) = repo.all()
    assert row.state == "active"
    assert row.wrapped is not None
    assert key.key not in row.wrapped
    assert RING.unwrap(row.wrapped, wrapping_context(slot, 1)) == key.key
    assert row.master_check == RING.check_value()
    assert store.active(repo, slot).key == key.key  # created once
    other = KeyStore(RING, lambda: NOW).active(repo, slot)  # another worker unwraps the same
    assert other.key == key.key


def test_keys_differ_per_slot() -> None:
    store, repo = _store()
    slots = [
        KeySlot(DATA, "a"),
        KeySlot(DATA, "b"),
        KeySlot(LINKAGE, "a"),
        KeySlot(PSEUDONYM, "a", "police"),
        KeySlot(PSEUDONYM, "a", "school"),
    ]
    keys = {store.active(repo, slot).key for slot in slots}
    assert len(keys) == len(slots)


def test_a_new_version_is_active_and_old_versions_still_open() -> None:
    store, repo = _store()
    slot = KeySlot(DATA, "agr")
    first = store.active(repo, slot)
    repo.set_state(DATA, "agr", "", 1, state=RETIRED, at=NOW)
    second = store.add_version(repo, slot)
    assert second.version == 2
    assert second.key != first.key
    assert store.active(repo, slot).version == 2
    opened = store.version(repo, slot, 1)
    assert opened is not None
    assert opened.key == first.key
    with pytest.raises(NotFound):
        store.version(repo, slot, 3)


def test_a_destroyed_version_is_gone_even_from_the_cache() -> None:
    store, repo = _store()
    slot = KeySlot(DATA, "agr")
    store.active(repo, slot)
    repo.destroy(DATA, "agr", "", 1, NOW)
    assert store.version(repo, slot, 1) is None
    with pytest.raises(KeyFileError, match="no active version"):
        store.active(repo, slot)


def test_linkage_keys_in_use_are_the_active_and_the_retiring_oldest_first() -> None:
    store, repo = _store()
    first = store.linkage(repo, "agr")
    repo.set_state(LINKAGE, "agr", "", 1, state=RETIRING, at=NOW)
    store.add_version(repo, KeySlot(LINKAGE, "agr"))
    in_use = store.linkage_keys(repo, "agr")
    assert [k.version for k in in_use] == [1, 2]
    assert in_use[0].key == first.key
    assert store.linkage(repo, "agr").version == 2  # what is exported to providers


def test_a_key_wrapped_under_another_master_key_is_refused_with_one_line() -> None:
    store, repo = _store()
    slot = KeySlot(DATA, "agr")
    store.active(repo, slot)
    stranger = KeyStore(KeyRing(master_key=bytes(32), version=1), lambda: NOW)
    with pytest.raises(KeyFileError, match="restore the master key") as error:
        stranger.active(repo, slot)
    assert "\n" not in str(error.value)


def test_reprs_hold_no_key_material() -> None:
    store, repo = _store()
    key = store.active(repo, KeySlot(DATA, "agr"))
    (row,) = repo.all()
    assert row.wrapped is not None
    for text in (repr(key), repr(row), str(key)):
        assert key.key.hex()[:12] not in text
        assert row.wrapped.hex()[:12] not in text


class CountingKeys(MemoryKeys):
    """Counts the reads, to show which key kinds are remembered."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def versions(self, kind: str, agreement_id: str, recipient: str) -> list[StoredKey]:
        self.reads += 1
        return super().versions(kind, agreement_id, recipient)


def test_data_key_versions_are_remembered_briefly_but_linkage_keys_never() -> None:
    store = KeyStore(RING, lambda: NOW, metadata_seconds=60)
    repo = CountingKeys()
    for _ in range(2):  # the first read after creating a key goes to the repository
        store.active(repo, KeySlot(DATA, "agr"))
    store.linkage_keys(repo, "agr")
    repo.reads = 0
    for _ in range(5):
        store.active(repo, KeySlot(DATA, "agr"))
        store.linkage_keys(repo, "agr")
    assert repo.reads == 5  # one per linkage read, none for the data key
    store.active(repo, KeySlot(DATA, "agr"), fresh=True)
    assert repo.reads == 6


def test_another_process_change_shows_after_the_remembered_time() -> None:
    store = KeyStore(RING, lambda: NOW, metadata_seconds=0.0)
    repo = MemoryKeys()
    slot = KeySlot(DATA, "agr")
    store.active(repo, slot)
    # Another process retires version 1 and makes version 2.
    other = KeyStore(RING, lambda: NOW)
    repo.set_state(DATA, "agr", "", 1, state=RETIRED, at=NOW)
    other.add_version(repo, slot)
    assert store.active(repo, slot).version == 2
    repo.destroy(DATA, "agr", "", 1, NOW)
    assert store.version(repo, slot, 1) is None


def test_refresh_forgets_what_was_remembered() -> None:
    store = KeyStore(RING, lambda: NOW, metadata_seconds=3600)
    repo = MemoryKeys()
    slot = KeySlot(DATA, "agr")
    store.active(repo, slot)
    store.active(repo, slot)  # now remembered
    repo.destroy(DATA, "agr", "", 1, NOW)
    assert store.version(repo, slot, 1) is not None  # still remembered as live
    store.refresh()
    assert store.version(repo, slot, 1) is None
