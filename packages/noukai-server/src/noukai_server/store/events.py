"""The run event log: contiguity checks, batched inserts, ordered reads.

Event `data` is a `str` the engine serialised once; it goes into a TEXT column and comes back
byte for byte, never parsed or re-serialised here.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import validate
from .errors import EventSequenceError
from .records import EventRow
from .schema import run_events, runs, threads


def check_batch(events: Sequence[EventRow]) -> None:
    """Seqs within one write must be 1-based, strictly increasing and gap-free."""
    for previous, current in itertools.pairwise(events):
        if current.seq != previous.seq + 1:
            raise EventSequenceError(
                f"event seqs must be contiguous: seq {current.seq} follows seq {previous.seq}"
            )
    for row in events:
        validate.event_type(row.type)
        if not isinstance(row.data, str):
            raise TypeError(f"event data must be the serialised JSON str, got {type(row.data).__name__}")
    if events and events[0].seq < 1:
        raise EventSequenceError(f"event seqs start at 1, got {events[0].seq}")


def sequence_error(run_id: str, last_seq: int, events: Sequence[EventRow]) -> EventSequenceError:
    return EventSequenceError(
        f"run {run_id} has events up to seq {last_seq}: the next write must start at seq "
        f"{last_seq + 1}, not {events[0].seq}"
    )


async def insert_events(
    conn: AsyncConnection, run_id: str, events: Sequence[EventRow], now: datetime
) -> None:
    if not events:
        return
    await conn.execute(
        sa.insert(run_events),
        [
            {
                "run_id": run_id,
                "seq": row.seq,
                "type": row.type,
                "data": row.data,
                "created_at": row.created_at or now,
            }
            for row in events
        ],
    )


async def read_events(
    conn: AsyncConnection,
    run_id: str,
    after_seq: int = 0,
    limit: int | None = None,
    *,
    types: Collection[str] | None = None,
    newest_first: bool = False,
) -> list[EventRow]:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    stmt = sa.select(run_events.c.seq, run_events.c.type, run_events.c.data, run_events.c.created_at).where(
        run_events.c.run_id == run_id, run_events.c.seq > after_seq
    )
    if types is not None:
        # Walks the run's (run_id, seq) primary-key range and filters rows: no index on type is
        # needed for one run's log, and none is kept up on every event insert.
        stmt = stmt.where(run_events.c.type.in_(sorted(types)))
    stmt = stmt.order_by(run_events.c.seq.desc() if newest_first else run_events.c.seq)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [
        EventRow(seq=r.seq, type=r.type, data=r.data, created_at=r.created_at)
        for r in await conn.execute(stmt)
    ]


async def prune_finished(
    conn: AsyncConnection,
    finished_before: datetime,
    max_runs: int,
    session_finished_before: datetime | None = None,
) -> int:
    """Delete the events of up to `max_runs` runs that ended before `finished_before` (before
    `session_finished_before` for runs recorded in a session, when given); returns how many runs
    lost their events. Runs themselves are kept (their status and result stay readable). Runs of
    a thread that still exists are left alone."""
    terminal = ("completed", "failed", "cancelled")
    if session_finished_before is None:
        ended = runs.c.completed_at < finished_before
    else:
        ended = sa.or_(
            sa.and_(runs.c.session_id.is_(None), runs.c.completed_at < finished_before),
            sa.and_(runs.c.session_id.is_not(None), runs.c.completed_at < session_finished_before),
        )
    victims = (
        sa.select(runs.c.id)
        .where(
            runs.c.status.in_(terminal),
            ended,
            sa.exists().where(run_events.c.run_id == runs.c.id),
            # A live thread's runs keep their logs (its stream replays them) until the thread
            # is erased, by DELETE or its TTL, which deletes them anyway.
            ~sa.exists().where(threads.c.id == runs.c.thread_id),
        )
        .limit(max_runs)
    )
    ids = [row.id for row in await conn.execute(victims)]
    if ids:
        await conn.execute(sa.delete(run_events).where(run_events.c.run_id.in_(ids)))
    return len(ids)


async def has_events(conn: AsyncConnection, run_id: str) -> bool:
    stmt = sa.select(run_events.c.seq).where(run_events.c.run_id == run_id).limit(1)
    return (await conn.execute(stmt)).first() is not None
