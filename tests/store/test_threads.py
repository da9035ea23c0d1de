"""Threads in the store: turns, one active run per thread, parked turns, erasure, forks, expiry.
Runs on SQLite and PostgreSQL (see conftest)."""

from __future__ import annotations

from typing import Any

import pytest

from noukai_server.store import (
    EventRow,
    FlowRecord,
    HistoryWindow,
    RunRecord,
    RunUpdate,
    Store,
    ThreadBusy,
    ThreadExpired,
    ThreadNotFound,
    ThreadTurn,
)
from noukai_server.store.threads_repo import PARKED, estimate_tokens, window
from tests.store.conftest import FakeClock, make_flow, new_run

pytestmark = pytest.mark.anyio


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


async def _turn(
    store: Store,
    flow: FlowRecord,
    thread_id: str,
    text: str,
    *,
    multitask: Any = "reject",
    window_: HistoryWindow | None = None,
    **overrides: Any,
) -> RunRecord:
    turn = ThreadTurn(thread_id, (_user(text),), window_ or HistoryWindow(), multitask)
    return await store.create_run(new_run(flow, input={"message": text}, thread=turn, **overrides))


async def _finish(store: Store, run_id: str, result: Any, status: Any = "completed") -> None:
    claimed = await store.claim_next_run("w1", 30)
    assert claimed is not None and claimed.id == run_id
    event = EventRow(seq=claimed.last_seq + 1, type="flow_completed", data="{}")
    await store.record(run_id, claimed.attempt, [event], RunUpdate(status=status, result=result))


async def _history(store: Store, thread_id: str) -> list[dict[str, Any]]:
    return [m.content for m in await store.list_thread_messages(thread_id)]


async def test_a_completed_turn_is_appended_with_the_answer_in_the_same_write(store: Store) -> None:
    flow = await make_flow(store)
    thread = await store.create_thread("acme", "web", metadata={"user": "u1"}, ttl_seconds=60)
    assert thread.metadata == {"user": "u1"} and thread.message_count == 0
    first = await _turn(store, flow, thread.id, "hello")
    assert first.thread_id == thread.id and first.thread_ordinal == 1
    assert first.input["messages"] == [_user("hello")]
    busy = await store.get_thread(thread.id)
    assert busy is not None and busy.active_run_id == first.id
    await _finish(store, first.id, "hi there")
    assert await _history(store, thread.id) == [_user("hello"), {"role": "assistant", "content": "hi there"}]
    idle = await store.get_thread(thread.id)
    assert idle is not None and idle.active_run_id is None and idle.message_count == 2
    second = await _turn(store, flow, thread.id, "again")
    assert second.thread_ordinal == 2
    assert second.input["messages"] == [
        _user("hello"),
        {"role": "assistant", "content": "hi there"},
        _user("again"),
    ]
    await _finish(store, second.id, {"score": 3})
    history = await _history(store, thread.id)
    assert history[-1] == {"role": "assistant", "content": '{"score":3}'}
    runs = await store.list_thread_runs(thread.id)
    assert [r.id for r in runs] == [first.id, second.id]


async def test_a_failed_turn_appends_nothing_and_frees_the_thread(store: Store) -> None:
    flow = await make_flow(store)
    thread = await store.create_thread("acme", "web", ttl_seconds=60)
    run = await _turn(store, flow, thread.id, "hello")
    await _finish(store, run.id, None, status="failed")
    assert await _history(store, thread.id) == []
    after = await store.get_thread(thread.id)
    assert after is not None and after.active_run_id is None


async def test_a_busy_thread_refuses_or_parks_the_next_turn(store: Store) -> None:
    flow = await make_flow(store)
    thread = await store.create_thread("acme", "web", ttl_seconds=60)
    first = await _turn(store, flow, thread.id, "one")
    with pytest.raises(ThreadBusy) as refused:
        await _turn(store, flow, thread.id, "two")
    assert refused.value.active_run_id == first.id
    parked = await _turn(store, flow, thread.id, "two", multitask="enqueue")
    third = await _turn(store, flow, thread.id, "three", multitask="enqueue")
    assert parked.status == "queued" and parked.available_at == PARKED
    # Only the active run is claimable: the parked ones wait for it.
    claimed = await store.claim_next_run("w1", 30)
    assert claimed is not None and claimed.id == first.id
    assert await store.claim_next_run("w1", 30) is None
    await store.record(first.id, claimed.attempt, [], RunUpdate(status="completed", result="1"))
    promoted = await store.get_run(parked.id)
    assert promoted is not None and promoted.available_at != PARKED
    assert promoted.input["messages"] == [_user("one"), {"role": "assistant", "content": "1"}, _user("two")]
    active = await store.get_thread(thread.id)
    assert active is not None and active.active_run_id == parked.id
    await _finish(store, parked.id, "2")
    await _finish(store, third.id, "3")
    assert [m["content"] for m in await _history(store, thread.id)] == ["one", "1", "two", "2", "three", "3"]


