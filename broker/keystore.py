"""The key store: random working keys, each wrapped under the master key, with versions.

Kinds of key, each with its own versions:

- ``linkage`` (one per agreement): match-key tokens. While a rotation is under
  way the previous version is ``retiring``: new records are tokenised under
  both, and linking uses the older until every stored record has tokens under
  the newer (see ``broker.service_keys``).
- ``data`` (one per agreement): AES-256-GCM for stored payloads. Each record
  names the version that sealed it; destroying every version shreds them all.
- ``pseudonym`` (one per recipient under an agreement): the recipient's
  pseudonyms, so two recipients cannot join their outputs.
- ``log-signing`` (one for the broker): the Ed25519 seed the audit log's
  checkpoints are signed with.

Only the wrapped form is stored. Each wrap is bound to its slot and version
(AES-GCM associated data), so a wrapped key copied into another slot fails to
unwrap instead of quietly serving the wrong agreement. The store knows nothing
of SQL: it reads and writes through a ``WrappedKeyRepository``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from threading import Lock
from time import monotonic

from broker.errors import KeyFileError, NotFound
from broker.interfaces import StoredKey, WrappedKeyRepository
from broker.keys import KEY_BYTES, KeyProvider, LinkageKey
from broker.pseudonymise import encode_parts, key_check_value

LINKAGE = "linkage"
DATA = "data"
PSEUDONYM = "pseudonym"
LOG_SIGNING = "log-signing"
KEY_KINDS = (LINKAGE, DATA, PSEUDONYM, LOG_SIGNING)

ACTIVE = "active"
RETIRING = "retiring"  # a linkage key still matched on while its successor is filled in
RETIRED = "retired"  # still opens what it made; makes nothing new
DESTROYED = "destroyed"  # the wrapped key is gone: what it made can never be read again
LIVE_STATES = (ACTIVE, RETIRING, RETIRED)


@dataclass(frozen=True)
class KeySlot:
    """Which key: its kind and owner (agreement, and recipient for pseudonym keys)."""

    kind: str
    agreement_id: str = ""
    recipient: str = ""

    @property
    def name(self) -> str:
        """A readable id such as ``data/mace-cohort`` or ``pseudonym/mace-cohort/police``."""
        return "/".join(part for part in (self.kind, self.agreement_id, self.recipient) if part)


@dataclass(frozen=True, repr=False)
class WorkingKey:
    """One unwrapped version of a key, as the use cases need it."""

    slot: KeySlot
    version: int
    key: bytes

    def __repr__(self) -> str:  # the key must never reach a log line or a traceback
        return f"WorkingKey({self.slot.name}, v{self.version})"


def slot_of(row: StoredKey) -> KeySlot:
    """The slot a stored key belongs to."""
    return KeySlot(row.kind, row.agreement_id, row.recipient)


def wrapping_context(slot: KeySlot, version: int) -> bytes:
    """The associated data a wrapped key is bound to."""
    return encode_parts("wrapped-key", [slot.kind, slot.agreement_id, slot.recipient, str(version)])


class KeyStore:
    """Creates, unwraps and caches working keys; the only code that touches key material.

    Linkage keys' versions are read through the repository on every call, so
    a rotation by another process changes how the next record links. Data,
    pseudonym and log-signing keys' versions are remembered for
    ``metadata_seconds`` (a lookup would otherwise read them three times):
    another process's rotation or destruction of those shows within that
    time, and changes made through this store show at once. What that delay
    can and cannot do is in docs/pseudonymisation.md, section 1.6. Unwrapped
    bytes are cached per version; a destroyed version is dropped when seen.
    """

    def __init__(
        self, provider: KeyProvider, now: Callable[[], str], *, metadata_seconds: float = 2.0
    ) -> None:
        self.provider = provider
        self._now = now
        self._cache: dict[tuple[KeySlot, int], bytes] = {}
        self._metadata: dict[KeySlot, tuple[float, list[StoredKey]]] = {}
        self._metadata_seconds = metadata_seconds
        self._lock = Lock()

    # -- reading ------------------------------------------------------------

    def versions(
        self, repo: WrappedKeyRepository, slot: KeySlot, *, fresh: bool = False
    ) -> list[StoredKey]:
        """Every version of a slot, oldest first (destroyed ones included).

        ``fresh`` reads the repository whatever is remembered; key operations use it.
        """
        remembered = self._metadata.get(slot)
        if not fresh and slot.kind != LINKAGE and remembered and remembered[0] > monotonic():
            return remembered[1]
        rows = sorted(
            repo.versions(slot.kind, slot.agreement_id, slot.recipient),
            key=lambda row: row.version,
        )
        if rows and slot.kind != LINKAGE:
            with self._lock:
                self._metadata[slot] = (monotonic() + self._metadata_seconds, rows)
        return rows

    def refresh(self) -> None:
        """Forget every remembered version list (after keys changed in another process)."""
        with self._lock:
            self._metadata.clear()

    def active(
        self, repo: WrappedKeyRepository, slot: KeySlot, *, fresh: bool = False
    ) -> WorkingKey:
        """The version that makes new tokens, seals or pseudonyms; created on first use."""
        rows = self.versions(repo, slot, fresh=fresh)
        for row in rows:
            if row.state == ACTIVE:
                return self._open(slot, row)
        if rows:
            raise KeyFileError(f"key {slot.name} has no active version; rotate it to make one")
        return self._create(repo, slot, version=1, key=None)

    def version(
        self, repo: WrappedKeyRepository, slot: KeySlot, version: int, *, fresh: bool = False
    ) -> WorkingKey | None:
        """One version of a key, or None when it was destroyed (what it made is unreadable)."""
        rows = self.versions(repo, slot, fresh=fresh)
        if not fresh and all(row.version != version for row in rows):
            rows = self.versions(repo, slot, fresh=True)  # made since it was remembered
        for row in rows:
            if row.version == version:
                return None if row.state == DESTROYED else self._open(slot, row)
        raise NotFound(f"key {slot.name} has no version {version}")

    def linkage_keys(self, repo: WrappedKeyRepository, agreement_id: str) -> list[LinkageKey]:
        """The agreement's linkage keys still in use, oldest first: the first is matched on."""
        slot = KeySlot(LINKAGE, agreement_id)
        rows = self.versions(repo, slot)
        if not rows:
            created = self._create(repo, slot, version=1, key=None)
            return [LinkageKey(agreement_id, created.version, created.key)]
        in_use = [
            LinkageKey(agreement_id, row.version, self._open(slot, row).key)
            for row in rows
            if row.state in (ACTIVE, RETIRING)
        ]
        if not any(row.state == ACTIVE for row in rows):
            raise KeyFileError(f"key {slot.name} has no active version; rotate it to make one")
        return in_use

    def linkage(self, repo: WrappedKeyRepository, agreement_id: str) -> LinkageKey:
        """The agreement's active linkage key, the one exported to providers."""
        working = self.active(repo, KeySlot(LINKAGE, agreement_id))
        return LinkageKey(agreement_id, working.version, working.key)

    # -- changing -------------------------------------------------------------

    def ensure(self, repo: WrappedKeyRepository, slot: KeySlot) -> None:
        """Create the slot's first version if it has none (used at start-up)."""
        self.active(repo, slot)

    def add_version(
        self, repo: WrappedKeyRepository, slot: KeySlot, *, key: bytes | None = None
    ) -> WorkingKey:
        """Make the next version of a slot, active (the caller retires the old one first).

        ``key`` is given only when adopting a key made before the store existed.
        """
        rows = self.versions(repo, slot, fresh=True)
        version = (rows[-1].version + 1) if rows else 1
        return self._create(repo, slot, version=version, key=key)

    def forget(self, slot: KeySlot, version: int) -> None:
        """Drop one version's unwrapped bytes, and the slot's remembered versions."""
        with self._lock:
            self._cache.pop((slot, version), None)
            self._metadata.pop(slot, None)

    # -- internals ----------------------------------------------------------

    def _create(
        self,
        repo: WrappedKeyRepository,
        slot: KeySlot,
        *,
        version: int,
        key: bytes | None,
    ) -> WorkingKey:
        material = key if key is not None else secrets.token_bytes(KEY_BYTES)
        at = self._now()
        repo.add(
            StoredKey(
                kind=slot.kind,
                agreement_id=slot.agreement_id,
                recipient=slot.recipient,
                version=version,
                state=ACTIVE,
                wrapped=self.provider.wrap(material, wrapping_context(slot, version)),
                check_value=key_check_value(material, version),
                master_check=self.provider.check_value(),
                created_at=at,
                changed_at=at,
            )
        )
        with self._lock:
            self._cache[(slot, version)] = material
            self._metadata.pop(slot, None)
        return WorkingKey(slot, version, material)

    def _open(self, slot: KeySlot, row: StoredKey) -> WorkingKey:
        if row.state == DESTROYED or row.wrapped is None:
            self.forget(slot, row.version)
            raise KeyFileError(f"key {slot.name} version {row.version} was destroyed")
        cached = self._cache.get((slot, row.version))
        if cached is None:
            cached = self.provider.unwrap(row.wrapped, wrapping_context(slot, row.version))
            with self._lock:
                self._cache[(slot, row.version)] = cached
        return WorkingKey(slot, row.version, cached)
