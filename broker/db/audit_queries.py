"""Searches over the audit log for IG leads and the operator (read-only; never commits).

Times are compared as text: the log writes every ``at`` in one form (UTC ISO 8601
with microseconds), and ``AuditQuery.validate`` puts since/until in that form.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, or_, select

from audit.events import LoggedEntry
from audit.queries import AuditQuery
from broker.db.audit_repository import entry_from_row
from broker.db.handles import AUDIT


class SqlAuditQueries:
    """Audit searches on a connection inside a transaction it does not own."""

    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def search(self, query: AuditQuery) -> list[LoggedEntry]:
        """Entries matching every filter, in seq order, after ``query.after``, at most limit.

        The query must already be validated (its times normalised).
        """
        if query.subject_ids is not None and not query.subject_ids:
            return []
        if query.scope_agreement_ids == () and query.scope_actor is None:
            return []
        statement = select(AUDIT).where(AUDIT.c.seq > query.after)
        for column, value in (
            (AUDIT.c.actor, query.agency),
            (AUDIT.c.agreement_id, query.agreement_id),
            (AUDIT.c.purpose, query.purpose),
            (AUDIT.c.action, query.action),
            (AUDIT.c.outcome, query.outcome),
            (AUDIT.c.reason_code, query.reason_code),
        ):
            if value is not None:
                statement = statement.where(column == value)
        if query.subject_ids is not None:
            statement = statement.where(AUDIT.c.subject_id.in_(sorted(set(query.subject_ids))))
        statement = statement.where(*_period(query.since, query.until))
        scope: list[Any] = []
        if query.scope_agreement_ids:
            scope.append(AUDIT.c.agreement_id.in_(sorted(set(query.scope_agreement_ids))))
        if query.scope_actor is not None:
            scope.append(AUDIT.c.actor == query.scope_actor)
        if scope:
            statement = statement.where(or_(*scope))
        rows = self._c.execute(statement.order_by(AUDIT.c.seq).limit(query.limit))
        return [entry_from_row(row) for row in rows]

    def entries_between(
        self, since: str | None, until: str | None, actor: str | None = None
    ) -> list[LoggedEntry]:
        """Every entry in [since, until) (either end may be open), optionally of one actor."""
        statement = select(AUDIT).where(*_period(since, until))
        if actor is not None:
            statement = statement.where(AUDIT.c.actor == actor)
        result = self._c.execution_options(yield_per=2000).execute(statement.order_by(AUDIT.c.seq))
        return [entry_from_row(row) for row in result]


def _period(since: str | None, until: str | None) -> list[Any]:
    clauses: list[Any] = []
    if since is not None:
        clauses.append(AUDIT.c.at >= since)
    if until is not None:
        clauses.append(AUDIT.c.at < until)
    return clauses
