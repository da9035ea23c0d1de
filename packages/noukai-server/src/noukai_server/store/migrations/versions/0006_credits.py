"""Credits and usage: org balances, the credit grants that moved them, and one charge per
completed step (the usage record, and the key that makes a charge idempotent).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

Hand-written to match `noukai_server.store.schema.metadata` (the autogenerate test checks it);
types spelled out, as in 0001, so the file keeps its meaning. New tables only: nothing existing
is rewritten.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "credit_balances",
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("balance_micro_usd", sa.BigInteger(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("org_id", name="pk_credit_balances"),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name="fk_credit_balances_org_id_orgs"),
    )
    op.create_table(
        "credit_grants",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("amount_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("balance_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_credit_grants"),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name="fk_credit_grants_org_id_orgs"),
    )
    op.create_index("ix_credit_grants_org_id_created_at", "credit_grants", ["org_id", "created_at"])
    op.create_table(
        "step_charges",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(36), nullable=False),
        sa.Column("flow_id", sa.String(36), nullable=False),
        sa.Column("api_key_id", sa.String(32), nullable=True),
        sa.Column("cost_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("run_id", "step_index", name="pk_step_charges"),
    )
    op.create_index("ix_step_charges_org_id_created_at", "step_charges", ["org_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_step_charges_org_id_created_at", table_name="step_charges")
    op.drop_table("step_charges")
    op.drop_index("ix_credit_grants_org_id_created_at", table_name="credit_grants")
    op.drop_table("credit_grants")
    op.drop_table("credit_balances")
