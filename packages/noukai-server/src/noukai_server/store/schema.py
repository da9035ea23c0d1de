"""The database schema as SQLAlchemy Core metadata: the single source of truth for the migrations.

Ids are strings (org slugs, UUIDs, key ids). Every timestamp column is `UTCDateTime`, which always
hands back aware UTC datetimes on both SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from .records import RUN_STATUSES, TRIGGER_TYPES

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SLUG_LENGTH = 64
UUID_LENGTH = 36
KEY_ID_LENGTH = 32
TOKEN_LENGTH = 255
"""Session ids, idempotency keys and worker ids."""
EVENT_TYPE_LENGTH = 64


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that is stored in UTC and always read back timezone-aware.

    PostgreSQL stores `timestamptz`. SQLite has no timestamp type: SQLAlchemy stores a fixed-width
    ISO string, so we store naive UTC there, which keeps string comparison equal to time order.
    Naive datetimes are refused on the way in: they are a bug waiting to happen.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store only accepts timezone-aware datetimes")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, UTCDateTime(), nullable=nullable)


def _json(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    # none_as_null: Python None is stored as SQL NULL, not as the JSON text 'null'.
    return sa.Column(name, sa.JSON(none_as_null=True), nullable=nullable)


metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

orgs = sa.Table(
    "orgs",
    metadata,
    sa.Column("id", sa.String(SLUG_LENGTH), primary_key=True),
    _timestamp("created_at"),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.String(UUID_LENGTH), primary_key=True),
    sa.Column("org_id", sa.String(SLUG_LENGTH), sa.ForeignKey("orgs.id"), nullable=False),
    sa.Column("slug", sa.String(SLUG_LENGTH), nullable=False),
    _timestamp("created_at"),
    sa.UniqueConstraint("org_id", "slug"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(KEY_ID_LENGTH), primary_key=True),
    sa.Column("org_id", sa.String(SLUG_LENGTH), sa.ForeignKey("orgs.id"), nullable=False, index=True),
    sa.Column("project_id", sa.String(UUID_LENGTH), sa.ForeignKey("projects.id"), nullable=True),
    sa.Column("name", sa.Text(), nullable=True),
    sa.Column("key_hash", sa.String(64), nullable=False),
    _timestamp("created_at"),
    _timestamp("last_used_at", nullable=True),
    _timestamp("revoked_at", nullable=True),
    # What the key may do, space-separated (`admin`, `run`, `read`); keys made before scopes
    # existed keep everything they could do then, which was administering their org.
    sa.Column("scopes", sa.String(64), nullable=False, server_default="admin"),
    _timestamp("expires_at", nullable=True),
)

flows = sa.Table(
    "flows",
    metadata,
    sa.Column("id", sa.String(UUID_LENGTH), primary_key=True),
    sa.Column("org_id", sa.String(SLUG_LENGTH), sa.ForeignKey("orgs.id"), nullable=False),
    sa.Column("project_id", sa.String(UUID_LENGTH), sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("slug", sa.String(SLUG_LENGTH), nullable=False),
    sa.Column("name", sa.Text(), nullable=True),
    _json("draft"),
    sa.Column("draft_revision", sa.Integer(), nullable=False),
    _timestamp("created_at"),
    _timestamp("updated_at"),
    sa.UniqueConstraint("project_id", "slug"),
    sa.CheckConstraint("draft_revision >= 1", name="draft_revision_positive"),
)

flow_versions = sa.Table(
    "flow_versions",
    metadata,
    sa.Column("flow_id", sa.String(UUID_LENGTH), sa.ForeignKey("flows.id"), primary_key=True),
    sa.Column("version", sa.Integer(), primary_key=True),
    _json("document"),
    _timestamp("created_at"),
    sa.CheckConstraint("version >= 1", name="version_positive"),
)

CLAIMABLE_PREDICATE = "status IN ('queued', 'running')"
"""Which runs a worker may claim (queued, or running with a lease that may have expired), written
as SQL text so the queries and the partial index over it match word for word: PostgreSQL uses a
partial index only when it can prove the query implies its predicate (never from a bound
parameter of a generic plan), and SQLite only when the query repeats the predicate's terms."""

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(UUID_LENGTH), primary_key=True),
    sa.Column("org_id", sa.String(SLUG_LENGTH), sa.ForeignKey("orgs.id"), nullable=False),
    sa.Column("project_id", sa.String(UUID_LENGTH), sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("flow_id", sa.String(UUID_LENGTH), sa.ForeignKey("flows.id"), nullable=False),
    sa.Column("flow_version", sa.Integer(), nullable=False),
    sa.Column("flow_revision", sa.Integer(), nullable=False),
    _json("document"),
    sa.Column("trigger_type", sa.String(16), nullable=False),
    sa.Column("session_id", sa.String(TOKEN_LENGTH), nullable=True, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("cursor", sa.Integer(), nullable=False),
    sa.Column("pause_after", sa.Integer(), nullable=True),
    _json("input"),
    _json("state"),
    _json("result", nullable=True),
    _json("error", nullable=True),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("lease_owner", sa.String(TOKEN_LENGTH), nullable=True),
    _timestamp("lease_expires_at", nullable=True),
    _timestamp("available_at"),
    sa.Column("cancel_requested", sa.Boolean(), nullable=False),
    sa.Column("last_seq", sa.Integer(), nullable=False),
    sa.Column("idempotency_key", sa.String(TOKEN_LENGTH), nullable=True),
    _timestamp("created_at"),
    _timestamp("started_at", nullable=True),
    _timestamp("completed_at", nullable=True),
    _timestamp("updated_at"),
    # The thread the run is a turn of (no foreign key: a deleted thread leaves its erased runs),
    # and the run's position in it (1, 2, 3 ...: the thread stream's cursor).
    sa.Column("thread_id", sa.String(UUID_LENGTH), nullable=True, index=True),
    sa.Column("thread_ordinal", sa.Integer(), nullable=True),
    # The key that started the run (per-key quotas and usage; no foreign key: usage outlives keys).
    sa.Column("api_key_id", sa.String(KEY_ID_LENGTH), nullable=True),
    # The fingerprint of the request an idempotency key was first used with (a reuse with another
    # body is refused), and when the run must have ended by (its total deadline), if it has one.
    sa.Column("request_hash", sa.String(64), nullable=True),
    _timestamp("deadline_at", nullable=True),
    # The caller's key/value labels (at most 16 short strings; `{}` when none). Kept here so a run
    # reads back whole in one row; `run_metadata` holds the same pairs for the indexed filter.
    sa.Column("metadata", sa.JSON(), nullable=False, server_default="{}"),
    # The run's W3C trace context (`telemetry.trace_context`): its own `traceparent`, and the
    # span id of the caller's span it continues (None: a trace of its own).
    sa.Column("traceparent", sa.String(55), nullable=True),
    sa.Column("trace_parent_span_id", sa.String(16), nullable=True),
    # A rerun's original run, and the step it started from (None: from the first step).
    sa.Column("rerun_of", sa.String(UUID_LENGTH), nullable=True),
    sa.Column("rerun_from_step", sa.String(SLUG_LENGTH), nullable=True),
    # A child run (a `flow` step's, or an agent's `flow:` tool's): its parent run, the parent's
    # step that started it, and its nesting depth (0: a run a request started).
    sa.Column("parent_run_id", sa.String(UUID_LENGTH), nullable=True),
    sa.Column("parent_step_id", sa.String(SLUG_LENGTH), nullable=True),
    sa.Column("depth", sa.Integer(), nullable=False, server_default="0"),
    sa.UniqueConstraint("org_id", "idempotency_key"),
    sa.Index(None, "completed_at"),  # retention: the runs that ended before a time
    # The runs list (`run_listing`), newest first with keyset pagination on (created_at, id): one
    # index per scope it is read in (the org; a project; a flow), each led by the org so a query
    # naming more scopes matches more equality columns and the planner picks it. Only columns
    # that never change after insert are indexed: an UPDATE touching an indexed column loses
    # PostgreSQL's HOT update, and every step of every run updates its row. So no `status` index:
    # a status (or trigger, or version) filter walks the newest-first index and skips rows.
    sa.Index("ix_runs_list_org", "org_id", "created_at", "id"),
    sa.Index("ix_runs_list_project", "org_id", "project_id", "created_at", "id"),
    sa.Index("ix_runs_list_flow", "org_id", "flow_id", "created_at", "id"),
    # The queue's own index: only claimable rows, in claim order. A run leaves it when it ends, so
    # it stays as small as the queue; a claim reads it in order and stops at the first live row,
    # and PostgreSQL marks the dead entries it passes on the way (which bitmap scans of the
    # `(status, available_at)` index it replaces never did: measured, the claim took 15 ms after
    # 60 s of a soak, reading 10,705 index entries for 44 claimable rows). The predicate is the
    # queries' own text, literally (see `CLAIMABLE_PREDICATE`).
    sa.Index(
        "ix_runs_claimable",
        "available_at",
        "created_at",
        "id",
        postgresql_where=sa.text(CLAIMABLE_PREDICATE),
        sqlite_where=sa.text(CLAIMABLE_PREDICATE),
    ),
    sa.CheckConstraint(_in("status", RUN_STATUSES), name="status_valid"),
    sa.CheckConstraint(_in("trigger_type", TRIGGER_TYPES), name="trigger_type_valid"),
    sa.CheckConstraint("flow_version >= 0", name="flow_version_valid"),
    sa.CheckConstraint("attempt >= 0", name="attempt_valid"),
    sa.CheckConstraint("cursor >= 0", name="cursor_valid"),
    sa.CheckConstraint("last_seq >= 0", name="last_seq_valid"),
)

run_events = sa.Table(
    "run_events",
    metadata,
    sa.Column("run_id", sa.String(UUID_LENGTH), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("seq", sa.Integer(), primary_key=True),
    sa.Column("type", sa.String(EVENT_TYPE_LENGTH), nullable=False),
    # Text, not JSON: the event's serialised bytes are stored and returned verbatim.
    sa.Column("data", sa.Text(), nullable=False),
    _timestamp("created_at"),
    sa.CheckConstraint("seq >= 1", name="seq_positive"),
)

run_metadata = sa.Table(
    "run_metadata",
    metadata,
    # One row per key of a run's `metadata`, written with the run (never changed after), so the
    # runs list can filter on `key:value` through an index in newest-first order: the run's org
    # and creation time are copied in for that index.
    sa.Column("run_id", sa.String(UUID_LENGTH), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("key", sa.String(SLUG_LENGTH), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
    sa.Column("org_id", sa.String(SLUG_LENGTH), nullable=False),
    _timestamp("created_at"),
    sa.Index("ix_run_metadata_list", "org_id", "key", "value", "created_at", "run_id"),
)

threads = sa.Table(
    "threads",
    metadata,
    sa.Column("id", sa.String(UUID_LENGTH), primary_key=True),
    sa.Column("org_id", sa.String(SLUG_LENGTH), sa.ForeignKey("orgs.id"), nullable=False),
    sa.Column("project_id", sa.String(UUID_LENGTH), sa.ForeignKey("projects.id"), nullable=False),
    _json("metadata"),
    sa.Column("ttl_seconds", sa.Integer(), nullable=False),
    sa.Column("active_run_id", sa.String(UUID_LENGTH), nullable=True),
    sa.Column("run_count", sa.Integer(), nullable=False),
    sa.Column("message_count", sa.Integer(), nullable=False),
    _timestamp("created_at"),
    _timestamp("updated_at"),
    _timestamp("expires_at"),
    sa.Index(None, "expires_at"),
    sa.CheckConstraint("ttl_seconds >= 1", name="ttl_positive"),
)

thread_messages = sa.Table(
    "thread_messages",
    metadata,
    sa.Column("thread_id", sa.String(UUID_LENGTH), sa.ForeignKey("threads.id"), primary_key=True),
    sa.Column("position", sa.Integer(), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    _json("content"),
    sa.Column("run_id", sa.String(UUID_LENGTH), nullable=True),
    _timestamp("created_at"),
    sa.CheckConstraint("position >= 1", name="position_positive"),
)

# -- credits and usage ---------------------------------------------------------------------------
# Money is integer micro-dollars (millionths of a USD) in a BigInteger: exact on both stores (SQLite
# has no exact decimal type: its NUMERIC is a float when the value has a fraction), and a balance
# moves with one atomic `balance = balance - ?`. See `credits.py` for how costs are rounded.

credit_balances = sa.Table(
    "credit_balances",
    metadata,
    # A row makes the org's runs limited by its balance; an org without one is unlimited.
    sa.Column("org_id", sa.String(SLUG_LENGTH), sa.ForeignKey("orgs.id"), primary_key=True),
    sa.Column("balance_micro_usd", sa.BigInteger(), nullable=False),
    _timestamp("updated_at"),
)

credit_grants = sa.Table(
    "credit_grants",
    metadata,
    # Every credit added (or, negative, taken back) by an operator, with the balance it left.
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("org_id", sa.String(SLUG_LENGTH), sa.ForeignKey("orgs.id"), nullable=False),
    sa.Column("amount_micro_usd", sa.BigInteger(), nullable=False),
    sa.Column("balance_micro_usd", sa.BigInteger(), nullable=False),
    sa.Column("note", sa.Text(), nullable=True),
    _timestamp("created_at"),
    sa.Index(None, "org_id", "created_at"),
)

step_charges = sa.Table(
    "step_charges",
    metadata,
    # One row per completed step that cost or used anything, written with the step's checkpoint.
    # The key (run, step index) makes a charge idempotent. The run's tenant, flow and key are copied
    # in (no foreign keys): usage is queried by them over time and outlives runs and keys.
    sa.Column("run_id", sa.String(UUID_LENGTH), primary_key=True),
    sa.Column("step_index", sa.Integer(), primary_key=True),
    sa.Column("org_id", sa.String(SLUG_LENGTH), nullable=False),
    sa.Column("project_id", sa.String(UUID_LENGTH), nullable=False),
    sa.Column("flow_id", sa.String(UUID_LENGTH), nullable=False),
    sa.Column("api_key_id", sa.String(KEY_ID_LENGTH), nullable=True),
    sa.Column("cost_micro_usd", sa.BigInteger(), nullable=False),
    sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
    sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
    _timestamp("created_at"),
    sa.Index(None, "org_id", "created_at"),
)

rate_counters = sa.Table(
    "rate_counters",
    metadata,
    # Request-rate counters when no Redis is configured (`rate_counters.StoreRateStorage`): one row
    # per limited identity and window (the key names both), counting until `expires_at_ms` (epoch
    # milliseconds: `limits` works in epoch time). Expired rows are swept by the retention task.
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("count", sa.BigInteger(), nullable=False),
    sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
    sa.Index(None, "expires_at_ms"),
)
