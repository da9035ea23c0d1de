"""Runs as the API sees them: create (idempotently), read, advance a paused run, cancel."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import idempotency, validate
from .db import dialect_insert
from .errors import FlowNotFound
from .records import TERMINAL_STATUSES, UNSET, NewRun, RunHead, RunRecord, RunStatus, RunUpdate
from .schema import flows, run_metadata, runs

RUN_COLUMNS = tuple(column.name for column in runs.c)


def run_record(row: sa.Row[tuple[object, ...]], *, created: bool = False) -> RunRecord:
    m = row._mapping
    return RunRecord(**{name: m[name] for name in RUN_COLUMNS}, created=created)


async def get_run(conn: AsyncConnection, run_id: str, *, for_update: bool = False) -> RunRecord | None:
    stmt = sa.select(runs).where(runs.c.id == run_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).first()
    return None if row is None else run_record(row)


async def run_heads(conn: AsyncConnection, run_ids: Sequence[str]) -> dict[str, RunHead]:
    """The status and last seq of each of these runs that exists, in one statement."""
    stmt = sa.select(runs.c.id, runs.c.status, runs.c.last_seq).where(runs.c.id.in_(run_ids))
    return {row.id: RunHead(row.status, row.last_seq) for row in await conn.execute(stmt)}


async def list_session_runs(conn: AsyncConnection, session_id: str, limit: int) -> list[RunRecord]:
    """The runs recorded under `session_id`, oldest first (by creation, then id for ties)."""
    stmt = (
        sa.select(runs)
        .where(runs.c.session_id == session_id)
        .order_by(runs.c.created_at, runs.c.id)
        .limit(limit)
    )
    return [run_record(row) for row in await conn.execute(stmt)]


Lease = tuple[str, float]
"""(worker id, lease seconds): create a run already claimed by that worker."""


async def idempotent_repeat(
    conn: AsyncConnection, new: NewRun, now: datetime, ttl: timedelta | None
) -> RunRecord | None:
    """The run a repeat of `new`'s idempotency key gets (`idempotency.repeat_of`), or None when
    the key is unused or past its TTL (a new run would take it)."""
    if new.idempotency_key is None:
        return None
    same_key = sa.and_(runs.c.org_id == new.org_id, runs.c.idempotency_key == new.idempotency_key)
    row = (await conn.execute(sa.select(*runs.c).where(same_key))).first()
    if row is None:
        return None
    existing = run_record(row)
    return None if idempotency.forgotten(existing, now, ttl) else idempotency.repeat_of(existing, new)


def queued_run_values(new: NewRun, now: datetime, lease: Lease | None = None) -> dict[str, Any]:
    """Every column of the row a new run is inserted as: queued and never attempted, or, with a
    `lease`, already claimed by that worker (its first attempt, running)."""
    values = {
        "id": new.id or str(uuid.uuid4()),
        "org_id": new.org_id,
        "project_id": new.project_id,
        "flow_id": new.flow_id,
        "flow_version": new.flow_version,
        "flow_revision": new.flow_revision,
        "document": new.document,
        "trigger_type": new.trigger_type,
        "session_id": new.session_id,
        "status": "queued",
        "cursor": new.cursor,
        "pause_after": new.pause_after,
        "input": new.input,
        "state": new.state,
        "result": None,
        "error": None,
        "attempt": 0,
        "lease_owner": None,
        "lease_expires_at": None,
        "available_at": now,
        "cancel_requested": False,
        "last_seq": 0,
        "idempotency_key": new.idempotency_key,
        "created_at": now,
        "started_at": None,
        "completed_at": None,
        "updated_at": now,
        "thread_id": None if new.thread is None else new.thread.thread_id,
        "thread_ordinal": None,
        "api_key_id": new.api_key_id,
        "request_hash": new.request_hash,
        "deadline_at": new.deadline_at,
        "metadata": new.metadata,
        "traceparent": new.traceparent,
        "trace_parent_span_id": new.trace_parent_span_id,
        "rerun_of": new.rerun_of,
        "rerun_from_step": new.rerun_from_step,
        "parent_run_id": new.parent_run_id,
        "parent_step_id": new.parent_step_id,
        "depth": new.depth,
    }
    if lease is not None:
        worker_id, lease_seconds = lease
        validate.token(worker_id, "worker id")
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
        expires = now + timedelta(seconds=lease_seconds)
        values.update(
            status="running",
            attempt=1,
            lease_owner=worker_id,
            lease_expires_at=expires,
            available_at=expires,
            started_at=now,
        )
    return values


async def create_run(
    conn: AsyncConnection,
    new: NewRun,
    now: datetime,
    lease: Lease | None = None,
    idempotency_ttl: timedelta | None = None,
) -> RunRecord:
    """Insert a queued run; with an idempotency key already used in the org, return that run
    (`idempotency.repeat_of`: `IdempotencyConflict` for another request), unless the key is past
    `idempotency_ttl`: then the old run gives it up and a new run is inserted.

    The returned record's `created` is True only when this call inserted the row.
    """
    validate.optional_token(new.session_id, "session id")
    validate.optional_token(new.idempotency_key, "idempotency key")
    owner = (
        await conn.execute(sa.select(flows.c.org_id, flows.c.project_id).where(flows.c.id == new.flow_id))
    ).first()
    if owner is None or (owner.org_id, owner.project_id) != (new.org_id, new.project_id):
        raise FlowNotFound(f"no flow with id {new.flow_id!r} in project {new.project_id!r} of {new.org_id!r}")
    insert = dialect_insert(conn, runs).values(**queued_run_values(new, now, lease))
    if new.idempotency_key is not None:
        # A concurrent twin with the same key waits for ours to commit, then inserts nothing.
        insert = insert.on_conflict_do_nothing(index_elements=[runs.c.org_id, runs.c.idempotency_key])
    row = (await conn.execute(insert.returning(*runs.c))).first()
    if row is not None:
        return await _with_metadata(conn, run_record(row, created=True))
    same_key = sa.and_(runs.c.org_id == new.org_id, runs.c.idempotency_key == new.idempotency_key)
    existing = run_record((await conn.execute(sa.select(runs).where(same_key))).one())
    if idempotency.forgotten(existing, now, idempotency_ttl):
        # The key outlived its TTL: the old run gives it up (a concurrent twin doing the same
        # waits on this row's lock, then finds the key gone) and ours takes it.
        await conn.execute(
            sa.update(runs).where(runs.c.id == existing.id, same_key).values(idempotency_key=None)
        )
        row = (await conn.execute(insert.returning(*runs.c))).first()
        if row is not None:
            return await _with_metadata(conn, run_record(row, created=True))
        existing = run_record((await conn.execute(sa.select(runs).where(same_key))).one())
    return idempotency.repeat_of(existing, new)


async def _with_metadata(conn: AsyncConnection, run: RunRecord) -> RunRecord:
    """Write the new run's metadata filter rows (`run_metadata`) in its insert's transaction."""
    rows = metadata_rows(run.id, run.org_id, run.metadata, run.created_at)
    if rows:
        await conn.execute(sa.insert(run_metadata), rows)
    return run


def metadata_rows(
    run_id: str, org_id: str, labels: dict[str, str], created_at: datetime
) -> list[dict[str, Any]]:
    """The `run_metadata` rows of a run's labels: one per key, with the run's org and creation time
    copied in for the runs list's index."""
    return [
        {"run_id": run_id, "key": key, "value": value, "org_id": org_id, "created_at": created_at}
        for key, value in labels.items()
    ]