async def test_cancelling_the_active_turn_starts_the_next_and_a_parked_one_is_just_dropped(
    store: Store,
) -> None:
    flow = await make_flow(store)
    thread = await store.create_thread("acme", "web", ttl_seconds=60)
    first = await _turn(store, flow, thread.id, "one")
    second = await _turn(store, flow, thread.id, "two", multitask="enqueue")
    third = await _turn(store, flow, thread.id, "three", multitask="enqueue")
    cancelled = await store.request_cancel(third.id)  # parked: cancelled, nothing else changes
    assert cancelled is not None and cancelled.status == "cancelled"
    still = await store.get_thread(thread.id)
    assert still is not None and still.active_run_id == first.id
    await store.request_cancel(first.id)  # queued and active: the next turn starts
    now = await store.get_thread(thread.id)
    assert now is not None and now.active_run_id == second.id
    assert await _history(store, thread.id) == []


async def test_the_window_keeps_the_newest_messages(store: Store) -> None:
    flow = await make_flow(store)
    thread = await store.create_thread("acme", "web", ttl_seconds=60)
    for text in ("a", "b"):
        run = await _turn(store, flow, thread.id, text)
        await _finish(store, run.id, text.upper())
    run = await _turn(store, flow, thread.id, "c", window_=HistoryWindow(max_messages=2))
    assert run.input["messages"] == [_user("b"), {"role": "assistant", "content": "B"}, _user("c")]


