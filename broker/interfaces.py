"""What the domain core needs from storage, declared here and implemented in ``broker.db``.

Repositories never commit: the unit of work owns the transaction, so an action
and its audit entry are committed together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from audit.events import LoggedEntry, StoredCheckpoint
from audit.queries import AuditQuery
from audit.tree import NodeStore
from broker.idempotency import IdempotencyRepository
from broker.identity_ports import IdentityRepository
from broker.link.types import EncodedRecord
from broker.notify_ports import NotificationRepository
from broker.possible_matches import QueuedPair


@dataclass(frozen=True)
class RecordRow:
    """A stored record as the core sees it (payload still sealed)."""

    id: str
    agreement_id: str
    agreement_version: int
    dataset_id: str
    agency_id: str
    source_ref: str
    subject_id: str
    batch_id: str
    received_at: str
    key_version: int
    payload: bytes


@dataclass(frozen=True)
class AgreementRow:
    """One stored agreement version: its document (JSON) and its lifecycle state."""

    agreement_id: str
    version: int
    status: str
    status_reason: str | None
    document: str
    digest: str
    source: str
    created_at: str
    created_by: str
    updated_at: str


@dataclass(frozen=True)
class TokenRow:
    """One match-key token of one record, made with one version of the linkage key."""

    match_key: str
    token: str
    subject_id: str
    record_id: str
    key_version: int = 1


@dataclass(frozen=True, repr=False)
class StoredKey:
    """One version of a working key as the database holds it: wrapped, never in clear."""

    kind: str
    agreement_id: str
    recipient: str
    version: int
    state: str
    wrapped: bytes | None  # None once destroyed
    check_value: str
    master_check: str  # which master key wrapped it
    created_at: str
    changed_at: str

    def __repr__(self) -> str:  # even wrapped bytes stay out of logs
        return f"StoredKey({self.kind}/{self.agreement_id}/{self.recipient} v{self.version})"


@dataclass(frozen=True)
class RecordKeyCount:
    """How many records of one provider's dataset a statement about keys applies to."""

    agency_id: str
    dataset_id: str
    records: int


class LinkageRepository(Protocol):
    def add_subjects(self, agreement_id: str, subject_ids: Sequence[str], at: str) -> None: ...

    def add_tokens(self, agreement_id: str, tokens: Sequence[TokenRow]) -> None: ...

    def subjects_for_tokens(
        self, agreement_id: str, key_version: int, match_key: str, tokens: Sequence[str]
    ) -> Mapping[str, set[str]]: ...

    def tokens_of_subjects(
        self, agreement_id: str, key_version: int, match_key: str, subject_ids: Sequence[str]
    ) -> Mapping[str, set[str]]: ...

    def tokens_of_records(
        self, agreement_id: str, key_version: int, records: Mapping[str, str]
    ) -> Mapping[str, dict[str, str]]: ...

    def delete_record_tokens(
        self, agreement_id: str, key_version: int, records: Mapping[str, str]
    ) -> None: ...

    def delete_version(self, agreement_id: str, key_version: int) -> int: ...

    def records_lacking_version(
        self, agreement_id: str, have: int, lack: int
    ) -> list[RecordKeyCount]: ...


class RecordRepository(Protocol):
    def add_batch(
        self,
        *,
        batch_id: str,
        agreement_id: str,
        dataset_id: str,
        agency_id: str,
        at: str,
        count: int,
    ) -> None: ...

    def add_records(self, records: Sequence[RecordRow]) -> None: ...

    def existing_refs(
        self, agreement_id: str, dataset_id: str, refs: Sequence[str]
    ) -> set[str]: ...

    def of_subject(self, agreement_id: str, subject_id: str) -> list[RecordRow]: ...

    def by_refs(
        self, agreement_id: str, dataset_id: str, refs: Sequence[str]
    ) -> dict[str, RecordRow]: ...

    def sealed_under(
        self, agreement_id: str, key_version: int, limit: int
    ) -> list[tuple[str, bytes]]: ...

    def reseal(self, record_id: str, key_version: int, payload: bytes) -> None: ...

    def count_by_key_version(self, agreement_id: str) -> dict[int, int]: ...


class WrappedKeyRepository(Protocol):
    def versions(self, kind: str, agreement_id: str, recipient: str) -> list[StoredKey]: ...

    def all(self) -> list[StoredKey]: ...

    def add(self, key: StoredKey) -> None: ...

    def set_state(
        self, kind: str, agreement_id: str, recipient: str, version: int, *, state: str, at: str
    ) -> None: ...

    def destroy(
        self, kind: str, agreement_id: str, recipient: str, version: int, at: str
    ) -> None: ...


class VerifiableNodes(NodeStore, Protocol):
    def level_range(self, level: int, first: int, last: int) -> Mapping[int, bytes]: ...

    def count(self) -> int: ...


