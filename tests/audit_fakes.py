"""An in-memory audit repository, and small helpers to build and verify logs in it.

``MemoryAudit`` implements ``broker.interfaces.AuditRepository`` in full on a
``MemoryNodeStore``, so ``audit.log.append`` and ``audit.log.checkpoint_now`` run
against it exactly as against ``SqlAudit``. It behaves like the tables it stands
for: entries come back ordered by position, checkpoints by size, cosignatures by
witness name, and a duplicate key (position, checkpoint size, witness) is refused.

Every stored thing is a plain attribute, so a test can tamper with it the way
someone with write access to the database could.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.entries import seal_entry
from audit.events import AuditEvent, LoggedEntry, StoredCheckpoint
from audit.log import LogSigner, append
from audit.merkle import EMPTY_ROOT
from audit.tree import MemoryNodeStore, root_at
from audit.verify import Verified, verify_log
from broker.interfaces import AuditRepository

ORIGIN = "accord.test/audit"
START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class DuplicateKey(Exception):
    """What a primary key or foreign key violation is in the tables the fake stands for."""


class MemoryAudit:
    """An ``AuditRepository`` held in memory; not thread-safe, no transactions."""

    def __init__(self) -> None:
        self._nodes = MemoryNodeStore()
        self.entries: list[LoggedEntry] = []
        self.head_size = 0
        self.head_root = EMPTY_ROOT.hex()
        self.stored_checkpoints: dict[int, StoredCheckpoint] = {}
        self.cosignature_lines: dict[int, dict[str, str]] = {}
        self.cosigned_at: dict[tuple[int, str], str] = {}
        self.witnesses: dict[str, str] = {}
        self.witnesses_added_at: dict[str, str] = {}
        self.head_locks = 0

    # -- entries and head -------------------------------------------------------

    @property
    def nodes(self) -> MemoryNodeStore:
        return self._nodes

    def lock_head(self) -> tuple[int, str]:
        self.head_locks += 1
        return self.head()

    def head(self) -> tuple[int, str]:
        return self.head_size, self.head_root

    def append(self, entry: LoggedEntry) -> None:
        if any(held.seq == entry.seq for held in self.entries):
            raise DuplicateKey(f"audit entry {entry.seq} already exists")
        self.entries.append(entry)

    def set_head(self, size: int, head_hash: str) -> None:
        self.head_size, self.head_root = size, head_hash

    def iter_all(self) -> Iterator[LoggedEntry]:
        return iter(sorted(self.entries, key=lambda e: e.seq))

    def entry(self, seq: int) -> LoggedEntry | None:
        return next((e for e in self.entries if e.seq == seq), None)

    def page(self, *, actor: str | None, after: int, limit: int) -> list[LoggedEntry]:
        found = [e for e in self.iter_all() if e.seq > after]
        if actor is not None:
            found = [e for e in found if e.event.actor == actor]
        return found[:limit]

    # -- checkpoints and witnesses ---------------------------------------------

    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        if checkpoint.size in self.stored_checkpoints:
            raise DuplicateKey(f"a checkpoint at size {checkpoint.size} already exists")
        # Cosignatures live in their own table; the checkpoint row holds none.
        self.stored_checkpoints[checkpoint.size] = dataclasses.replace(checkpoint, cosignatures=())

    def _with_cosignatures(self, stored: StoredCheckpoint) -> StoredCheckpoint:
        lines = self.cosignature_lines.get(stored.size, {})
        return dataclasses.replace(stored, cosignatures=tuple(sorted(lines.items())))

    def latest_checkpoint_mark(self) -> tuple[int, str] | None:
        latest = self.latest_checkpoint()
        return None if latest is None else (latest.size, latest.created_at)

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        if not self.stored_checkpoints:
            return None
        return self._with_cosignatures(self.stored_checkpoints[max(self.stored_checkpoints)])

    def checkpoint(self, size: int) -> StoredCheckpoint | None:
        stored = self.stored_checkpoints.get(size)
        return None if stored is None else self._with_cosignatures(stored)

    def checkpoint_covering(self, size: int) -> StoredCheckpoint | None:
        covering = [s for s in self.stored_checkpoints if s >= size]
        return self.checkpoint(min(covering)) if covering else None

    def checkpoints(self) -> list[StoredCheckpoint]:
        return [
            self._with_cosignatures(self.stored_checkpoints[s])
            for s in sorted(self.stored_checkpoints)
        ]

    def add_cosignature(self, size: int, witness: str, line: str, at: str) -> None:
        if size not in self.stored_checkpoints:
            raise DuplicateKey(f"no checkpoint at size {size} to cosign")
        lines = self.cosignature_lines.setdefault(size, {})
        if witness in lines:
            raise DuplicateKey(f"'{witness}' already cosigned checkpoint {size}")
        lines[witness] = line
        self.cosigned_at[size, witness] = at

    def witness_keys(self) -> dict[str, str]:
        return dict(self.witnesses)

    def add_witness_key(self, name: str, public_key: str, at: str) -> None:
        if name in self.witnesses:
            raise DuplicateKey(f"witness '{name}' is already registered")
        self.witnesses[name] = public_key
        self.witnesses_added_at[name] = at


def as_repository(audit: MemoryAudit) -> AuditRepository:
    """The fake typed as the protocol, so that mypy checks it implements all of it."""
    return audit


# -- helpers -------------------------------------------------------------------


def key(seed: int) -> Ed25519PrivateKey:
    """A deterministic Ed25519 key, different for each seed below 224."""
    return Ed25519PrivateKey.from_private_bytes(bytes((seed + i) % 256 for i in range(32)))


def signer(every_entries: int = 100, every_seconds: float = 3600.0, seed: int = 0) -> LogSigner:
    """A log signer for ``ORIGIN``."""
    return LogSigner(
        origin=ORIGIN,
        private_key=key(seed),
        every_entries=every_entries,
        every_seconds=every_seconds,
    )


def at(seconds: float) -> str:
    """The entry time ``seconds`` after ``START``, as the broker writes times."""
    return (START + timedelta(seconds=seconds)).isoformat()


def event(n: int, actor: str = "school", **changes: object) -> AuditEvent:
    """A plausible event, different for each ``n``."""
    base = AuditEvent(
        actor=actor,
        action="lookup",
        outcome="permitted",
        agreement_id="sv-early-identification",
        agreement_version=1,
        purpose="safeguarding-triage",
        request_id=f"req-{n}",
        detail={"matched": n % 2 == 0, "subject": f"sub_{n:04d}", "released": []},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def fill(
    audit: MemoryAudit,
    events: Iterable[AuditEvent],
    *,
    log_signer: LogSigner | None,
    seconds: Iterable[float] | None = None,
) -> list[LoggedEntry]:
    """Append ``events`` through ``audit.log.append``, one second apart unless told otherwise."""
    times = iter(seconds) if seconds is not None else None
    written = []
    for item in events:
        when = at(next(times) if times is not None else float(audit.head_size))
        written.append(append(audit, item, at=when, signer=log_signer))
    return written


def verify(
    audit: MemoryAudit,
    log_signer: LogSigner,
    witness_keys: Mapping[str, Ed25519PublicKey] | None = None,
    *,
    entries: Iterable[LoggedEntry] | None = None,
) -> Verified:
    """``verify_log`` over everything the repository holds, as ``AuditTrail.verify`` calls it."""
    return verify_log(
        audit.iter_all() if entries is None else entries,
        head_size=audit.head_size,
        head_root=audit.head_root,
        stored_root=lambda n: root_at(audit.nodes, n),
        stored_nodes=audit.nodes.level_range,
        stored_node_count=audit.nodes.count,
        checkpoints=audit.checkpoints(),
        origin=log_signer.origin,
        log_key=log_signer.public_key,
        witness_keys=witness_keys or {},
    )


def reseal(entry: LoggedEntry, **changes: object) -> LoggedEntry:
    """``entry`` with ``changes`` (to it or its event) and a leaf hash that matches them."""
    entry_fields = {k: v for k, v in changes.items() if k in {"seq", "at"}}
    event_fields = {k: v for k, v in changes.items() if k not in entry_fields}
    changed = dataclasses.replace(entry.event, **event_fields)  # type: ignore[arg-type]
    seq = int(entry_fields.get("seq", entry.seq))  # type: ignore[call-overload]
    return seal_entry(seq, str(entry_fields.get("at", entry.at)), changed)
