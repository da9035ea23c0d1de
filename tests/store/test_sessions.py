"""Runs recorded under a session id: listed oldest first, whatever their tenant."""

from __future__ import annotations

import pytest

from noukai_server.store import Store

from .conftest import FakeClock, make_flow, make_run

pytestmark = pytest.mark.anyio


async def test_lists_a_sessions_runs_oldest_first(store: Store, clock: FakeClock) -> None:
    flow = await make_flow(store)
    first = await make_run(store, flow, session_id="s-1", trigger_type="execute")
    clock.advance(1)
    await make_run(store, flow, session_id="other")
    await make_run(store, flow)
    clock.advance(1)
    second = await make_run(store, flow, session_id="s-1", trigger_type="step")
    clock.advance(-5)  # a run created "earlier" (clock skew between API processes) sorts first
    earliest = await make_run(store, flow, session_id="s-1", trigger_type="job")
    runs = await store.list_session_runs("s-1")
    assert [run.id for run in runs] == [earliest.id, first.id, second.id]
    assert [run.trigger_type for run in runs] == ["job", "execute", "step"]


async def test_ties_break_by_id(store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    flow = await make_flow(store)
    instant = clock()
    monkeypatch.setattr(store, "_clock", lambda: instant)
    ids = [f"00000000-0000-4000-8000-00000000000{n}" for n in (2, 1, 3)]
    for run_id in ids:
        await make_run(store, flow, session_id="tie", id=run_id)
    assert [run.id for run in await store.list_session_runs("tie")] == sorted(ids)


async def test_every_tenant_is_listed_callers_filter(store: Store) -> None:
    mine = await make_run(store, await make_flow(store, "acme", "web"), session_id="shared")
    theirs = await make_run(store, await make_flow(store, "other", "web"), session_id="shared")
    assert {run.id for run in await store.list_session_runs("shared")} == {mine.id, theirs.id}


@pytest.mark.parametrize("session_id", ["", "x" * 256, "unknown"])
async def test_no_runs(store: Store, session_id: str) -> None:
    await make_run(store, session_id="known")
    assert await store.list_session_runs(session_id) == []


async def test_limit(store: Store) -> None:
    flow = await make_flow(store)
    for _ in range(3):
        await make_run(store, flow, session_id="many")
    assert len(await store.list_session_runs("many", limit=2)) == 2
