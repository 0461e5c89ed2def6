"""Idempotent ingest: the first result of each batch, kept under its idempotency key.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Additive: one new table, so workers of the previous version keep serving while
the database is upgraded under them (they simply do not record keys). The key
itself is kept only as its SHA-256 digest, and the request only as a digest of
its body: the row holds the broker's own first response, never a payload.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_idempotency",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("agency_id", sa.String(64), nullable=False),
        sa.Column("agreement_id", sa.String(64), nullable=False),
        sa.Column("dataset_id", sa.String(64), nullable=False),
        sa.Column("key_digest", sa.String(64), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("batch_id", sa.String(40), nullable=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        # Inserted in the batch's own transaction: two concurrent requests with one
        # key cannot both commit, so a batch is stored at most once per key.
        sa.UniqueConstraint(
            "agency_id",
            "agreement_id",
            "dataset_id",
            "key_digest",
            name="uq_ingest_idempotency_key",
        ),
    )
    op.create_index("ix_ingest_idempotency_created", "ingest_idempotency", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_ingest_idempotency_created", table_name="ingest_idempotency")
    op.drop_table("ingest_idempotency")
