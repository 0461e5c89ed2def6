"""The audit log becomes a Merkle tree: leaf hashes, stored subtree nodes, checkpoints, witnesses.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

Existing entries keep their content; their leaf hashes and the tree's nodes are
computed here, and the head records the tree's root. The hash chain columns go.
Checkpoints start with the first one the upgraded broker signs.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from audit.entries import leaf_hash
from audit.events import AuditEvent
from audit.tree import MemoryNodeStore, nodes_for_append, root_at

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ENTRY_COLUMNS = (
    "seq, at, actor, action, outcome, reason_code, agreement_id, agreement_version, "
    "purpose, dataset_id, request_id, detail"
)


def upgrade() -> None:
    with op.batch_alter_table("audit_entry") as batch:
        batch.add_column(sa.Column("leaf_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("subject_id", sa.String(40), nullable=True))
    op.create_index("ix_audit_entry_subject_id", "audit_entry", ["subject_id"])
    op.create_table(
        "merkle_node",
        sa.Column("level", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "audit_checkpoint",
        sa.Column("size", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "cosignature",
        sa.Column(
            "checkpoint_size",
            sa.BigInteger(),
            sa.ForeignKey("audit_checkpoint.size"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("witness", sa.String(256), primary_key=True),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "witness_key",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("public_key", sa.String(60), nullable=False),
        sa.Column("added_at", sa.String(40), nullable=False),
    )
    _rebuild_tree()
    with op.batch_alter_table("audit_entry") as batch:
        batch.alter_column("leaf_hash", existing_type=sa.String(64), nullable=False)
        batch.drop_column("prev_hash")
        batch.drop_column("entry_hash")


def _rebuild_tree() -> None:
    """Leaf hashes and nodes for the entries already written, and the root in the head."""
    bind = op.get_bind()
    store = MemoryNodeStore()
    size = 0
    rows = bind.execute(sa.text(f"SELECT {_ENTRY_COLUMNS} FROM audit_entry ORDER BY seq"))  # noqa: S608
    updates = []
    for row in rows:
        detail = json.loads(row.detail)
        event = AuditEvent(
            actor=row.actor,
            action=row.action,
            outcome=row.outcome,
            reason_code=row.reason_code,
            agreement_id=row.agreement_id,
            agreement_version=row.agreement_version,
            purpose=row.purpose,
            dataset_id=row.dataset_id,
            request_id=row.request_id,
            detail=detail,
        )
        leaf = leaf_hash(row.seq, row.at, event)
        store.put_nodes(nodes_for_append(store, size, [leaf]))
        size += 1
        subject = detail.get("subject")
        updates.append(
            {
                "seq": row.seq,
                "leaf": leaf.hex(),
                "subject": subject if isinstance(subject, str) else None,
            }
        )
    if updates:
        bind.execute(
            sa.text(
                "UPDATE audit_entry SET leaf_hash = :leaf, subject_id = :subject WHERE seq = :seq"
            ),
            updates,
        )
        bind.execute(
            sa.text("INSERT INTO merkle_node (level, idx, hash) VALUES (:level, :idx, :hash)"),
            [{"level": lv, "idx": ix, "hash": h} for (lv, ix), h in store.nodes.items()],
        )
    bind.execute(
        sa.text("UPDATE audit_head SET size = :size, head_hash = :root WHERE id = 1"),
        {"size": size, "root": root_at(store, size).hex()},
    )


def downgrade() -> None:
    raise NotImplementedError("the hash chain cannot be restored; restore a backup instead")
