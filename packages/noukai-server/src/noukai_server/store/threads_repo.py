"""Threads: multi-turn conversations whose history the server keeps.

A thread holds an ordered list of messages (`thread_messages`, positions 1, 2, 3 ...) and at most
one *active* run. A run started on a thread (`NewRun.thread`) sees the thread's history (cut to the
flow's window) followed by its own new turn as its `messages`; when it completes, its new turn and
its answer (plus the tool turns of its client tool calls) are appended to the thread in the very
transaction that records the run's terminal status (`on_run_end`), so the history never shows a
run half-finished, and a crash cannot record one without the other.

While a run is active, another turn is refused (`ThreadBusy`) or, with `multitask="enqueue"`,
inserted *parked*: queued with `available_at = PARKED`, which no claim ever reaches. When the active
run ends, the oldest parked run is given its history and made available now (same transaction).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import idempotency, tenancy, validate
from .errors import ThreadBusy, ThreadExpired, ThreadNotFound
from .records import (
    TERMINAL_STATUSES,
    HistoryWindow,
    NewRun,
    RunRecord,
    ThreadErasure,
    ThreadMessage,
    ThreadRecord,
)
from .runs_repo import Lease, metadata_rows, queued_run_values, run_record
from .schema import run_events, run_metadata, runs, thread_messages, threads

PARKED: Final = datetime(9999, 1, 1, tzinfo=UTC)
"""`available_at` of a run waiting for its thread: later than any claim's "now"."""
THREAD_INPUT_KEY: Final = "thread"
"""The key of a thread run's `input` that keeps its turn, window and tool turns."""
MESSAGE_OVERHEAD_TOKENS: Final = 4
"""Tokens counted per message on top of its text (role and separators), as OpenAI's guide does."""
CHARS_PER_TOKEN: Final = 4


