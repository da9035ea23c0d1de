"""The one write particular to child runs: a parent's new attempt takes its child's lease over.

A child run (`runs.parent_run_id` set) is executed inside its parent's worker task, never claimed
from the queue while its parent lives (its lease is long, see `runtime/child_runs.py`). When the
parent's worker is lost, the parent's next attempt takes the child over here: a new attempt of the
child, leased to the new worker, so every late write of the old holder is refused (`LeaseLost`),
exactly as a claim would fence it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import validate
from .records import RunRecord
from .runs_repo import run_record
from .schema import runs


async def take_over_child(
    conn: AsyncConnection,
    run_id: str,
    parent_run_id: str,
    worker_id: str,
    lease_seconds: float,
    now: datetime,
) -> RunRecord | None:
    """Lease the unfinished child `run_id` of `parent_run_id` to `worker_id` as its next attempt;
    None when there is no such child or it has ended."""
    validate.token(worker_id, "worker id")
    if lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
    expires = now + timedelta(seconds=lease_seconds)
    stmt = (
        sa.update(runs)
        .where(
            runs.c.id == run_id,
            runs.c.parent_run_id == parent_run_id,
            runs.c.status.in_(("queued", "running")),
        )
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
