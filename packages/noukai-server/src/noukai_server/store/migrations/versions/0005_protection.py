"""Protection: key scopes and expiry, the key that started each run, the request an idempotency
key was first used with, and a run's total deadline.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

Hand-written to match `noukai_server.store.schema.metadata` (the autogenerate test checks it);
types spelled out, as in 0001, so the file keeps its meaning.
Every new column is nullable or has a server default, so the upgrade is an `ADD COLUMN` on both
stores, with no table rewrite.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as keys:
        keys.add_column(sa.Column("scopes", sa.String(64), nullable=False, server_default="admin"))
        keys.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("api_key_id", sa.String(32), nullable=True))
        runs.add_column(sa.Column("request_hash", sa.String(64), nullable=True))
        runs.add_column(sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True))
    # Request-rate counters for deployments without Redis (`store.rate_counters`).
    op.create_table(
        "rate_counters",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_rate_counters"),
    )
    op.create_index("ix_rate_counters_expires_at_ms", "rate_counters", ["expires_at_ms"])


def downgrade() -> None:
    op.drop_index("ix_rate_counters_expires_at_ms", table_name="rate_counters")
    op.drop_table("rate_counters")
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("deadline_at")
        runs.drop_column("request_hash")
        runs.drop_column("api_key_id")
    with op.batch_alter_table("api_keys") as keys:
        keys.drop_column("expires_at")
        keys.drop_column("scopes")
