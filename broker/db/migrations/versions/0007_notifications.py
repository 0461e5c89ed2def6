"""Notifications: recipients' webhook subscriptions, the notifications they receive, and each push.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Additive: three new tables, so workers of the previous version keep serving
while the database is upgraded under them (they neither queue nor deliver).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification_subscription",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("agreement_id", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("dataset_id", sa.String(64), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("cancelled_at", sa.String(40), nullable=True),
    )
    op.create_index(
        "ix_notification_subscription_dataset",
        "notification_subscription",
        ["agreement_id", "dataset_id"],
    )
    op.create_index(
        "ix_notification_subscription_recipient",
        "notification_subscription",
        ["agreement_id", "recipient"],
    )
    op.create_table(
        "notification",
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column(
            "subscription_id",
            sa.String(40),
            sa.ForeignKey("notification_subscription.id"),
            nullable=False,
        ),
        sa.Column("agreement_id", sa.String(64), nullable=False),
        sa.Column("agreement_version", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("dataset_id", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(40), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.String(40), nullable=True),
        sa.Column("delivered_at", sa.String(40), nullable=True),
        sa.Column("acknowledged_at", sa.String(40), nullable=True),
        sa.UniqueConstraint("subscription_id", "record_id", name="uq_notification_record"),
    )
    op.create_index("ix_notification_due", "notification", ["status", "next_attempt_at"])
    op.create_index(
        "ix_notification_recipient", "notification", ["agreement_id", "recipient", "seq"]
    )
    op.create_table(
        "notification_attempt",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "notification_id", sa.String(40), sa.ForeignKey("notification.id"), nullable=False
        ),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(64), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.UniqueConstraint("notification_id", "attempt", name="uq_notification_attempt"),
    )


def downgrade() -> None:
    op.drop_table("notification_attempt")
    op.drop_index("ix_notification_recipient", table_name="notification")
    op.drop_index("ix_notification_due", table_name="notification")
    op.drop_table("notification")
    op.drop_index("ix_notification_subscription_recipient", table_name="notification_subscription")
    op.drop_index("ix_notification_subscription_dataset", table_name="notification_subscription")
    op.drop_table("notification_subscription")
