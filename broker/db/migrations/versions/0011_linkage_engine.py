"""Linkage engine storage: each record's encodings, their blocking index, the possible-match queue.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

Additive: three new tables, so workers of the previous version keep serving
while the database is upgraded under them (they simply store no encodings).
No column holds a clear identifier: encodings are keyed tokens and keyed Bloom
bits, useless without the agreement's linkage key, and a queued pair holds
per-field levels (agree, nearly agree, disagree), never values.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "record_encoding",
        sa.Column("record_id", sa.String(40), sa.ForeignKey("record.id"), primary_key=True),
        sa.Column("agreement_id", sa.String(64), nullable=False),
        # JSON: token name -> keyed token; encoded field -> Bloom bits as hex.
        sa.Column("tokens", sa.Text(), nullable=False),
        sa.Column("blooms", sa.Text(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
    )
    op.create_table(
        "link_block",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("agreement_id", sa.String(64), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(40), sa.ForeignKey("record.id"), nullable=False),
    )
    # The token leads: it is the selective column (as for match_token).
    op.create_index("ix_link_block_lookup", "link_block", ["token", "agreement_id"])
    op.create_index("ix_link_block_record", "link_block", ["record_id"])
    op.create_table(
        "possible_match",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("agreement_id", sa.String(64), nullable=False),
        sa.Column("left_record_id", sa.String(40), sa.ForeignKey("record.id"), nullable=False),
        sa.Column("right_record_id", sa.String(40), sa.ForeignKey("record.id"), nullable=False),
        sa.Column("left_agency", sa.String(64), nullable=False),
        sa.Column("right_agency", sa.String(64), nullable=False),
        # One digit per compared field, broker.link.types.Level values in COMPARED_FIELDS order.
        sa.Column("levels", sa.String(16), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("left_decision", sa.String(16), nullable=True),
        sa.Column("right_decision", sa.String(16), nullable=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("resolved_at", sa.String(40), nullable=True),
        sa.UniqueConstraint("left_record_id", "right_record_id", name="uq_possible_match_pair"),
    )
    op.create_index("ix_possible_match_queue", "possible_match", ["agreement_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_possible_match_queue", table_name="possible_match")
    op.drop_table("possible_match")
    op.drop_index("ix_link_block_record", table_name="link_block")
    op.drop_index("ix_link_block_lookup", table_name="link_block")
    op.drop_table("link_block")
    op.drop_table("record_encoding")
