"""Workers and step attempts over a real SQLite store: a step cut off by a lost worker, or waiting
for a retry when its worker was lost, runs again as its next attempt on another worker."""

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
from noukai_server.store import NewRun, RunRecord, Store
from tests.store.conftest import FakeClock

pytestmark = pytest.mark.anyio
LEASE = 5.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Setup:
    store: Store
    bus: MemoryBus
    clock: FakeClock
    functions: FunctionRegistry

    def worker(self, name: str) -> Worker:
        engine = FlowEngine(ModelRegistry(ProviderSettings()), self.functions, TemplateEngine())
        flows = FlowCache(known_functions=set(self.functions.names()))
        return Worker(
            self.store, self.bus, engine, flows, lease_seconds=LEASE, poll_interval=0.05, worker_id=name
        )

    async def run(self, document: dict[str, Any]) -> RunRecord:
        flow = await self.store.save_draft("acme", "web", document["slug"], document, None)
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
    clock = FakeClock()
    store = await Store.connect(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", clock=clock)
    try:
        yield Setup(store, MemoryBus(), clock, default_functions())
    finally:
        await store.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def stored(store: Store, run_id: str, kind: str, step_id: str) -> bool:
    return any(step_id in row.data for row in await store.read_events(run_id, types={kind}))


async def finished(store: Store, run_id: str) -> RunRecord:
    async def done() -> bool:
        run = await store.get_run(run_id)
        return run is not None and run.terminal

    await eventually(done)
    run = await store.get_run(run_id)
    assert run is not None
    return run


async def test_a_step_cut_off_by_a_lost_worker_runs_again_as_attempt_2(setup: Setup) -> None:
    calls: list[str] = []

    async def hang_once(value: str) -> str:
        calls.append(value)
        if len(calls) == 1:
            await asyncio.Event().wait()  # the first worker dies in here
        return value.upper()

    setup.functions.register("test.hang_once", hang_once)
    run = await setup.run(
        {
            "slug": "crashy",
            "steps": [
                {"id": "first", "type": "template", "template": "a{{ message }}"},
                {
                    "id": "slow",
                    "type": "python",
                    "function": "test.hang_once",
                    "args": {"value": "{{ steps.first.output }}"},
                },
                {"id": "last", "type": "template", "template": "{{ steps.slow.output }}!"},
            ],
        }
    )
    first = setup.worker("a")
    await first.start()
    await eventually(lambda: stored(setup.store, run.id, ev.STEP_STARTED, "slow"))
    await first.stop()  # like a crash: nothing more is written, the lease is left to expire

    setup.clock.advance(LEASE + 1)
    second = setup.worker("b")
    await second.start()
    try:
        final = await finished(setup.store, run.id)
    finally:
        await second.stop()
    assert (final.status, final.result, final.attempt) == ("completed", "AGO!", 2)
    assert calls == ["ago", "ago"]
    folded = fold_attempts(await setup.store.read_events(run.id))
    assert [(a.attempt, a.status) for a in folded.steps["first"]] == [(1, "completed")]
    interrupted, rerun = folded.steps["slow"]
    assert (interrupted.attempt, interrupted.status) == (1, "failed")
    assert interrupted.error is not None and interrupted.error["code"] == "STEP_INTERRUPTED"
    assert (rerun.attempt, rerun.status, rerun.output) == (2, "completed", "AGO")
    assert [(a.attempt, a.status) for a in folded.steps["last"]] == [(1, "completed")]


async def test_a_retry_pending_when_the_worker_was_lost_runs_on_the_next_worker(setup: Setup) -> None:
    run = await setup.run(
        {
            "slug": "patient",
            "steps": [
                {
                    "id": "ask",
                    "type": "llm",
                    "model": "builtin:flaky",
                    "prompt": "{{ message }}",
                    "params": {"fail_times": 1},
                    # A backoff far longer than the test: only the next worker can end it.
                    "retry": {"initial_backoff_seconds": 300, "max_backoff_seconds": 300},
                },
            ],
        }
    )
    first = setup.worker("a")
    await first.start()
    await eventually(lambda: stored(setup.store, run.id, ev.STEP_RETRYING, "ask"))
    await first.stop()

    setup.clock.advance(LEASE + 1)
    second = setup.worker("b")
    await second.start()
    try:
        final = await finished(setup.store, run.id)
    finally:
        await second.stop()
    assert (final.status, final.result) == ("completed", "go")
    folded = fold_attempts(await setup.store.read_events(run.id))
    assert [(a.attempt, a.status) for a in folded.steps["ask"]] == [(1, "failed"), (2, "completed")]
    kinds = [row.type for row in await setup.store.read_events(run.id, types=ev.STEP_BOUNDARY_EVENTS)]
    assert kinds == [ev.STEP_STARTED, ev.STEP_RETRYING, ev.STEP_STARTED, ev.STEP_COMPLETED]


async def test_a_transient_failure_is_retried_by_the_same_worker(setup: Setup) -> None:
    run = await setup.run(
        {
            "slug": "retry",
            "steps": [
                {
                    "id": "ask",
                    "type": "llm",
                    "model": "builtin:flaky",
                    "prompt": "{{ message }}",
                    "params": {"fail_times": 2},
                    "retry": {"initial_backoff_seconds": 0.01},
                },
            ],
        }
    )
    worker = setup.worker("a")
    await worker.start()
    try:
        final = await finished(setup.store, run.id)
    finally:
        await worker.stop()
    assert (final.status, final.result, final.attempt) == ("completed", "go", 1)
    folded = fold_attempts(await setup.store.read_events(run.id))
    assert [(a.attempt, a.status) for a in folded.steps["ask"]] == [
        (1, "failed"),
        (2, "failed"),
        (3, "completed"),
    ]
