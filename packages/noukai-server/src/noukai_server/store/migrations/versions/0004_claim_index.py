"""The queue's partial index in place of `(status, available_at)`, an index for retention, and on
PostgreSQL a queue table that is vacuumed as often as it churns.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

Hand-written to match `noukai_server.store.schema.metadata` (the autogenerate test checks it).

Every run's row is updated a dozen times in its life (claimed, its events and checkpoints
recorded, completed). On PostgreSQL each update that changes `status` or `available_at` leaves a
dead entry in their index, and autovacuum's default (a fifth of the table dead) comes ever later
as the table grows: in a 10-minute soak the claim read more and more dead entries and throughput
fell from 84 to 47 runs/s (docs/benchmarks.md). So the queue's reads (claim, the fair-claim
count, the cancel check, the lease hand-back) get one partial index over the queued and running
rows only, which they read in plain index scans that mark dead entries as they pass; the
`(status, available_at)` index goes (its one other reader, retention, gets `completed_at`); and
`runs` gets room on each page for updates that touch no index (fillfactor 80: HOT updates) and an
autovacuum that comes after 1,000 dead rows plus 2 % of the table.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The predicate as this revision wrote it (a migration keeps its own copy: the schema module's
# `CLAIMABLE_PREDICATE` may change in a later revision, this one must not).
CLAIMABLE = "status IN ('queued', 'running')"
QUEUE_STORAGE = (
    "fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000, "
    "autovacuum_analyze_scale_factor = 0.05"
)


def _postgresql() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    op.drop_index("ix_runs_status_available_at", table_name="runs")
    op.create_index("ix_runs_completed_at", "runs", ["completed_at"])
    op.create_index(
        "ix_runs_claimable",
        "runs",
        ["available_at", "created_at", "id"],
        postgresql_where=sa.text(CLAIMABLE),
        sqlite_where=sa.text(CLAIMABLE),
    )
    if _postgresql():
        op.execute(f"ALTER TABLE runs SET ({QUEUE_STORAGE})")


def downgrade() -> None:
    if _postgresql():
        op.execute(
            "ALTER TABLE runs RESET (fillfactor, autovacuum_vacuum_scale_factor, "
            "autovacuum_vacuum_threshold, autovacuum_analyze_scale_factor)"
        )
    op.drop_index("ix_runs_claimable", table_name="runs")
    op.drop_index("ix_runs_completed_at", table_name="runs")
    op.create_index("ix_runs_status_available_at", "runs", ["status", "available_at"])
