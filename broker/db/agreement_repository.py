"""The agreement register's storage: versions, the reload counter, approver keys."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import Connection, insert, select, update

from broker.db.handles import AGREEMENT, APPROVER_KEY, GENERATION
from broker.interfaces import AgreementRow


class SqlAgreements:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def add(self, row: AgreementRow) -> None:
        self._c.execute(insert(AGREEMENT).values(**row.__dict__))

    def get(self, agreement_id: str, version: int) -> AgreementRow | None:
        row = self._c.execute(
            select(AGREEMENT).where(
                AGREEMENT.c.agreement_id == agreement_id, AGREEMENT.c.version == version
            )
        ).first()
        return None if row is None else AgreementRow(**row._mapping)

    def all(self) -> list[AgreementRow]:
        rows = self._c.execute(
            select(AGREEMENT).order_by(AGREEMENT.c.agreement_id, AGREEMENT.c.version)
        )
        return [AgreementRow(**row._mapping) for row in rows]

    def set_status(
        self, agreement_id: str, version: int, status: str, reason: str | None, at: str
    ) -> None:
        self._c.execute(
            update(AGREEMENT)
            .where(AGREEMENT.c.agreement_id == agreement_id, AGREEMENT.c.version == version)
            .values(status=status, status_reason=reason, updated_at=at)
        )

    def set_document(
        self, agreement_id: str, version: int, document: str, digest: str, at: str
    ) -> None:
        self._c.execute(
            update(AGREEMENT)
            .where(AGREEMENT.c.agreement_id == agreement_id, AGREEMENT.c.version == version)
            .values(document=document, digest=digest, updated_at=at)
        )

    def generation(self) -> int:
        row = self._c.execute(select(GENERATION.c.generation).where(GENERATION.c.id == 1)).one()
        return int(row[0])

    def bump_generation(self) -> int:
        # An UPDATE takes the row lock, so concurrent lifecycle changes serialise here.
        self._c.execute(
            update(GENERATION)
            .where(GENERATION.c.id == 1)
            .values(generation=GENERATION.c.generation + 1)
        )
        return self.generation()

    def approver_keys(self) -> dict[str, set[str]]:
        rows = self._c.execute(
            select(APPROVER_KEY.c.agency_id, APPROVER_KEY.c.public_key).where(
                APPROVER_KEY.c.revoked_at.is_(None)
            )
        )
        found: dict[str, set[str]] = defaultdict(set)
        for agency_id, public_key in rows:
            found[str(agency_id)].add(str(public_key))
        return dict(found)

    def add_approver_key(self, agency_id: str, public_key: str, at: str) -> None:
        self._c.execute(
            insert(APPROVER_KEY).values(agency_id=agency_id, public_key=public_key, added_at=at)
        )

    def revoke_approver_key(self, agency_id: str, public_key: str, at: str) -> bool:
        result = self._c.execute(
            update(APPROVER_KEY)
            .where(
                APPROVER_KEY.c.agency_id == agency_id,
                APPROVER_KEY.c.public_key == public_key,
                APPROVER_KEY.c.revoked_at.is_(None),
            )
            .values(revoked_at=at)
        )
        return bool(result.rowcount)
