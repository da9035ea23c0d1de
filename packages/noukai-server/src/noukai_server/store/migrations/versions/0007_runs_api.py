"""The runs API: caller metadata on runs (and its filter table), the run's trace context, the
rerun link, and the indexes the runs list reads in newest-first order.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Hand-written to match `noukai_server.store.schema.metadata` (the autogenerate test checks it);
types spelled out, as in 0001, so the file keeps its meaning. Every new column is nullable or has
a server default, so the upgrade is an `ADD COLUMN` on both stores, with no table rewrite; the
index builds read the runs table once each.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIST_INDEXES: dict[str, list[str]] = {
    "ix_runs_list_org": ["org_id", "created_at", "id"],
    "ix_runs_list_project": ["org_id", "project_id", "created_at", "id"],
    "ix_runs_list_flow": ["org_id", "flow_id", "created_at", "id"],
}


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("metadata", sa.JSON(), nullable=False, server_default="{}"))
        runs.add_column(sa.Column("traceparent", sa.String(55), nullable=True))
        runs.add_column(sa.Column("trace_parent_span_id", sa.String(16), nullable=True))
        runs.add_column(sa.Column("rerun_of", sa.String(36), nullable=True))
        runs.add_column(sa.Column("rerun_from_step", sa.String(64), nullable=True))
    for name, columns in _LIST_INDEXES.items():
        op.create_index(name, "runs", columns)
    op.create_table(
        "run_metadata",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_run_metadata"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_metadata_run_id_runs"),
    )
    op.create_index(
        "ix_run_metadata_list", "run_metadata", ["org_id", "key", "value", "created_at", "run_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_run_metadata_list", table_name="run_metadata")
    op.drop_table("run_metadata")
    for name in _LIST_INDEXES:
        op.drop_index(name, table_name="runs")
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("rerun_from_step")
        runs.drop_column("rerun_of")
        runs.drop_column("trace_parent_span_id")
        runs.drop_column("traceparent")
        runs.drop_column("metadata")
