"""A draining worker (SIGTERM on `noukai worker`) hands its runs back at once: at the end of the
current step when it ends within the grace period, mid-step (the step runs again as attempt 2)
when not; a worker polling the store hears of cancels without a bus; fair claiming keeps one
org's endless runs from taking every slot. Real SQLite store, no lease expiry waited for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from noukai.types import events as ev
from noukai_server.bus import MemoryBus
from noukai_server.engine import FlowEngine, FunctionRegistry, default_functions
from noukai_server.flows import TemplateEngine
from noukai_server.providers import ModelRegistry, ProviderSettings
from noukai_server.runtime import FlowCache, Worker
from noukai_server.runtime.attempts import fold_attempts
from noukai_server.store import NewRun, OrgCaps, RunRecord, Store

pytestmark = pytest.mark.anyio
LEASE = 30.0  # long: nothing here may wait for a lease to expire


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Setup:
    store: Store
    bus: MemoryBus
    functions: FunctionRegistry

    def worker(self, name: str, **options: Any) -> Worker:
        engine = FlowEngine(ModelRegistry(ProviderSettings()), self.functions, TemplateEngine())
        flows = FlowCache(known_functions=set(self.functions.names()))
        return Worker(
            self.store,
            self.bus,
            engine,
            flows,
            lease_seconds=LEASE,
            poll_interval=0.05,
            worker_id=name,
            **options,
        )

    async def run(self, document: dict[str, Any], org: str = "acme") -> RunRecord:
        flow = await self.store.save_draft(org, "web", document["slug"], document, None)
        run = await self.store.create_run(
            NewRun(
                org_id=flow.org_id,
                project_id=flow.project_id,
                flow_id=flow.id,
                flow_version=0,
                flow_revision=flow.draft_revision,
                document=document,
                trigger_type="job",
                input={"message": "go"},
            )
        )
        await self.bus.announce_work()
        return run


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    store = await Store.connect(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    try:
        yield Setup(store, MemoryBus(), default_functions())
    finally:
        await store.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def started(store: Store, run_id: str, step_id: str) -> bool:
    return any(step_id in row.data for row in await store.read_events(run_id, types={ev.STEP_STARTED}))


async def status_of(store: Store, run_id: str) -> str:
    run = await store.get_run(run_id)
    assert run is not None
    return run.status


def gated(setup: Setup, name: str) -> asyncio.Event:
    """A python function `name` that waits until the returned event is set."""
    gate = asyncio.Event()

    async def wait(value: str) -> str:
        await gate.wait()
        return value.upper()

    setup.functions.register(name, wait)
    return gate


def three_steps(slug: str, function: str) -> dict[str, Any]:
    return {
        "slug": slug,
        "steps": [
            {"id": "first", "type": "python", "function": function, "args": {"value": "{{ message }}"}},
            {"id": "second", "type": "template", "template": "{{ steps.first.output }}!"},
            {"id": "third", "type": "template", "template": "{{ steps.second.output }}?"},
        ],
    }


async def test_a_run_that_ends_its_step_in_the_grace_period_is_handed_back_after_it(setup: Setup) -> None:
    gate = gated(setup, "test.gate")
    run = await setup.run(three_steps("drain", "test.gate"))
    leaving = setup.worker("leaving")
    await leaving.start()
    await eventually(lambda: started(setup.store, run.id, "first"))
    drain = asyncio.create_task(leaving.drain(grace_seconds=10))
    await asyncio.sleep(0.1)
    assert not drain.done()  # waiting for the step in progress
    gate.set()
    assert await asyncio.wait_for(drain, 5) == [run.id]
    handed = await setup.store.get_run(run.id)
    assert handed is not None
    assert (handed.status, handed.cursor, handed.lease_owner, handed.attempt) == ("queued", 1, None, 1)

    staying = setup.worker("staying")
    await staying.start()
    try:
        await eventually(lambda: _is(setup.store, run.id, "completed"))
    finally:
        await staying.stop()
    final = await setup.store.get_run(run.id)
    assert final is not None and final.result == "GO!?"
    folded = fold_attempts(await setup.store.read_events(run.id))
    # Handed back at a step boundary: no step ran twice.
    assert {step: [a.attempt for a in attempts] for step, attempts in folded.steps.items()} == {
        "first": [1],
        "second": [1],
        "third": [1],
    }


async def test_a_run_still_inside_its_step_after_the_grace_is_handed_back_mid_step(setup: Setup) -> None:
    gate = gated(setup, "test.gate")
    run = await setup.run(three_steps("late", "test.gate"))
    leaving = setup.worker("leaving")
    await leaving.start()
    await eventually(lambda: started(setup.store, run.id, "first"))
    loop = asyncio.get_running_loop()
    begun = loop.time()
    assert await leaving.drain(grace_seconds=0.2) == [run.id]
    assert loop.time() - begun < 2
    assert await status_of(setup.store, run.id) == "queued"

    gate.set()
    staying = setup.worker("staying")
    await staying.start()
    try:
        await eventually(lambda: _is(setup.store, run.id, "completed"))
    finally:
        await staying.stop()
    folded = fold_attempts(await setup.store.read_events(run.id))
    interrupted, rerun = folded.steps["first"]
    assert (interrupted.attempt, interrupted.status, rerun.attempt, rerun.status) == (
        1,
        "failed",
        2,
        "completed",
    )


async def test_hurry_ends_the_grace_period(setup: Setup) -> None:
    gated(setup, "test.gate")
    run = await setup.run(three_steps("hurry", "test.gate"))
    leaving = setup.worker("leaving")
    await leaving.start()
    await eventually(lambda: started(setup.store, run.id, "first"))
    drain = asyncio.create_task(leaving.drain(grace_seconds=60))
    await asyncio.sleep(0.05)
    leaving.hurry()
    assert await asyncio.wait_for(drain, 5) == [run.id]


async def test_draining_an_idle_worker_hands_back_nothing(setup: Setup) -> None:
    idle = setup.worker("idle")
    await idle.start()
    assert await idle.drain(grace_seconds=1) == []


async def test_a_cancel_reaches_a_worker_through_the_store(setup: Setup) -> None:
    gated(setup, "test.gate")
    run = await setup.run(three_steps("cancel", "test.gate"))
    # Its own bus: the API's cancel notice cannot reach it, only the store poll.
    worker = Worker(
        setup.store,
        MemoryBus(),
        FlowEngine(ModelRegistry(ProviderSettings()), setup.functions, TemplateEngine()),
        FlowCache(known_functions=set(setup.functions.names())),
        lease_seconds=LEASE,
        poll_interval=0.05,
        worker_id="deaf",
        cancel_poll_seconds=0.1,
    )
    await worker.start()
    try:
        await eventually(lambda: started(setup.store, run.id, "first"))
        loop = asyncio.get_running_loop()
        asked = loop.time()
        await setup.store.request_cancel(run.id)
        await eventually(lambda: _is(setup.store, run.id, "cancelled"), timeout=2)
        assert loop.time() - asked < 1.0
    finally:
        await worker.stop()


async def test_a_handed_back_run_with_a_cancel_pending_is_cancelled_by_the_next_claimer(setup: Setup) -> None:
    gated(setup, "test.gate")
    run = await setup.run(three_steps("pending-cancel", "test.gate"))
    leaving = setup.worker("leaving")
    await leaving.start()
    await eventually(lambda: started(setup.store, run.id, "first"))
    # The cancel is asked while the worker is leaving and never hears it (its bus is not told).
    await setup.store.request_cancel(run.id)
    assert await leaving.drain(grace_seconds=0) == [run.id]
    staying = setup.worker("staying")
    await staying.start()
    try:
        await eventually(lambda: _is(setup.store, run.id, "cancelled"))
    finally:
        await staying.stop()
    kinds = [row.type for row in await setup.store.read_events(run.id)]
    assert kinds[-1] == ev.RUN_CANCELLED


async def test_three_endless_runs_of_one_org_leave_room_for_another(setup: Setup) -> None:
    """The measured starvation: a 3-slot worker, three endless jobs of org B queued first; org A's
    run starts while B's runs hold their share (at most half the slots, so 1)."""
    gated(setup, "test.forever")
    endless = [await setup.run(three_steps(f"b{n}", "test.forever"), org="org-b") for n in range(3)]
    quick = await setup.run(
        {"slug": "a", "steps": [{"id": "t", "type": "template", "template": "A"}]}, "org-a"
    )
    worker = setup.worker("shared", concurrency=3, org_caps=OrgCaps(default=max(1, 3 // 2)))
    await worker.start()
    try:
        await eventually(lambda: _is(setup.store, quick.id, "completed"), timeout=5)
        states = [await status_of(setup.store, run.id) for run in endless]
        assert sorted(states) == ["queued", "queued", "running"]
    finally:
        await worker.stop()


async def test_the_hand_off_respects_the_cap_too(setup: Setup) -> None:
    worker = setup.worker("local", concurrency=4, org_caps=OrgCaps(default=2, overrides={"vip": 3}))
    assert [worker.reserve("big") for _ in range(3)] == [True, True, False]
    assert [worker.reserve("vip") for _ in range(2)] == [True, True]
    assert worker.reserve("other") is False  # full
    for org in ("big", "big", "vip", "vip"):
        worker.release(org)
    assert worker.reserve("other") is True
    worker.release("other")


async def _is(store: Store, run_id: str, status: str) -> bool:
    return await status_of(store, run_id) == status
