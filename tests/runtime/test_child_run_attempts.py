"""Which child an attempt of a `flow` step runs (`ChildRuns.run_child`), over a real SQLite store:
a retry starts a fresh child, an attempt continuing an interrupted one takes over or reuses the
child that attempt started. The same over HTTP: tests/server/test_subflow_retries.py and the
crash test of tests/server/test_subflows.py."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from noukai.types import events as ev
from noukai.types.events import FlowCompletedFields
from noukai_server.bus import MemoryBus
from noukai_server.engine import FlowEngine, default_functions
from noukai_server.engine.subflow import ChildRequest
from noukai_server.eventlog.writer import RunLogWriter
from noukai_server.flows import TemplateEngine
from noukai_server.providers import ModelRegistry, ProviderSettings
from noukai_server.runtime import FlowCache, Worker
from noukai_server.runtime.child_runs import ChildRuns, child_run_id
from noukai_server.store import NewRun, RunRecord, RunUpdate, Store

pytestmark = pytest.mark.anyio
CHILD = {"slug": "child", "steps": [{"id": "only", "type": "template", "template": "fresh"}]}
PARENT = {"slug": "parent", "steps": [{"id": "call", "type": "flow", "flow": "acme/web/child"}]}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Parent:
    store: Store
    bus: MemoryBus
    run: RunRecord
    host: ChildRuns

    async def child(self, attempt: int, *, completed_with: str | None = None) -> str:
        """A child of step 'call' as attempt `attempt` left it: unfinished (leased to a lost
        worker), or completed with `completed_with`."""
        head = await self.store.get_flow_head("acme", "web", "child")
        assert head is not None
        new = NewRun(
            id=child_run_id(self.run.id, "call", "0", attempt),
            org_id=head.org_id,
            project_id=head.project_id,
            flow_id=head.id,
            flow_version=0,
            flow_revision=head.draft_revision,
            document=CHILD,
            trigger_type="job",
            parent_run_id=self.run.id,
            parent_step_id="call",
            depth=1,
        )
        child = await self.store.create_run(new, lease_to="lost", lease_seconds=3600)
        if completed_with is not None:
            writer = RunLogWriter(self.store, self.bus, child.id, child.attempt, child.last_seq)
            done: FlowCompletedFields = {
                "runId": child.id,
                "executionId": child.id,
                "result": completed_with,
                "summary": {
                    "stepCount": 1,
                    "skipped": [],
                    "tokens": {"prompt": 0, "completion": 0, "total": 0},
                    "costUsd": "0.000000",
                },
            }
            await writer.emit_with_update(
                ev.FLOW_COMPLETED, done, RunUpdate(status="completed", result=completed_with)
            )
            await writer.settle()
        return child.id

    async def step(self, attempt: int) -> tuple[str, object]:
        """Run attempt `attempt` of step 'call': the child's id and output."""
        request = ChildRequest(
            step_id="call",
            step_index=0,
            attempt=attempt,
            key="0",
            flow="acme/web/child",
            version=None,
            parameters={},
        )
        sink = RunLogWriter(self.store, self.bus, self.run.id, self.run.attempt, self.run.last_seq)
        result = await self.host.run_child(request, sink)
        await sink.settle()
        return result.run_id, result.output


@pytest.fixture
async def parent(sqlite_store: Store) -> Parent:
    store = sqlite_store
    await store.save_draft("acme", "web", "child", CHILD, None)
    flow = await store.save_draft("acme", "web", "parent", PARENT, None)
    new = NewRun(
        org_id=flow.org_id,
        project_id=flow.project_id,
        flow_id=flow.id,
        flow_version=0,
        flow_revision=flow.draft_revision,
        document=PARENT,
        trigger_type="job",
    )
    run = await store.create_run(new, lease_to="w1", lease_seconds=3600)
    bus = MemoryBus()
    engine = FlowEngine(ModelRegistry(ProviderSettings()), default_functions(), TemplateEngine())
    flows = FlowCache()
    worker = Worker(store, bus, engine, flows, poll_interval=0.05, worker_id="w1")
    return Parent(store, bus, run, ChildRuns(store, bus, engine, flows, worker, run))


async def test_a_retry_starts_a_fresh_child_beside_the_ended_one(parent: Parent) -> None:
    first = await parent.child(1, completed_with="old")
    child_id, output = await parent.step(2)
    assert child_id == child_run_id(parent.run.id, "call", "0", 2) != first
    assert output == "fresh"


async def test_an_attempt_after_a_lost_worker_reuses_the_child_that_completed(parent: Parent) -> None:
    first = await parent.child(1, completed_with="old")
    parent.host.resumes(0, 2)
    assert await parent.step(2) == (first, "old")  # not run twice
    assert await parent.store.get_run(child_run_id(parent.run.id, "call", "0", 2)) is None


async def test_a_chain_of_lost_workers_takes_the_first_attempts_unfinished_child_over(parent: Parent) -> None:
    first = await parent.child(1)
    parent.host.resumes(0, 3)  # attempt 2 took it over and was lost too: it made no child of its own
    assert await parent.step(3) == (first, "fresh")
    taken = await parent.store.get_run(first)
    assert taken is not None and taken.status == "completed" and taken.attempt == 2


async def test_an_earlier_attempts_ended_child_is_not_the_interrupted_attempts(parent: Parent) -> None:
    # Attempt 1's child completed but the step failed after it (a retry), and attempt 2 was lost
    # before it made its child: attempt 3 runs a fresh one.
    await parent.child(1, completed_with="old")
    parent.host.resumes(0, 3)
    assert await parent.step(3) == (child_run_id(parent.run.id, "call", "0", 3), "fresh")


async def test_resumes_concerns_only_the_step_and_attempt_it_names(parent: Parent) -> None:
    await parent.child(1, completed_with="old")
    parent.host.resumes(1, 2)  # another step was interrupted
    assert await parent.step(2) == (child_run_id(parent.run.id, "call", "0", 2), "fresh")