def update_values(update: RunUpdate | None, now: datetime, *, leased: bool) -> dict[str, Any]:
    """The column values a `RunUpdate` writes; raises ValueError for contradictory updates."""
    values: dict[str, Any] = {"updated_at": now}
    if update is None:
        return values
    status = update.status
    if status == "running" and not leased:
        raise ValueError("only a claim can make a run running")
    if update.release_lease and status in (UNSET, "running"):
        raise ValueError("release_lease needs a status other than running: a running run must have an owner")
    if update.available_at is not UNSET and status != "queued":
        raise ValueError("available_at can only be set when re-queueing (status='queued')")
    for name in ("status", "cursor", "pause_after", "state", "result", "error"):
        value = getattr(update, name)
        if value is not UNSET:
            values[name] = value
    if status is not UNSET and status != "running":
        # Only a running run has a lease; `available_at` of a running run is its lease expiry.
        values.update(lease_owner=None, lease_expires_at=None)
        values["available_at"] = now if update.available_at is UNSET else update.available_at
    if update.completed_at is not UNSET:
        values["completed_at"] = update.completed_at
    elif status in TERMINAL_STATUSES:
        values["completed_at"] = now
    return values


_ADVANCEABLE: frozenset[RunStatus] = frozenset({"waiting", "queued"})


async def advance_run(
    conn: AsyncConnection,
    run_id: str,
    *,
    expected_status: RunStatus,
    cursor: int,
    pause_after: int | None,
    state_patch: dict[str, Any] | None,
    input_patch: dict[str, Any] | None,
    now: datetime,
) -> RunRecord | None:
    """Re-queue a run that is in `expected_status`; None (and no change) if it is not."""
    if expected_status not in _ADVANCEABLE:
        raise ValueError(f"only a waiting or queued run can be advanced, not a {expected_status} one")
    run = await get_run(conn, run_id, for_update=True)
    if run is None or run.status != expected_status:
        return None
    values: dict[str, Any] = {
        "status": "queued",
        "cursor": cursor,
        "pause_after": pause_after,
        "available_at": now,
        "updated_at": now,
    }
    if state_patch:
        values["state"] = {**run.state, **state_patch}
    if input_patch:
        values["input"] = {**run.input, **input_patch}
    stmt = (
        sa.update(runs)
        .where(runs.c.id == run_id, runs.c.status == expected_status)
        .values(**values)
        .returning(*runs.c)
    )
    row = (await conn.execute(stmt)).first()
    return None if row is None else run_record(row)


async def request_cancel(conn: AsyncConnection, run_id: str, now: datetime) -> tuple[RunRecord | None, bool]:
    """Ask a run to stop: `(run, cancelled_now)`; `(None, False)` if there is no such run.

    queued/waiting: cancelled now (no worker holds it). running: `cancel_requested` is set and the
    worker stops at its next lease heartbeat or write. Terminal: returned unchanged.
    """
    run = await get_run(conn, run_id, for_update=True)
    if run is None or run.terminal:
        return run, False
    values: dict[str, Any] = {"cancel_requested": True, "updated_at": now}
    if run.status != "running":
        values.update(status="cancelled", completed_at=now, lease_owner=None, lease_expires_at=None)
    stmt = (
        sa.update(runs)
        .where(runs.c.id == run_id, runs.c.status == run.status)
        .values(**values)
        .returning(*runs.c)
    )
    return run_record((await conn.execute(stmt)).one()), run.status != "running"
