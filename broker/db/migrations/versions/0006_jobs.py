"""Background jobs: one row per job with its next due time and lease, and a row per run.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

Additive: two new tables, so workers of the previous version keep serving
while the database is upgraded under them. Job rows are added by the workers
themselves, for the jobs their version knows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("next_due_at", sa.String(40), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.String(40), nullable=True),
    )
    op.create_table(
        "job_run",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job", sa.String(32), nullable=False),
        sa.Column("due_at", sa.String(40), nullable=False),
        sa.Column("next_due_at", sa.String(40), nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("started_at", sa.String(40), nullable=False),
        sa.Column("finished_at", sa.String(40), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.String(64), nullable=True),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.UniqueConstraint("job", "due_at", name="uq_job_run_due"),
    )


def downgrade() -> None:
    op.drop_table("job_run")
    op.drop_table("job")
