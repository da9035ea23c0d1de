"""The lease queue kept in the runs table: claim, heartbeat, and fenced writes.

A run is claimable when `status` is queued, or running with an expired lease (its worker crashed:
at-least-once), and `available_at <= now`. For a running run `available_at` always equals
`lease_expires_at`, so both cases are one range scan of the `(status, available_at)` index.

`attempt` is bumped by every claim and is the fencing token: a write carrying an older attempt is
from a zombie worker and is refused with `LeaseLost`. A worker whose lease expired but whose run
was not yet claimed by anyone else still holds it (nothing else could have written).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import events as event_log
from . import validate
from .errors import EventSequenceError, LeaseLost, RunBusy, RunNotFound
from .records import EventRow, LeaseState, RunRecord, RunUpdate
from .runs_repo import run_record, update_values
from .schema import runs

_CLAIMABLE = ("queued", "running")


def _lease_expiry(now: datetime, lease_seconds: float) -> datetime:
    if lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
    return now + timedelta(seconds=lease_seconds)


async def claim_next_run(
    conn: AsyncConnection, worker_id: str, lease_seconds: float, now: datetime
) -> RunRecord | None:
    validate.token(worker_id, "worker id")
    expires = _lease_expiry(now, lease_seconds)
    claimable = (runs.c.status.in_(_CLAIMABLE), runs.c.available_at <= now)
    # SKIP LOCKED: concurrent claimers on PostgreSQL pass over each other's candidates instead of
    # queueing on them (SQLite renders no FOR UPDATE; its single writer serialises claims).
    oldest = (
        sa.select(runs.c.id)
        .where(*claimable)
        .order_by(runs.c.available_at, runs.c.created_at, runs.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    stmt = (
        sa.update(runs)
        .where(runs.c.id == oldest, *claimable)
        .values(
            status="running",
            attempt=runs.c.attempt + 1,
            lease_owner=worker_id,
            lease_expires_at=expires,
            available_at=expires,
            started_at=sa.func.coalesce(runs.c.started_at, now),
            updated_at=now,
        )
        .returning(*runs.c)
    )
    row = (await conn.execute(stmt)).first()
    return None if row is None else run_record(row)


def _holds(attempt: int, worker_id: str | None = None) -> tuple[sa.ColumnElement[bool], ...]:
    owner = runs.c.lease_owner.is_not(None) if worker_id is None else runs.c.lease_owner == worker_id
    return (runs.c.attempt == attempt, runs.c.status == "running", owner)


async def extend_lease(
    conn: AsyncConnection, run_id: str, attempt: int, worker_id: str, lease_seconds: float, now: datetime
) -> LeaseState:
    expires = _lease_expiry(now, lease_seconds)
    stmt = (
        sa.update(runs)
        .where(runs.c.id == run_id, *_holds(attempt, worker_id))
        .values(lease_expires_at=expires, available_at=expires, updated_at=now)
        .returning(runs.c.cancel_requested)
    )
    cancel = (await conn.execute(stmt)).scalar_one_or_none()
    if cancel is not None:
        return LeaseState(held=True, cancel_requested=cancel)
    lost = (
        await conn.execute(sa.select(runs.c.cancel_requested).where(runs.c.id == run_id))
    ).scalar_one_or_none()
    return LeaseState(held=False, cancel_requested=bool(lost))


async def _write(
    conn: AsyncConnection,
    run_id: str,
    guard: Sequence[sa.ColumnElement[bool]],
    events: Sequence[EventRow],
    values: dict[str, Any],
    now: datetime,
) -> sa.Row[tuple[object, ...]] | None:
    """One conditional UPDATE (which also takes the row lock on PostgreSQL), then the inserts."""
    event_log.check_batch(events)
    conditions = [runs.c.id == run_id, *guard]
    if events:
        conditions.append(runs.c.last_seq == events[0].seq - 1)
        values = {**values, "last_seq": events[-1].seq}
    row = (await conn.execute(sa.update(runs).where(*conditions).values(**values).returning(*runs.c))).first()
    if row is not None:
        await event_log.insert_events(conn, run_id, events, now)
    return row


async def _current(conn: AsyncConnection, run_id: str) -> RunRecord:
    row = (await conn.execute(sa.select(runs).where(runs.c.id == run_id))).first()
    if row is None:
        raise RunNotFound(f"no run with id {run_id!r}")
    return run_record(row)


async def record(
    conn: AsyncConnection,
    run_id: str,
    attempt: int,
    events: Sequence[EventRow],
    update: RunUpdate | None,
    now: datetime,
) -> None:
    """The worker's fenced write: events and state change together, or `LeaseLost` and nothing."""
    values = update_values(update, now, leased=True)
    if await _write(conn, run_id, _holds(attempt), events, values, now) is not None:
        return
    run = await _current(conn, run_id)
    raise refusal(run_id, attempt, events, run.attempt, run.status, run.lease_owner, run.last_seq)


def refusal(
    run_id: str,
    attempt: int,
    events: Sequence[EventRow],
    held_attempt: int,
    status: str,
    owner: str | None,
    last_seq: int,
) -> LeaseLost | EventSequenceError:
    """Why a fenced write matched no row, given the run as it is now."""
    if held_attempt != attempt or status != "running" or owner is None:
        return LeaseLost(
            f"run {run_id} attempt {attempt} no longer holds the lease "
            f"(now attempt {held_attempt}, status {status}, owner {owner})"
        )
    return event_log.sequence_error(run_id, last_seq, events)


async def append_events_unleased(
    conn: AsyncConnection,
    run_id: str,
    events: Sequence[EventRow],
    update: RunUpdate | None,
    now: datetime,
) -> RunRecord:
    """The API's write to a run no worker holds (e.g. the cancellation event of a waiting run)."""
    values = update_values(update, now, leased=False)
    row = await _write(conn, run_id, (runs.c.status != "running",), events, values, now)
    if row is not None:
        return run_record(row)
    run = await _current(conn, run_id)
    if run.status == "running":
        raise RunBusy(f"run {run_id} is running: only the worker holding its lease may write to it")
    raise event_log.sequence_error(run_id, run.last_seq, events)
