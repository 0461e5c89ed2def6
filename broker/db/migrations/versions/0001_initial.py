"""Initial schema: credentials, subjects, batches, records, match tokens, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agency_credential",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("agency_id", sa.String(64), nullable=False),
        sa.Column("key_digest", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("revoked_at", sa.String(40), nullable=True),
    )
    op.create_index("ix_agency_credential_agency_id", "agency_credential", ["agency_id"])
    op.create_table(
        "subject",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("agreement_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_subject_agreement_id", "subject", ["agreement_id"])
    op.create_table(
        "batch",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("agreement_id", sa.String(64), nullable=False),
        sa.Column("dataset_id", sa.String(64), nullable=False),
        sa.Column("agency_id", sa.String(64), nullable=False),
        sa.Column("received_at", sa.String(40), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=False),
    )
    op.create_table(
        "record",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("agreement_id", sa.String(64), nullable=False),
        sa.Column("dataset_id", sa.String(64), nullable=False),
        sa.Column("agency_id", sa.String(64), nullable=False),
        sa.Column("source_ref", sa.String(128), nullable=False),
        sa.Column("subject_id", sa.String(40), sa.ForeignKey("subject.id"), nullable=False),
        sa.Column("batch_id", sa.String(40), sa.ForeignKey("batch.id"), nullable=False),
        sa.Column("received_at", sa.String(40), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.UniqueConstraint("agreement_id", "dataset_id", "source_ref", name="uq_record_source"),
    )
    op.create_index("ix_record_subject", "record", ["subject_id", "agreement_id"])
    op.create_table(
        "match_token",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("agreement_id", sa.String(64), nullable=False),
        sa.Column("match_key", sa.String(32), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("subject_id", sa.String(40), sa.ForeignKey("subject.id"), nullable=False),
        sa.Column("record_id", sa.String(40), sa.ForeignKey("record.id"), nullable=False),
    )
    op.create_index("ix_match_token_lookup", "match_token", ["token", "match_key", "agreement_id"])
    op.create_index("ix_match_token_subject", "match_token", ["subject_id", "match_key"])
    op.create_table(
        "audit_entry",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason_code", sa.String(64), nullable=True),
        sa.Column("agreement_id", sa.String(64), nullable=True),
        sa.Column("agreement_version", sa.Integer(), nullable=True),
        sa.Column("purpose", sa.String(64), nullable=True),
        sa.Column("dataset_id", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_entry_actor", "audit_entry", ["actor"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(
        sa.table(
            "audit_head",
            sa.column("id", sa.Integer()),
            sa.column("size", sa.Integer()),
            sa.column("head_hash", sa.String()),
        ),
        [{"id": 1, "size": 0, "head_hash": "0" * 64}],
    )
    op.create_table(
        "key_check",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("check_value", sa.String(32), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "key_check",
        "audit_head",
        "audit_entry",
        "match_token",
        "record",
        "batch",
        "subject",
        "agency_credential",
    ):
        op.drop_table(table)
