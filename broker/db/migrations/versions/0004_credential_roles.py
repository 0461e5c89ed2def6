"""Credential roles: an agency's system, or its information governance lead.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

Additive: every existing key is an agency system's key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agency_credential") as batch:
        batch.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="system"))


def downgrade() -> None:
    with op.batch_alter_table("agency_credential") as batch:
        batch.drop_column("role")
