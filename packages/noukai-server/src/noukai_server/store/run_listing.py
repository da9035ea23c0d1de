"""The runs list: a tenant's runs, newest first, filtered, a page at a time.

Pagination is keyset on `(created_at, id)`, never OFFSET: a page after a position reads an index
from that position on, so page 1,000 costs what page 1 does. Which index a page reads depends on
its filters (see the indexes of `schema.runs` and `schema.run_metadata`):

- the org's runs: `ix_runs_list_org (org_id, created_at, id)`;
- a project's: `ix_runs_list_project (org_id, project_id, created_at, id)`;
- a flow's: `ix_runs_list_flow (org_id, flow_id, created_at, id)` (a flow slug is resolved to its
  ids first; the project scope is then implied, so it is left out of the query and the planner
  has one best index);
- a metadata pair: `ix_run_metadata_list (org_id, key, value, created_at, run_id)`, joined to the
  run by primary key; further pairs are `EXISTS` probes of the same table's primary key.

Status, trigger, version, session and thread filters are checked on the rows the index walk
reads (see the schema for why `status` has no index). Tenant scoping is in the query itself: every
statement names the org, and a project key's project.

A listed run leaves out the big columns (document, input, state, result), which the list never
shows; `ListedRun` carries the rest, and the project's and flow's slugs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from .records import RunStatus, TriggerType
from .schema import UTCDateTime, flows, projects, run_metadata, runs

MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs a list shows. `org_id` is required (the tenant); every other field narrows it."""

    org_id: str
    project_id: str | None = None
    """A project key's project (its id: the key's scope, not a filter the caller chose)."""
    project_slug: str | None = None
    flow_slug: str | None = None
    version: int | None = None
    statuses: tuple[RunStatus, ...] = ()
    trigger: TriggerType | None = None
    since: datetime | None = None
    """Created at or after (inclusive)."""
    until: datetime | None = None
    """Created before (exclusive)."""
    session_id: str | None = None
    thread_id: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    """Pairs that must all be among the run's labels."""


Position = tuple[datetime, str]
"""A run's place in the list: `(created_at, id)`; a page lists the runs strictly after it."""


@dataclass(frozen=True, slots=True)
class ListedRun:
    """A run as the list shows it: every `RunRecord` field a `RunInfo` needs (no document, input,
    state or result), plus the slugs of its project and flow."""

    id: str
    org_id: str
    project_slug: str
    flow_id: str
    flow_slug: str
    flow_version: int
    trigger_type: TriggerType
    status: RunStatus
    cursor: int
    error: Any
    attempt: int
    cancel_requested: bool
    last_seq: int
    session_id: str | None
    thread_id: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    metadata: dict[str, str]
    traceparent: str | None
    rerun_of: str | None
    rerun_from_step: str | None
    parent_run_id: str | None
    parent_step_id: str | None
    depth: int
    result: None = None
    """Never read by the list (it may be large): fetch the run for it."""

    @property
    def position(self) -> Position:
        return (self.created_at, self.id)


@dataclass(frozen=True, slots=True)
class RunPage:
    runs: list[ListedRun] = field(default_factory=list)
    next_after: Position | None = None
    """Where the next page starts (None: this is the last page)."""


_LISTED_COLUMNS = (
    runs.c.id,
    runs.c.org_id,
    projects.c.slug.label("project_slug"),
    runs.c.flow_id,
    flows.c.slug.label("flow_slug"),
    runs.c.flow_version,
    runs.c.trigger_type,
    runs.c.status,
    runs.c.cursor,
    runs.c.error,
    runs.c.attempt,
    runs.c.cancel_requested,
    runs.c.last_seq,
    runs.c.session_id,
    runs.c.thread_id,
    runs.c.created_at,
    runs.c.started_at,
    runs.c.completed_at,
    runs.c.metadata,
    runs.c.traceparent,
    runs.c.rerun_of,
    runs.c.rerun_from_step,
    runs.c.parent_run_id,
    runs.c.parent_step_id,
    runs.c.depth,
)


async def list_runs(conn: AsyncConnection, where: RunFilter, after: Position | None, limit: int) -> RunPage:
    """One page of at most `limit` runs (1..`MAX_PAGE`) after `after`, newest first."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be 1 to {MAX_PAGE}, got {limit}")
    scope = await resolve_scope(conn, where)
    if scope is None:  # a project or flow slug that names nothing: nothing to list
        return RunPage()
    stmt = page_query(where, scope, after, limit + 1, conn.dialect.name)
    rows = [ListedRun(**row._mapping) for row in await conn.execute(stmt)]
    if len(rows) <= limit:
        return RunPage(rows)
    page = rows[:limit]
    return RunPage(page, page[-1].position)


@dataclass(frozen=True, slots=True)
class Scope:
    """The ids a filter's slugs name (`resolve_scope`): the project, and the flows (None: any)."""

    project_id: str | None
    flow_ids: tuple[str, ...] | None


