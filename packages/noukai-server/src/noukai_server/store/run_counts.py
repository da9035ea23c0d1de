"""How many runs are in each unfinished status (queued, running, waiting): the queue-depth gauge.

Read when `/metrics` is scraped, so it must stay cheap however many runs the table holds. Every
terminal status sets `completed_at` and nothing else does, so the unfinished runs are exactly the
rows with `completed_at IS NULL`, one range of the `completed_at` index (B-tree indexes keep NULLs
on both SQLite and PostgreSQL): the statement reads as many rows as there are unfinished runs,
never the finished history. `status` has no index of its own on purpose (see `schema.runs`).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import runs

UNFINISHED_STATUSES = ("queued", "running", "waiting")


async def unfinished_counts(conn: AsyncConnection) -> dict[str, int]:
    """`{status: runs}` for every unfinished status (0 when none)."""
    query = (
        sa.select(runs.c.status, sa.func.count()).where(runs.c.completed_at.is_(None)).group_by(runs.c.status)
    )
    counts = dict.fromkeys(UNFINISHED_STATUSES, 0)
    for status, count in (await conn.execute(query)).all():
        if status in counts:
            counts[status] = int(count)
    return counts
