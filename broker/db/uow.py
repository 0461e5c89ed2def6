"""The SQL unit of work: one connection, one transaction, explicit commit."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy import Connection, Engine, RootTransaction
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from broker.db.aggregate_repository import SqlDatasetRecords
from broker.db.audit_queries import SqlAuditQueries
from broker.db.idempotency_repository import SqlIdempotency
from broker.db.identity_repository import SqlIdentity
from broker.db.job_repository import SqlJobs, SqlRetention
from broker.db.limit_repository import SqlLookupBudget
from broker.db.link_repository import SqlLinkStore
from broker.db.notify_repository import SqlNotifications
from broker.db.repositories import (
    SqlAgreements,
    SqlAudit,
    SqlKeys,
    SqlLinkage,
    SqlMeta,
    SqlRecords,
)
from broker.errors import Conflict, StorageError


class SqlUnitOfWork:
    """Opens a transaction on enter; rolls back on exit unless ``commit`` was called."""

    # Agency clients, their keys, used assertions and people's accounts (issue 8).
    identity: SqlIdentity
    linkage: SqlLinkage
    records: SqlRecords
    audit: SqlAudit
    meta: SqlMeta
    agreements: SqlAgreements
    audit_queries: SqlAuditQueries
    keys: SqlKeys
    # Background jobs' storage (``broker.job_ports``): the same transaction as the rest.
    jobs: SqlJobs
    retention: SqlRetention
    notifications: SqlNotifications
    dataset_records: SqlDatasetRecords
    lookup_budget: SqlLookupBudget
    # Ingest idempotency keys (``broker.idempotency``), in the batch's transaction.
    idempotency: SqlIdempotency
    # The linkage engine's encodings and possible-match queue (issue 5).
    link_store: SqlLinkStore

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None
        self._transaction: RootTransaction | None = None

    def __enter__(self) -> Self:
        try:
            self._connection = self._engine.connect()
            self._transaction = self._connection.begin()
        except SQLAlchemyError as exc:
            if self._connection is not None:
                self._connection.close()
            raise StorageError("the database could not be reached; try again shortly") from exc
        self.identity = SqlIdentity(self._connection)
        self.linkage = SqlLinkage(self._connection)
        self.records = SqlRecords(self._connection)
        self.audit = SqlAudit(self._connection)
        self.meta = SqlMeta(self._connection)
        self.agreements = SqlAgreements(self._connection)
        self.audit_queries = SqlAuditQueries(self._connection)
        self.keys = SqlKeys(self._connection)
        self.jobs = SqlJobs(self._connection)
        self.retention = SqlRetention(self._connection)
        self.notifications = SqlNotifications(self._connection)
        self.dataset_records = SqlDatasetRecords(self._connection)
        self.lookup_budget = SqlLookupBudget(self._connection)
        self.idempotency = SqlIdempotency(self._connection)
        self.link_store = SqlLinkStore(self._connection)
        return self

    def commit(self) -> None:
        assert self._transaction is not None
        try:
            self._transaction.commit()
        except SQLAlchemyError as exc:
            raise StorageError("the database refused the change; nothing was stored") from exc

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._connection is not None
        assert self._transaction is not None
        try:
            if self._transaction.is_active:
                self._transaction.rollback()
        finally:
            self._connection.close()
        # Foreign exceptions are translated where they enter; SQL text never reaches a caller.
        if isinstance(exc, IntegrityError):
            raise Conflict(
                "another request stored the same record at the same time; nothing from this "
                "request was stored, so send it again"
            ) from exc
        if isinstance(exc, SQLAlchemyError):
            raise StorageError("the database refused the change; nothing was stored") from exc


class SqlUnitOfWorkFactory:
    """Makes units of work on one engine; this is what the app factory hands the core."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine)