def estimate_tokens(message: dict[str, Any]) -> int:
    """An approximate token count of one message: its JSON text's length / 4, rounded up, plus 4.

    Model-agnostic on purpose (no tokenizer is loaded): ~4 characters per token holds for English
    with the common BPE tokenizers, and counting the JSON text also counts tool calls and results."""
    text = orjson.dumps(message)
    return math.ceil(len(text) / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS


def window(history: Sequence[dict[str, Any]], limits: HistoryWindow) -> list[dict[str, Any]]:
    """The newest messages of `history` that fit both limits, in order. A window never starts with
    a tool result whose assistant tool call was cut off (those results are dropped too)."""
    kept: list[dict[str, Any]] = []
    tokens = 0
    for message in reversed(history):
        if limits.max_messages is not None and len(kept) >= limits.max_messages:
            break
        cost = estimate_tokens(message)
        if limits.max_tokens is not None and tokens + cost > limits.max_tokens:
            break
        kept.append(message)
        tokens += cost
    kept.reverse()
    while kept and kept[0].get("role") == "tool":
        kept.pop(0)
    return kept


def _thread(row: sa.Row[tuple[object, ...]]) -> ThreadRecord:
    m = row._mapping
    return ThreadRecord(**{column.name: m[column.name] for column in threads.c})


def _message(row: sa.Row[tuple[object, ...]]) -> ThreadMessage:
    m = row._mapping
    return ThreadMessage(
        position=m["position"],
        role=m["role"],
        content=m["content"],
        run_id=m["run_id"],
        created_at=m["created_at"],
    )


async def create_thread(
    conn: AsyncConnection,
    org: str,
    project: str,
    metadata: dict[str, Any],
    ttl_seconds: int,
    now: datetime,
    *,
    messages: Sequence[dict[str, Any]] = (),
) -> ThreadRecord:
    record = await tenancy.ensure_project(conn, org, project, now)
    return await _insert_thread(conn, record.org_id, record.id, metadata, ttl_seconds, now, messages)


async def ensure_thread(
    conn: AsyncConnection, org: str, project: str, thread_id: str, ttl_seconds: int, now: datetime
) -> tuple[ThreadRecord, bool]:
    """The thread `thread_id` of `org`/`project`, created empty under that id when there is none
    (a client that names its own threads, as AG-UI clients do); True when it was created.
    `ThreadNotFound` when the id belongs to another tenant, exactly as if it did not exist."""
    record = await tenancy.ensure_project(conn, org, project, now)
    thread = await get_thread(conn, thread_id, for_update=True)
    if thread is None:
        return await _insert_thread(
            conn, record.org_id, record.id, {}, ttl_seconds, now, (), thread_id=thread_id
        ), True
    if (thread.org_id, thread.project_id) != (record.org_id, record.id):
        raise ThreadNotFound(f"no thread {thread_id}")
    return thread, False


async def _insert_thread(
    conn: AsyncConnection,
    org_id: str,
    project_id: str,
    metadata: dict[str, Any],
    ttl_seconds: int,
    now: datetime,
    messages: Sequence[dict[str, Any]],
    run_ids: Sequence[str | None] = (),
    *,
    thread_id: str | None = None,
) -> ThreadRecord:
    if ttl_seconds < 1:
        raise ValueError(f"ttl_seconds must be >= 1, got {ttl_seconds}")
    thread_id = thread_id or str(uuid.uuid4())
    values = {
        "id": thread_id,
        "org_id": org_id,
        "project_id": project_id,
        "metadata": metadata,
        "ttl_seconds": ttl_seconds,
        "active_run_id": None,
        "run_count": 0,
        "message_count": len(messages),
        "created_at": now,
        "updated_at": now,
        "expires_at": now + timedelta(seconds=ttl_seconds),
    }
    row = (await conn.execute(sa.insert(threads).values(**values).returning(*threads.c))).one()
    await _append(conn, thread_id, 0, messages, list(run_ids) or [None] * len(messages), now)
    return _thread(row)


async def get_thread(
    conn: AsyncConnection, thread_id: str, *, for_update: bool = False
) -> ThreadRecord | None:
    stmt = sa.select(threads).where(threads.c.id == thread_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).first()
    return None if row is None else _thread(row)


async def list_messages(
    conn: AsyncConnection, thread_id: str, after_position: int = 0, limit: int | None = None
) -> list[ThreadMessage]:
    stmt = (
        sa.select(thread_messages)
        .where(thread_messages.c.thread_id == thread_id, thread_messages.c.position > after_position)
        .order_by(thread_messages.c.position)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_message(row) for row in await conn.execute(stmt)]


async def list_thread_runs(
    conn: AsyncConnection, thread_id: str, after_ordinal: int = 0, limit: int = 100
) -> list[RunRecord]:
    """The thread's runs after `after_ordinal`, in thread order."""
    stmt = (
        sa.select(runs)
        .where(runs.c.thread_id == thread_id, runs.c.thread_ordinal > after_ordinal)
        .order_by(runs.c.thread_ordinal)
        .limit(limit)
    )
    return [run_record(row) for row in await conn.execute(stmt)]


async def _history(conn: AsyncConnection, thread_id: str) -> list[dict[str, Any]]:
    return [message.content for message in await list_messages(conn, thread_id)]


def _messages_for(history: list[dict[str, Any]], thread_input: dict[str, Any]) -> list[dict[str, Any]]:
    limits = HistoryWindow(**(thread_input.get("window") or {}))
    return [*window(history, limits), *thread_input.get("turn", [])]


def _usable(thread: ThreadRecord | None, thread_id: str, now: datetime) -> ThreadRecord:
    if thread is None:
        raise ThreadNotFound(f"no thread {thread_id}")
    if thread.expires_at <= now:
        raise ThreadExpired(f"thread {thread_id} expired at {thread.expires_at.isoformat()}")
    return thread


async def create_thread_run(
    conn: AsyncConnection,
    new: NewRun,
    now: datetime,
    lease: Lease | None = None,
    idempotency_ttl: timedelta | None = None,
) -> RunRecord:
    """Insert `new` as the next turn of its thread (see the module docstring). Raises
    `ThreadNotFound` (no such thread in the run's org and project), `ThreadExpired` or
    `ThreadBusy`. An idempotent repeat returns the run that exists, whatever the thread's state."""
    turn = new.thread
    assert turn is not None
    validate.optional_token(new.session_id, "session id")
    validate.optional_token(new.idempotency_key, "idempotency key")
    # Locked first: concurrent turns of one thread with one key then see each other's run.
    thread = await get_thread(conn, turn.thread_id, for_update=True)
    if new.idempotency_key is not None:
        existing = (
            await conn.execute(
                sa.select(runs).where(
                    runs.c.org_id == new.org_id, runs.c.idempotency_key == new.idempotency_key
                )
            )
        ).first()
        if existing is not None:
            found = run_record(existing)
            if not idempotency.forgotten(found, now, idempotency_ttl):
                return idempotency.repeat_of(found, new)
            # Past its TTL: the old run gives the key up and this turn takes it (`idempotency`).
            await conn.execute(sa.update(runs).where(runs.c.id == found.id).values(idempotency_key=None))
    if thread is not None and (thread.org_id, thread.project_id) != (new.org_id, new.project_id):
        thread = None
    thread = _usable(thread, turn.thread_id, now)
    thread_input: dict[str, Any] = {
        "turn": list(turn.messages),
        "window": {"max_messages": turn.window.max_messages, "max_tokens": turn.window.max_tokens},
    }
    parked = thread.active_run_id is not None
    if parked and turn.multitask == "reject":
        raise ThreadBusy(f"thread {thread.id} is busy with run {thread.active_run_id}", thread.active_run_id)
    values = queued_run_values(new, now, None if parked else lease)
    values["thread_ordinal"] = thread.run_count + 1
    run_input = {**new.input, THREAD_INPUT_KEY: thread_input}
    if parked:
        values["available_at"] = PARKED
    else:
        run_input["messages"] = _messages_for(await _history(conn, thread.id), thread_input)
    values["input"] = run_input
    row = (await conn.execute(sa.insert(runs).values(**values).returning(*runs.c))).one()
    if labels := metadata_rows(values["id"], new.org_id, new.metadata, now):
        await conn.execute(sa.insert(run_metadata), labels)
    changes: dict[str, Any] = {
        "run_count": thread.run_count + 1,
        "updated_at": now,
        "expires_at": now + timedelta(seconds=thread.ttl_seconds),
    }
    if not parked:
        changes["active_run_id"] = values["id"]
    await conn.execute(sa.update(threads).where(threads.c.id == thread.id).values(**changes))
    return run_record(row, created=True)


def assistant_message(result: Any) -> dict[str, Any]:
    """The run's result as the thread's assistant turn (a non-text result as its JSON text)."""
    content = result if isinstance(result, str) else orjson.dumps(result).decode()
    return {"role": "assistant", "content": content}


async def _append(
    conn: AsyncConnection,
    thread_id: str,
    after: int,
    messages: Sequence[dict[str, Any]],
    run_ids: Sequence[str | None],
    now: datetime,
) -> None:
    if not messages:
        return
    await conn.execute(
        sa.insert(thread_messages),
        [
            {
                "thread_id": thread_id,
                "position": after + index,
                "role": str(message.get("role") or "user"),
                "content": message,
                "run_id": run_id,
                "created_at": now,
            }
            for index, (message, run_id) in enumerate(zip(messages, run_ids, strict=True), start=1)
        ],
    )


async def lock_thread_of(conn: AsyncConnection, run_id: str) -> None:
    """Take the row lock of the run's thread (if it has one) before the run's own row: every
    write that touches both a thread and its runs locks the thread first, so two of them (a run's
    end promoting the next turn, and a cancel of that turn) cannot deadlock on PostgreSQL."""
    thread_id = (await conn.execute(sa.select(runs.c.thread_id).where(runs.c.id == run_id))).scalar()
    if thread_id is not None:
        await conn.execute(sa.select(threads.c.id).where(threads.c.id == thread_id).with_for_update())


async def on_run_end(conn: AsyncConnection, run: RunRecord, now: datetime) -> str | None:
    """The thread's side of a run reaching a terminal status, in the same transaction: a completed
    active run's turn, tool turns and answer are appended; the oldest parked run (if any) becomes
    the active one, given its history and made claimable now. Returns the id of that run."""
    if run.thread_id is None or run.status not in TERMINAL_STATUSES:
        return None
    thread = await get_thread(conn, run.thread_id, for_update=True)
    if thread is None or thread.active_run_id != run.id:
        return None  # deleted, or a parked run that was cancelled before its turn
    count = thread.message_count
    if run.status == "completed":
        thread_input = run.input.get(THREAD_INPUT_KEY) or {}
        added = [
            *thread_input.get("turn", []),
            *thread_input.get("toolTurns", []),
            assistant_message(run.result),
        ]
        await _append(conn, thread.id, count, added, [run.id] * len(added), now)
        count += len(added)
    promoted = await _promote_next(conn, thread.id, now)
    await conn.execute(
        sa.update(threads)
        .where(threads.c.id == thread.id)
        .values(
            active_run_id=promoted,
            message_count=count,
            updated_at=now,
            expires_at=now + timedelta(seconds=thread.ttl_seconds),
        )
    )
    return promoted


async def _promote_next(conn: AsyncConnection, thread_id: str, now: datetime) -> str | None:
    row = (
        await conn.execute(
            sa.select(runs.c.id, runs.c.input)
            .where(runs.c.thread_id == thread_id, runs.c.status == "queued", runs.c.available_at == PARKED)
            .order_by(runs.c.thread_ordinal)
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    run_input = dict(row.input)
    run_input["messages"] = _messages_for(
        await _history(conn, thread_id), run_input.get(THREAD_INPUT_KEY) or {}
    )
    await conn.execute(
        sa.update(runs).where(runs.c.id == row.id).values(input=run_input, available_at=now, updated_at=now)
    )
    return str(row.id)


async def add_tool_turns(conn: AsyncConnection, run_id: str, turns: Sequence[dict[str, Any]]) -> None:
    """Remember the tool turns (the assistant's tool calls and the caller's results) of a thread
    run, to append them with its answer."""
    row = (await conn.execute(sa.select(runs.c.input).where(runs.c.id == run_id))).first()
    if row is None:
        return
    run_input = dict(row.input)
    thread_input = dict(run_input.get(THREAD_INPUT_KEY) or {})
    thread_input["toolTurns"] = [*thread_input.get("toolTurns", []), *turns]
    run_input[THREAD_INPUT_KEY] = thread_input
    await conn.execute(sa.update(runs).where(runs.c.id == run_id).values(input=run_input))


async def erase_thread(conn: AsyncConnection, thread_id: str) -> ThreadErasure:
    """Delete the thread and its messages, delete its runs' event logs, and blank its runs'
    inputs, states, results and errors (the run rows stay, as bare accounting records). Refused
    with `ThreadBusy` while a run of the thread is active."""
    thread = await get_thread(conn, thread_id, for_update=True)
    if thread is None:
        raise ThreadNotFound(f"no thread {thread_id}")
    if thread.active_run_id is not None:
        raise ThreadBusy(
            f"thread {thread_id} has an active run {thread.active_run_id}: cancel it first",
            thread.active_run_id,
        )
    run_ids = sa.select(runs.c.id).where(runs.c.thread_id == thread_id).scalar_subquery()
    events = await conn.execute(sa.delete(run_events).where(run_events.c.run_id.in_(run_ids)))
    erased_runs = await conn.execute(
        sa.update(runs)
        .where(runs.c.thread_id == thread_id)
        .values(input={}, state={}, result=None, error=None)
    )
    messages = await conn.execute(sa.delete(thread_messages).where(thread_messages.c.thread_id == thread_id))
    await conn.execute(sa.delete(threads).where(threads.c.id == thread_id))
    return ThreadErasure(messages=messages.rowcount, runs=erased_runs.rowcount, events=events.rowcount)


async def fork_thread(
    conn: AsyncConnection,
    thread_id: str,
    position: int | None,
    now: datetime,
    *,
    metadata: dict[str, Any] | None,
    ttl_seconds: int | None,
) -> ThreadRecord:
    """A new thread (same tenant) holding a copy of the source's messages 1..`position` (all of
    them with None). `ValueError` if `position` is past the source's last message."""
    source = _usable(await get_thread(conn, thread_id), thread_id, now)
    upto = source.message_count if position is None else position
    if not 0 <= upto <= source.message_count:
        raise ValueError(f"position {upto} is outside 0..{source.message_count}")
    copied = await list_messages(conn, thread_id, 0, upto)
    return await _insert_thread(
        conn,
        source.org_id,
        source.project_id,
        dict(source.metadata) if metadata is None else metadata,
        source.ttl_seconds if ttl_seconds is None else ttl_seconds,
        now,
        [message.content for message in copied],
        [message.run_id for message in copied],
    )


async def expired_threads(conn: AsyncConnection, now: datetime, limit: int) -> list[str]:
    """Ids of expired threads with no active run (the ones retention may erase), oldest first."""
    stmt = (
        sa.select(threads.c.id)
        .where(threads.c.expires_at <= now, threads.c.active_run_id.is_(None))
        .order_by(threads.c.expires_at)
        .limit(limit)
    )
    return [str(thread_id) for thread_id in (await conn.execute(stmt)).scalars()]