def test_window_limits_by_messages_and_estimated_tokens() -> None:
    history = [_user("x" * 40), {"role": "assistant", "content": "y" * 40}, _user("z")]
    assert window(history, HistoryWindow()) == history
    assert window(history, HistoryWindow(max_messages=1)) == [_user("z")]
    assert window(history, HistoryWindow(max_messages=0)) == []
    budget = estimate_tokens(history[-1]) + estimate_tokens(history[-2])
    assert window(history, HistoryWindow(max_tokens=budget)) == history[1:]
    assert window(history, HistoryWindow(max_tokens=budget - 1)) == history[2:]
    # ~4 characters a token, plus 4 a message
    assert estimate_tokens(_user("")) == 4 + -(-len('{"role":"user","content":""}') // 4)
    tool = {"role": "tool", "tool_call_id": "c1", "content": "42"}
    assert window([_user("q"), tool, _user("r")], HistoryWindow(max_messages=2)) == [_user("r")]


async def test_delete_erases_messages_events_and_run_contents(store: Store) -> None:
    flow = await make_flow(store)
    thread = await store.create_thread("acme", "web", ttl_seconds=60)
    run = await _turn(store, flow, thread.id, "secret")
    busy = await _turn(store, flow, thread.id, "more", multitask="enqueue")
    with pytest.raises(ThreadBusy):
        await store.delete_thread(thread.id)
    await _finish(store, run.id, "classified")
    await _finish(store, busy.id, "more classified")
    erased = await store.delete_thread(thread.id)
    assert (erased.messages, erased.runs, erased.events) == (4, 2, 2)
    assert await store.get_thread(thread.id) is None
    assert await store.list_thread_messages(thread.id) == []
    for run_id in (run.id, busy.id):
        kept = await store.get_run(run_id)
        assert kept is not None and kept.status == "completed"
        assert (kept.input, kept.state, kept.result, kept.error) == ({}, {}, None, None)
        assert await store.read_events(run_id) == []
    with pytest.raises(ThreadNotFound):
        await store.delete_thread(thread.id)


async def test_fork_copies_the_history_up_to_a_position(store: Store) -> None:
    flow = await make_flow(store)
    thread = await store.create_thread("acme", "web", metadata={"a": 1}, ttl_seconds=60)
    for text in ("a", "b"):
        run = await _turn(store, flow, thread.id, text)
        await _finish(store, run.id, text.upper())
    fork = await store.fork_thread(thread.id, 3)
    assert fork.id != thread.id and fork.metadata == {"a": 1} and fork.message_count == 3
    assert [m["content"] for m in await _history(store, fork.id)] == ["a", "A", "b"]
    whole = await store.fork_thread(thread.id, None, metadata={"b": 2}, ttl_seconds=5)
    assert whole.message_count == 4 and whole.metadata == {"b": 2} and whole.ttl_seconds == 5
    with pytest.raises(ValueError):
        await store.fork_thread(thread.id, 5)
    run = await _turn(store, flow, fork.id, "c")
    assert [m["content"] for m in run.input["messages"]] == ["a", "A", "b", "c"]


async def test_a_thread_of_another_project_or_none_refuses_the_run(store: Store) -> None:
    flow = await make_flow(store)
    other = await store.create_thread("acme", "other", ttl_seconds=60)
    with pytest.raises(ThreadNotFound):
        await _turn(store, flow, other.id, "x")
    with pytest.raises(ThreadNotFound):
        await _turn(store, flow, "00000000-0000-0000-0000-000000000000", "x")


async def test_expired_threads_refuse_turns_and_are_erased(store: Store, clock: FakeClock) -> None:
    flow = await make_flow(store)
    thread = await store.create_thread("acme", "web", ttl_seconds=10)
    keep = await store.create_thread("acme", "web", ttl_seconds=1000)
    run = await _turn(store, flow, thread.id, "hi")
    await _finish(store, run.id, "yo")
    clock.advance(5)
    await _turn(store, flow, keep.id, "renews")  # activity pushes the expiry out
    clock.advance(6)
    with pytest.raises(ThreadExpired):
        await _turn(store, flow, thread.id, "late")
    assert await store.erase_expired_threads() == 1
    assert await store.get_thread(thread.id) is None
    erased = await store.get_run(run.id)
    assert erased is not None and erased.input == {} and erased.result is None
    assert await store.get_thread(keep.id) is not None


async def test_an_idempotent_repeat_returns_the_existing_turn(store: Store) -> None:
    flow = await make_flow(store)
    thread = await store.create_thread("acme", "web", ttl_seconds=60)
    first = await _turn(store, flow, thread.id, "hi", idempotency_key="k1")
    again = await _turn(store, flow, thread.id, "hi", idempotency_key="k1")
    assert again.id == first.id and not again.created


async def test_tool_turns_are_appended_between_the_turn_and_the_answer(store: Store) -> None:
    flow = await make_flow(store)
    thread = await store.create_thread("acme", "web", ttl_seconds=60)
    run = await _turn(store, flow, thread.id, "weather?")
    call = {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function"}]}
    result = {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    await store.add_thread_tool_turns(run.id, [call, result])
    await _finish(store, run.id, "It is sunny.")
    assert await _history(store, thread.id) == [
        _user("weather?"),
        call,
        result,
        {"role": "assistant", "content": "It is sunny."},
    ]
    messages = await store.list_thread_messages(thread.id, after_position=1, limit=2)
    assert [(m.position, m.role, m.run_id) for m in messages] == [
        (2, "assistant", run.id),
        (3, "tool", run.id),
    ]


def test_the_threads_migration_downgrades_and_upgrades_again(db_url: str) -> None:
    import asyncio

    import sqlalchemy as sa
    from alembic import command
    from sqlalchemy.ext.asyncio import create_async_engine

    from noukai_server.store.migrate import alembic_config

    async def tables_and_run_columns() -> tuple[set[str], set[str]]:
        engine = create_async_engine(db_url)
        try:
            async with engine.connect() as conn:

                def inspect(sync: sa.Connection) -> tuple[set[str], set[str]]:
                    inspector = sa.inspect(sync)
                    columns = {c["name"] for c in inspector.get_columns("runs")}
                    return set(inspector.get_table_names()), columns

                return await conn.run_sync(inspect)
        finally:
            await engine.dispose()

    config = alembic_config(db_url)
    command.upgrade(config, "head")
    tables, columns = asyncio.run(tables_and_run_columns())
    assert {"threads", "thread_messages"} <= tables and {"thread_id", "thread_ordinal"} <= columns
    command.downgrade(config, "0001")
    tables, columns = asyncio.run(tables_and_run_columns())
    assert not {"threads", "thread_messages"} & tables and not {"thread_id", "thread_ordinal"} & columns
    command.upgrade(config, "head")
    tables, _ = asyncio.run(tables_and_run_columns())
    assert "threads" in tables


async def test_concurrent_turns_leave_exactly_one_active_run(store: Store) -> None:
    import asyncio

    flow = await make_flow(store)
    thread = await store.create_thread("acme", "web", ttl_seconds=60)
    outcomes = await asyncio.gather(
        *(_turn(store, flow, thread.id, f"t{n}") for n in range(6)), return_exceptions=True
    )
    created = [o for o in outcomes if isinstance(o, RunRecord)]
    assert len(created) == 1
    assert all(isinstance(o, ThreadBusy) for o in outcomes if not isinstance(o, RunRecord))
    parked = await asyncio.gather(
        *(_turn(store, flow, thread.id, f"q{n}", multitask="enqueue") for n in range(4))
    )
    assert sorted(r.thread_ordinal or 0 for r in parked) == [2, 3, 4, 5]
    # the end of the active turn and a cancel of a waiting one, at once: both go through
    claimed = await store.claim_next_run("w1", 30)
    assert claimed is not None and claimed.id == created[0].id
    await asyncio.gather(
        store.record(claimed.id, claimed.attempt, [], RunUpdate(status="completed", result="ok")),
        store.request_cancel(parked[0].id),
        store.request_cancel(parked[1].id),
    )
    active = await store.get_thread(thread.id)
    assert active is not None and active.active_run_id in {parked[2].id, parked[3].id, parked[0].id}
    runs = {r.id: r for r in await store.list_thread_runs(thread.id)}
    assert runs[parked[1].id].status == "cancelled"


async def test_retention_keeps_the_logs_of_a_live_threads_runs(store: Store, clock: FakeClock) -> None:
    from datetime import timedelta

    flow = await make_flow(store)
    thread = await store.create_thread("acme", "web", ttl_seconds=10_000)
    on_thread = await _turn(store, flow, thread.id, "keep me")
    await _finish(store, on_thread.id, "kept")
    alone = await store.create_run(new_run(flow))
    await _finish(store, alone.id, "pruned")
    assert await store.prune_events(clock() + timedelta(seconds=1)) == 1
    assert await store.has_events(on_thread.id) and not await store.has_events(alone.id)
