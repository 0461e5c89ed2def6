"""Agreement lifecycle: stored versions, approver keys, and the version each record came under.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Additive only: existing records were all received under version 1 of their
agreement, which is what the column's default records.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("record") as batch:
        batch.add_column(
            sa.Column("agreement_version", sa.Integer(), nullable=False, server_default="1")
        )
    op.create_table(
        "agreement_document",
        sa.Column("agreement_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "agreement_generation",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("generation", sa.Integer(), nullable=False),
    )
    op.bulk_insert(
        sa.table(
            "agreement_generation",
            sa.column("id", sa.Integer()),
            sa.column("generation", sa.Integer()),
        ),
        [{"id": 1, "generation": 0}],
    )
    op.create_table(
        "approver_key",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("agency_id", sa.String(64), nullable=False),
        sa.Column("public_key", sa.String(60), nullable=False),
        sa.Column("added_at", sa.String(40), nullable=False),
        sa.Column("revoked_at", sa.String(40), nullable=True),
        sa.UniqueConstraint("agency_id", "public_key", name="uq_approver_key"),
    )
    op.create_index("ix_approver_key_agency_id", "approver_key", ["agency_id"])


def downgrade() -> None:
    op.drop_table("approver_key")
    op.drop_table("agreement_generation")
    op.drop_table("agreement_document")
    with op.batch_alter_table("record") as batch:
        batch.drop_column("agreement_version")
