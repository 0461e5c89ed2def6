"""The key store: wrapped working keys with versions; tokens name their linkage key version.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Additive: every existing token was made with version 1 of its agreement's
linkage key. Keys of a database written before the store are adopted into it
by the broker at start-up, because only the broker holds the master key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wrapped_key",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("agreement_id", sa.String(64), primary_key=True),
        sa.Column("recipient", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("check_value", sa.String(32), nullable=False),
        sa.Column("master_check", sa.String(32), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("changed_at", sa.String(40), nullable=False),
    )
    with op.batch_alter_table("match_token") as batch:
        batch.add_column(sa.Column("key_version", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("match_token") as batch:
        batch.drop_column("key_version")
    op.drop_table("wrapped_key")
