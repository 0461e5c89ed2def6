"""Daily lookup counts, spent atomically in the lookup's own transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from broker.db import tables


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


BUDGET = _table(tables.LookupBudgetCount)


class SqlLookupBudget:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    @staticmethod
    def _row(agreement_id: str, agency: str, purpose: str, day: str) -> ColumnElement[bool]:
        return and_(
            BUDGET.c.agreement_id == agreement_id,
            BUDGET.c.agency_id == agency,
            BUDGET.c.purpose == purpose,
            BUDGET.c.day == day,
        )

    def spend(
        self, agreement_id: str, *, agency: str, purpose: str, day: str, allowed: int
    ) -> int | None:
        row = self._row(agreement_id, agency, purpose, day)
        # One statement checks and counts: concurrent lookups (several workers) queue on
        # the row's lock and each sees the count the one before it left.
        counted = self._c.execute(
            update(BUDGET)
            .where(row, BUDGET.c.used < allowed)
            .values(used=BUDGET.c.used + 1)
            .returning(BUDGET.c.used)
        ).first()
        if counted is not None:
            return int(counted.used)
        existing = self._c.execute(select(BUDGET.c.used).where(row)).first()
        if existing is not None:
            if int(existing.used) >= allowed:
                return None  # today's budget is spent
            # The day's row was committed by another worker after the update's snapshot
            # was taken (PostgreSQL, read committed): count again against it.
            return self.spend(
                agreement_id, agency=agency, purpose=purpose, day=day, allowed=allowed
            )
        if allowed < 1:
            return None
        try:
            # The day's first lookup; in a savepoint, so that losing a race with another
            # worker's first lookup leaves this transaction usable to count again.
            with self._c.begin_nested():
                first = {"agency_id": agency, "purpose": purpose, "day": day, "used": 1}
                self._c.execute(insert(BUDGET).values(agreement_id=agreement_id, **first))
        except IntegrityError:
            return self.spend(
                agreement_id, agency=agency, purpose=purpose, day=day, allowed=allowed
            )
        return 1

    def used(self, agreement_id: str, *, agency: str, purpose: str, day: str) -> int:
        found = self._c.execute(
            select(BUDGET.c.used).where(self._row(agreement_id, agency, purpose, day))
        ).first()
        return 0 if found is None else int(found.used)
