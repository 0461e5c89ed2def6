"""SQL storage of identity: agency clients and their keys, used assertions, people's accounts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from broker.client_auth import ACTIVE as CLIENT_ACTIVE
from broker.client_auth import DISABLED as CLIENT_DISABLED
from broker.client_auth import AgencyClient, ClientKey
from broker.db import tables
from broker.people import ACTIVE as ACCOUNT_ACTIVE
from broker.people import DISABLED as ACCOUNT_DISABLED
from broker.people import PersonAccount


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


CLIENT = _table(tables.AgencyClient)
CLIENT_KEY = _table(tables.ClientKey)
USED_ASSERTION = _table(tables.UsedAssertion)
ACCOUNT = _table(tables.PersonAccount)


def _client(row: Any) -> AgencyClient:
    return AgencyClient(
        client_id=row.client_id,
        agency_id=row.agency_id,
        role=row.role,
        status=row.status,
        cert_thumbprint=row.cert_thumbprint,
        created_at=row.created_at,
        disabled_at=row.disabled_at,
    )


def _account(row: Any) -> PersonAccount:
    return PersonAccount(
        username=row.username,
        role=row.role,
        agency_id=row.agency_id,
        password_hash=row.password_hash,
        status=row.status,
        created_at=row.created_at,
        disabled_at=row.disabled_at,
    )


class SqlIdentity:
    """Implements ``broker.identity_ports.IdentityRepository`` on one connection."""

    def __init__(self, connection: Connection) -> None:
        self._c = connection

    # -- clients --------------------------------------------------------------

    def add_client(self, client: AgencyClient) -> None:
        self._c.execute(
            insert(CLIENT).values(
                client_id=client.client_id,
                agency_id=client.agency_id,
                role=client.role,
                status=client.status,
                cert_thumbprint=client.cert_thumbprint,
                created_at=client.created_at,
                disabled_at=client.disabled_at,
            )
        )

    def client(self, client_id: str) -> AgencyClient | None:
        row = self._c.execute(select(CLIENT).where(CLIENT.c.client_id == client_id)).first()
        return None if row is None else _client(row)

    def clients(self) -> list[AgencyClient]:
        rows = self._c.execute(select(CLIENT).order_by(CLIENT.c.agency_id, CLIENT.c.created_at))
        return [_client(row) for row in rows]

    def disable_client(self, client_id: str, at: str) -> bool:
        done = self._c.execute(
            update(CLIENT)
            .where(CLIENT.c.client_id == client_id, CLIENT.c.status == CLIENT_ACTIVE)
            .values(status=CLIENT_DISABLED, disabled_at=at)
        )
        return done.rowcount == 1

    def add_client_key(self, client_id: str, key: ClientKey) -> None:
        self._c.execute(
            insert(CLIENT_KEY).values(
                client_id=client_id,
                key_id=key.key_id,
                alg=key.alg,
                public_key_pem=key.public_key_pem,
                not_after=key.not_after,
                created_at=key.created_at,
            )
        )

    def client_keys(self, client_id: str) -> list[ClientKey]:
        rows = self._c.execute(
            select(CLIENT_KEY)
            .where(CLIENT_KEY.c.client_id == client_id)
            .order_by(CLIENT_KEY.c.created_at)
        )
        return [
            ClientKey(
                key_id=row.key_id,
                alg=row.alg,
                public_key_pem=row.public_key_pem,
                created_at=row.created_at,
                not_after=row.not_after,
            )
            for row in rows
        ]

    def end_client_keys(self, client_id: str, not_after: str) -> int:
        """End every key still valid at ``not_after`` at that time; how many were ended."""
        done = self._c.execute(
            update(CLIENT_KEY)
            .where(
                CLIENT_KEY.c.client_id == client_id,
                or_(CLIENT_KEY.c.not_after.is_(None), CLIENT_KEY.c.not_after > not_after),
            )
            .values(not_after=not_after)
        )
        return int(done.rowcount)

    def use_assertion(self, client_id: str, jti: str, expires_at: int, now: int) -> bool:
        """Record a jti as used; False when it already was (a replay). Purges expired ones."""
        self._c.execute(delete(USED_ASSERTION).where(USED_ASSERTION.c.expires_at < now))
        # A savepoint: a concurrent insert of the same jti must not abort the transaction.
        savepoint = self._c.begin_nested()
        try:
            self._c.execute(
                insert(USED_ASSERTION).values(client_id=client_id, jti=jti, expires_at=expires_at)
            )
        except IntegrityError:
            savepoint.rollback()
            return False
        savepoint.commit()
        return True

    # -- people -----------------------------------------------------------------

    def add_account(self, account: PersonAccount) -> None:
        self._c.execute(
            insert(ACCOUNT).values(
                username=account.username,
                role=account.role,
                agency_id=account.agency_id,
                password_hash=account.password_hash,
                status=account.status,
                created_at=account.created_at,
                disabled_at=account.disabled_at,
            )
        )

    def account(self, username: str) -> PersonAccount | None:
        row = self._c.execute(select(ACCOUNT).where(ACCOUNT.c.username == username)).first()
        return None if row is None else _account(row)

    def accounts(self) -> list[PersonAccount]:
        rows = self._c.execute(select(ACCOUNT).order_by(ACCOUNT.c.username))
        return [_account(row) for row in rows]

    def set_password(self, username: str, password_hash: str) -> bool:
        done = self._c.execute(
            update(ACCOUNT)
            .where(ACCOUNT.c.username == username)
            .values(password_hash=password_hash)
        )
        return done.rowcount == 1

    def disable_account(self, username: str, at: str) -> bool:
        done = self._c.execute(
            update(ACCOUNT)
            .where(ACCOUNT.c.username == username, ACCOUNT.c.status == ACCOUNT_ACTIVE)
            .values(status=ACCOUNT_DISABLED, disabled_at=at)
        )
        return done.rowcount == 1
