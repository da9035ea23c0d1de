"""Threads: multi-turn conversations (`threads`, `thread_messages`) and `runs.thread_id`.

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-06

Hand-written to match `noukai_server.store.schema.metadata` (the autogenerate test checks it).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "threads",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(36), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("ttl_seconds", sa.Integer(), nullable=False),
        sa.Column("active_run_id", sa.String(36), nullable=True),
        sa.Column("run_count", sa.Integer(), nullable=False),
        sa.Column("message_count", sa.Integer(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("expires_at"),
        sa.PrimaryKeyConstraint("id", name="pk_threads"),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name="fk_threads_org_id_orgs"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name="fk_threads_project_id_projects"),
        sa.CheckConstraint("ttl_seconds >= 1", name="ck_threads_ttl_positive"),
    )
    op.create_index("ix_threads_expires_at", "threads", ["expires_at"])
    op.create_table(
        "thread_messages",
        sa.Column("thread_id", sa.String(36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("thread_id", "position", name="pk_thread_messages"),
        sa.ForeignKeyConstraint(["thread_id"], ["threads.id"], name="fk_thread_messages_thread_id_threads"),
        sa.CheckConstraint("position >= 1", name="ck_thread_messages_position_positive"),
    )
    # A nullable column without a default: a plain ADD COLUMN on both dialects, no table copy.
    op.add_column("runs", sa.Column("thread_id", sa.String(36), nullable=True))
    op.add_column("runs", sa.Column("thread_ordinal", sa.Integer(), nullable=True))
    op.create_index("ix_runs_thread_id", "runs", ["thread_id"])


def downgrade() -> None:
    op.drop_index("ix_runs_thread_id", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("thread_ordinal")
        batch.drop_column("thread_id")
    op.drop_table("thread_messages")
    op.drop_index("ix_threads_expires_at", table_name="threads")
    op.drop_table("threads")