async def resolve_scope(conn: AsyncConnection, where: RunFilter) -> Scope | None:
    """The project and flow ids the slugs name in the org (None when one names nothing)."""
    project_id = where.project_id
    if where.project_slug is not None:
        found = (
            await conn.execute(
                sa.select(projects.c.id).where(
                    projects.c.org_id == where.org_id, projects.c.slug == where.project_slug
                )
            )
        ).scalar()
        if found is None or (project_id is not None and found != project_id):
            return None
        project_id = found
    if where.flow_slug is None:
        return Scope(project_id, None)
    stmt = sa.select(flows.c.id).where(flows.c.org_id == where.org_id, flows.c.slug == where.flow_slug)
    if project_id is not None:
        stmt = stmt.where(flows.c.project_id == project_id)
    flow_ids = tuple(sorted(row.id for row in await conn.execute(stmt)))
    return Scope(project_id, flow_ids) if flow_ids else None


def page_query(
    where: RunFilter, scope: Scope, after: Position | None, limit: int, dialect: str
) -> sa.Select[Any]:
    """The page's statement. A flow slug that names flows in several projects is one index walk
    per flow, each cut to the page, merged newest first: an `IN` over the flows would read every
    run of them and sort them all."""
    flow_ids = scope.flow_ids
    if flow_ids is None or len(flow_ids) == 1 or where.metadata:
        return _walk(where, scope, after, limit, dialect)
    walks = [
        _walk(where, Scope(scope.project_id, (flow_id,)), after, limit, dialect).subquery()
        for flow_id in flow_ids
    ]
    merged = sa.union_all(*(sa.select(*walk.c) for walk in walks)).subquery("merged")
    return sa.select(*merged.c).order_by(merged.c.created_at.desc(), merged.c.id.desc()).limit(limit)


def _walk(where: RunFilter, scope: Scope, after: Position | None, limit: int, dialect: str) -> sa.Select[Any]:
    source: sa.FromClause = runs.join(projects, projects.c.id == runs.c.project_id).join(
        flows, flows.c.id == runs.c.flow_id
    )
    tests: list[sa.ColumnElement[bool]] = [_tenant(where, dialect)]
    # The columns the page is ordered and cut by: the run's own, or, when a metadata pair drives
    # the walk, the copies in `run_metadata` (equal to the run's: written with it).
    order_time: sa.ColumnElement[Any] = runs.c.created_at
    order_id: sa.ColumnElement[Any] = runs.c.id
    if where.metadata:
        (key, value), *more = where.metadata
        label = run_metadata.alias("label")
        source = source.join(label, label.c.run_id == runs.c.id)
        tests += [label.c.org_id == where.org_id, label.c.key == key, label.c.value == value]
        order_time, order_id = label.c.created_at, label.c.run_id
        for other_key, other_value in more:
            probe = run_metadata.alias()
            tests.append(
                sa.exists().where(
                    probe.c.run_id == runs.c.id, probe.c.key == other_key, probe.c.value == other_value
                )
            )
    if scope.flow_ids is not None:
        # The flow ids were resolved within the project scope: naming the project too would give
        # the planner two equally good indexes to choose from.
        tests.append(_one_of(runs.c.flow_id, scope.flow_ids))
    elif scope.project_id is not None:
        tests.append(runs.c.project_id == scope.project_id)
    if where.version is not None:
        tests.append(runs.c.flow_version == where.version)
    if where.statuses:
        tests.append(_one_of(runs.c.status, where.statuses))
    if where.trigger is not None:
        tests.append(runs.c.trigger_type == where.trigger)
    if where.session_id is not None:
        tests.append(runs.c.session_id == where.session_id)
    if where.thread_id is not None:
        tests.append(runs.c.thread_id == where.thread_id)
    if where.since is not None:
        tests.append(order_time >= _time(where.since))
    if where.until is not None:
        tests.append(order_time < _time(where.until))
    if after is not None:
        tests.append(sa.tuple_(order_time, order_id) < sa.tuple_(_time(after[0]), sa.literal(after[1])))
    return (
        sa.select(*_LISTED_COLUMNS)
        .select_from(source)
        .where(*tests)
        .order_by(order_time.desc(), order_id.desc())
        .limit(limit)
    )


def _tenant(where: RunFilter, dialect: str) -> sa.ColumnElement[bool]:
    """`org_id = ?`. A thread's or a session's runs are few among the org's: they are best read
    by their own index and sorted. PostgreSQL's statistics tell it so; SQLite has none (the store
    never runs ANALYZE) and would walk the org's newest-first index instead, skipping almost every
    row (measured: 110 ms for a page of a session's runs among a million). There the org test is
    written `+org_id = ?`, SQLite's documented way to keep a term from choosing an index."""
    if dialect == "sqlite" and (where.thread_id is not None or where.session_id is not None):
        return sa.literal_column("+runs.org_id") == where.org_id
    return runs.c.org_id == where.org_id


def _one_of(column: sa.ColumnElement[Any], values: Sequence[str]) -> sa.ColumnElement[bool]:
    # `=` for one value: an IN list of one is planned as well, but reads worse in EXPLAIN.
    return column == values[0] if len(values) == 1 else column.in_(values)


def _time(value: datetime) -> sa.BindParameter[datetime]:
    # Typed, so the value is stored-format on SQLite (naive UTC text) and compared as the column is.
    return sa.bindparam(None, value, type_=UTCDateTime())
