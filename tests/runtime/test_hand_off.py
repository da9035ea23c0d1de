"""The API's direct hand-off: a run started while this process's worker has room is created
already leased to it and started at once; once the worker is full, runs go through the queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from noukai_server.bus import MemoryBus
from noukai_server.engine import FlowEngine, RunInputs, default_functions
from noukai_server.flows import TemplateEngine
from noukai_server.providers import ModelRegistry, ProviderSettings
from noukai_server.runtime import FlowCache, RunService, Worker
from noukai_server.store import Store

pytestmark = pytest.mark.anyio

SLOW = {
    "slug": "slow",
    "steps": [{"id": "a", "type": "llm", "model": "builtin:echo", "prompt": "{{ message }}"}],
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.connect(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}") as opened:
        yield opened


def _services(store: Store, concurrency: int) -> tuple[RunService, Worker]:
    functions = default_functions()
    engine = FlowEngine(ModelRegistry(ProviderSettings()), functions, TemplateEngine())
    flows = FlowCache(known_functions=set(functions.names()))
    bus = MemoryBus()
    worker = Worker(store, bus, engine, flows, concurrency=concurrency, worker_id="w-local")
    return RunService(store, bus, flows, local=worker), worker


async def _settled(store: Store, run_id: str) -> str:
    for _ in range(500):
        run = await store.get_run(run_id)
        assert run is not None
        if run.terminal:
            return run.status
        await asyncio.sleep(0.01)
    raise AssertionError("the run never ended")


async def _idle(worker: Worker) -> None:
    for _ in range(500):
        if worker.busy_slots == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the worker still holds {worker.busy_slots} slots")


async def test_runs_go_straight_to_the_local_worker_while_it_has_room(store: Store) -> None:
    runs, worker = _services(store, concurrency=2)
    await store.save_draft("acme", "web", "slow", SLOW, None)
    target = await runs.resolve("acme", "web", "slow", None)
    # The worker's claim loop is not even started: only the hand-off can run these.
    first = await runs.start(target, RunInputs(message="one"), trigger="job")
    second = await runs.start(target, RunInputs(message="two"), trigger="job")
    third = await runs.start(target, RunInputs(message="three"), trigger="job")
    assert (first.status, first.lease_owner, first.attempt) == ("running", "w-local", 1)
    assert second.status == "running"
    assert third.status == "queued"  # the worker was full: through the queue
    assert await _settled(store, first.id) == "completed"
    assert await _settled(store, second.id) == "completed"
    assert (await store.get_run(third.id)).status == "queued"  # type: ignore[union-attr]
    await worker.start()  # its claim loop takes the queued one
    try:
        assert await _settled(store, third.id) == "completed"
    finally:
        await worker.stop()


async def test_an_idempotent_repeat_is_not_started_twice(store: Store) -> None:
    runs, worker = _services(store, concurrency=4)
    await store.save_draft("acme", "web", "slow", SLOW, None)
    target = await runs.resolve("acme", "web", "slow", None)
    first = await runs.start(target, RunInputs(message="x"), trigger="job", idempotency_key="k1")
    repeat = await runs.start(target, RunInputs(message="x"), trigger="job", idempotency_key="k1")
    assert repeat.id == first.id and not repeat.created
    assert await _settled(store, first.id) == "completed"
    await _idle(worker)  # the run's task outlives its final status by its metrics and trace tail
    # Every reservation was given back: the worker has all its room, and no more.
    assert [worker.reserve("acme") for _ in range(5)] == [True, True, True, True, False]
    for _ in range(4):
        worker.release("acme")
    run = await store.get_run(first.id)
    assert run is not None and run.attempt == 1
