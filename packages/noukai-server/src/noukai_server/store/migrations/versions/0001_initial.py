"""Initial schema: tenancy, API keys, flows, runs (the lease queue) and the run event log.

Revision ID: 0001
Revises:
Create Date: 2026-05-01

Hand-written to match `noukai_server.store.schema.metadata`; a test checks that autogenerate finds no
difference after upgrading an empty SQLite file and an empty PostgreSQL database. Types are spelled
out here (not imported from the package) so this file keeps meaning the same thing forever.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _json(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.JSON(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "orgs",
        sa.Column("id", sa.String(64), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_orgs"),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("slug", sa.String(64), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name="fk_projects_org_id_orgs"),
        sa.UniqueConstraint("org_id", "slug", name="uq_projects_org_id_slug"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(36), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        _ts("created_at"),
        _ts("last_used_at", nullable=True),
        _ts("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name="fk_api_keys_org_id_orgs"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name="fk_api_keys_project_id_projects"),
    )
    op.create_index("ix_api_keys_org_id", "api_keys", ["org_id"])
    op.create_table(
        "flows",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(36), nullable=False),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        _json("draft"),
        sa.Column("draft_revision", sa.Integer(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_flows"),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name="fk_flows_org_id_orgs"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name="fk_flows_project_id_projects"),
        sa.UniqueConstraint("project_id", "slug", name="uq_flows_project_id_slug"),
        sa.CheckConstraint("draft_revision >= 1", name="ck_flows_draft_revision_positive"),
    )
    op.create_table(
        "flow_versions",
        sa.Column("flow_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _json("document"),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("flow_id", "version", name="pk_flow_versions"),
        sa.ForeignKeyConstraint(["flow_id"], ["flows.id"], name="fk_flow_versions_flow_id_flows"),
        sa.CheckConstraint("version >= 1", name="ck_flow_versions_version_positive"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(36), nullable=False),
        sa.Column("flow_id", sa.String(36), nullable=False),
        sa.Column("flow_version", sa.Integer(), nullable=False),
        sa.Column("flow_revision", sa.Integer(), nullable=False),
        _json("document"),
        sa.Column("trigger_type", sa.String(16), nullable=False),
        sa.Column("session_id", sa.String(255), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cursor", sa.Integer(), nullable=False),
        sa.Column("pause_after", sa.Integer(), nullable=True),
        _json("input"),
        _json("state"),
        _json("result", nullable=True),
        _json("error", nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        _ts("lease_expires_at", nullable=True),
        _ts("available_at"),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        _ts("created_at"),
        _ts("started_at", nullable=True),
        _ts("completed_at", nullable=True),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name="fk_runs_org_id_orgs"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name="fk_runs_project_id_projects"),
        sa.ForeignKeyConstraint(["flow_id"], ["flows.id"], name="fk_runs_flow_id_flows"),
        sa.UniqueConstraint("org_id", "idempotency_key", name="uq_runs_org_id_idempotency_key"),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'waiting', 'completed', 'failed', 'cancelled')",
            name="ck_runs_status_valid",
        ),
        sa.CheckConstraint("trigger_type IN ('execute', 'step', 'job')", name="ck_runs_trigger_type_valid"),
        sa.CheckConstraint("flow_version >= 0", name="ck_runs_flow_version_valid"),
        sa.CheckConstraint("attempt >= 0", name="ck_runs_attempt_valid"),
        sa.CheckConstraint("cursor >= 0", name="ck_runs_cursor_valid"),
        sa.CheckConstraint("last_seq >= 0", name="ck_runs_last_seq_valid"),
    )
    op.create_index("ix_runs_session_id", "runs", ["session_id"])
    op.create_index("ix_runs_status_available_at", "runs", ["status", "available_at"])
    op.create_table(
        "run_events",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("run_id", "seq", name="pk_run_events"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_events_run_id_runs"),
        sa.CheckConstraint("seq >= 1", name="ck_run_events_seq_positive"),
    )


def downgrade() -> None:
    op.drop_table("run_events")
    op.drop_index("ix_runs_status_available_at", table_name="runs")
    op.drop_index("ix_runs_session_id", table_name="runs")
    op.drop_table("runs")
    op.drop_table("flow_versions")
    op.drop_table("flows")
    op.drop_index("ix_api_keys_org_id", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("projects")
    op.drop_table("orgs")
