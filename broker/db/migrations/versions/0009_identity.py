"""Identity (issue 8): agency clients with their public keys, used assertions, people's accounts.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

Not additive: ``agency_credential`` (the API keys) is dropped, because API keys
end with this version. Every agency registers a client (``broker agencies
add``) and every person gets an account (``broker users add``) after the
upgrade; workers of the previous version stop authenticating anyone once it
runs, so stop them first.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agency_client",
        sa.Column("client_id", sa.String(80), primary_key=True),
        sa.Column("agency_id", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cert_thumbprint", sa.String(64), nullable=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("disabled_at", sa.String(40), nullable=True),
    )
    op.create_index("ix_agency_client_agency_id", "agency_client", ["agency_id"])
    op.create_table(
        "client_key",
        sa.Column(
            "client_id",
            sa.String(80),
            sa.ForeignKey("agency_client.client_id"),
            primary_key=True,
        ),
        sa.Column("key_id", sa.String(40), primary_key=True),
        sa.Column("alg", sa.String(16), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("not_after", sa.String(40), nullable=True),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "used_assertion",
        sa.Column("client_id", sa.String(80), primary_key=True),
        sa.Column("jti", sa.String(200), primary_key=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_used_assertion_expires", "used_assertion", ["expires_at"])
    op.create_table(
        "person_account",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("agency_id", sa.String(64), nullable=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("disabled_at", sa.String(40), nullable=True),
    )
    op.drop_index("ix_agency_credential_agency_id", table_name="agency_credential")
    op.drop_table("agency_credential")


def downgrade() -> None:
    op.create_table(
        "agency_credential",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("agency_id", sa.String(64), nullable=False),
        sa.Column("key_digest", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("revoked_at", sa.String(40), nullable=True),
        sa.Column("role", sa.String(16), nullable=False, server_default="system"),
    )
    op.create_index("ix_agency_credential_agency_id", "agency_credential", ["agency_id"])
    op.drop_table("person_account")
    op.drop_index("ix_used_assertion_expires", table_name="used_assertion")
    op.drop_table("used_assertion")
    op.drop_table("client_key")
    op.drop_index("ix_agency_client_agency_id", table_name="agency_client")
    op.drop_table("agency_client")