class AuditRepository(Protocol):
    @property
    def nodes(self) -> VerifiableNodes: ...

    def lock_head(self) -> tuple[int, str]: ...

    def append(self, entry: LoggedEntry) -> None: ...

    def set_head(self, size: int, head_hash: str) -> None: ...

    def head(self) -> tuple[int, str]: ...

    def iter_all(self) -> Iterator[LoggedEntry]: ...

    def entry(self, seq: int) -> LoggedEntry | None: ...

    def page(self, *, actor: str | None, after: int, limit: int) -> list[LoggedEntry]: ...

    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None: ...

    def latest_checkpoint_mark(self) -> tuple[int, str] | None: ...

    def latest_checkpoint(self) -> StoredCheckpoint | None: ...

    def checkpoint(self, size: int) -> StoredCheckpoint | None: ...

    def checkpoint_covering(self, size: int) -> StoredCheckpoint | None: ...

    def checkpoints(self) -> list[StoredCheckpoint]: ...

    def add_cosignature(self, size: int, witness: str, line: str, at: str) -> None: ...

    def witness_keys(self) -> dict[str, str]: ...

    def add_witness_key(self, name: str, public_key: str, at: str) -> None: ...


class AuditQueryRepository(Protocol):
    def search(self, query: AuditQuery) -> list[LoggedEntry]: ...

    def entries_between(
        self, since: str | None, until: str | None, actor: str | None = None
    ) -> list[LoggedEntry]: ...


class AgreementRepository(Protocol):
    def add(self, row: AgreementRow) -> None: ...

    def get(self, agreement_id: str, version: int) -> AgreementRow | None: ...

    def all(self) -> list[AgreementRow]: ...

    def set_status(
        self, agreement_id: str, version: int, status: str, reason: str | None, at: str
    ) -> None: ...

    def set_document(
        self, agreement_id: str, version: int, document: str, digest: str, at: str
    ) -> None: ...

    def generation(self) -> int: ...

    def bump_generation(self) -> int: ...

    def approver_keys(self) -> dict[str, set[str]]: ...

    def add_approver_key(self, agency_id: str, public_key: str, at: str) -> None: ...

    def revoke_approver_key(self, agency_id: str, public_key: str, at: str) -> bool: ...


class MetaRepository(Protocol):
    def key_check(self) -> str | None: ...

    def set_key_check(self, value: str, at: str) -> None: ...

    def has_data(self) -> bool: ...

    def agreements_with_data(self) -> list[str]: ...


class DatasetRecordRepository(Protocol):
    def page(
        self, agreement_id: str, dataset_id: str, *, after: str | None, limit: int
    ) -> list[RecordRow]: ...


class LookupBudgetRepository(Protocol):
    """Daily lookup counts per agreement, recipient agency and purpose."""

    def spend(
        self, agreement_id: str, *, agency: str, purpose: str, day: str, allowed: int
    ) -> int | None:
        """Count one lookup unless ``allowed`` are already counted: the count now, or None."""
        ...

    def used(self, agreement_id: str, *, agency: str, purpose: str, day: str) -> int:
        """How many lookups are counted (0 when none)."""
        ...


class LinkStoreRepository(Protocol):
    """Record encodings, their token index and the possible-match queue (issue 5)."""

    def add_encodings(
        self,
        agreement_id: str,
        key_version: int,
        encoded: Sequence[EncodedRecord],
        blocks: Mapping[str, Sequence[str]],
    ) -> None: ...
    def candidates(self, agreement_id: str, tokens: Iterable[str]) -> set[str]: ...
    def encodings(self, agreement_id: str, record_ids: Iterable[str]) -> list[EncodedRecord]: ...
    def all_encodings(self, agreement_id: str) -> list[EncodedRecord]: ...
    def merge_subjects(self, agreement_id: str, *, keep: str, drop: str) -> None: ...
    def subjects_of(self, record_ids: Iterable[str]) -> dict[str, str]: ...
    def source_refs(self, record_ids: Iterable[str]) -> dict[str, str]: ...
    def enqueue(self, pairs: Sequence[QueuedPair]) -> None: ...
    def queued(self, agreement_id: str, agency: str | None = None) -> list[QueuedPair]: ...
    def pair(self, agreement_id: str, pair_id: str) -> QueuedPair | None: ...
    def save_decision(self, pair: QueuedPair) -> None: ...
    def queue_counts(self, agreement_id: str) -> dict[str, int]: ...


class UnitOfWork(Protocol):
    """One database transaction; commit explicitly, roll back on any exception."""

    @property
    def identity(self) -> IdentityRepository: ...

    @property
    def linkage(self) -> LinkageRepository: ...

    @property
    def records(self) -> RecordRepository: ...

    @property
    def audit(self) -> AuditRepository: ...

    @property
    def meta(self) -> MetaRepository: ...

    @property
    def agreements(self) -> AgreementRepository: ...

    @property
    def audit_queries(self) -> AuditQueryRepository: ...

    @property
    def keys(self) -> WrappedKeyRepository: ...

    @property
    def notifications(self) -> NotificationRepository: ...

    @property
    def dataset_records(self) -> DatasetRecordRepository: ...

    @property
    def lookup_budget(self) -> LookupBudgetRepository: ...

    @property
    def idempotency(self) -> IdempotencyRepository: ...

    # The linkage engine's encodings and possible-match queue (issue 5).
    @property
    def link_store(self) -> LinkStoreRepository: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


def chunked(items: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    """Split a long IN (...) list into pieces the database accepts."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
