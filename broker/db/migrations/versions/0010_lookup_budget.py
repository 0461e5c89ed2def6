"""Lookup budgets: how many lookups each recipient agency made per purpose per day.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

Additive: one new table, so workers of the previous version keep serving while
the database is upgraded under them (they simply do not count lookups). A row
holds counts only, never who was looked up: that is in the audit log.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lookup_budget",
        sa.Column("agreement_id", sa.String(64), nullable=False),
        sa.Column("agency_id", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        # The UTC day, YYYY-MM-DD: the budget renews at midnight UTC.
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("agreement_id", "agency_id", "purpose", "day"),
    )


def downgrade() -> None:
    op.drop_table("lookup_budget")
