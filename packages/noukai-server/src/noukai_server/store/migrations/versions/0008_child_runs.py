"""Child runs: a run started by another run's `flow` step (or an agent's `flow:` tool) records its
parent run, the parent's step, and its nesting depth.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

Hand-written to match `noukai_server.store.schema.metadata` (the autogenerate test checks it).
The columns are nullable or have a server default, so the upgrade is an `ADD COLUMN` on both
stores, with no table rewrite. No index: a child's id is derived from its parent's id and step
(`runtime/child_runs.py`), so nothing looks children up by parent.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("parent_run_id", sa.String(36), nullable=True))
        runs.add_column(sa.Column("parent_step_id", sa.String(64), nullable=True))
        runs.add_column(sa.Column("depth", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("depth")
        runs.drop_column("parent_step_id")
        runs.drop_column("parent_run_id")
