"""SessionService over a real SQLite store, for the cases a live server reaches only by waiting or
by bad luck: runs that stopped between steps, expiry, pruned logs, and the retention task."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest

from noukai.types import events as ev
from noukai_server.eventlog.retention import RetentionTask
from noukai_server.runtime.errors import RequestRejected
from noukai_server.runtime.sessions import SessionService
from noukai_server.runtime.traces import TraceService
from noukai_server.store import EventRow, NewRun, RunRecord, RunUpdate, Store
from tests.store.conftest import FakeClock

pytestmark = pytest.mark.anyio
SID = "11111111-1111-4111-8111-111111111111"
DOCUMENT = {
    "slug": "two",
    "steps": [
        {"id": "a", "type": "template", "template": "x"},
        {"id": "b", "type": "template", "template": "y"},
    ],
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store(sqlite_store: Store) -> Store:
    return sqlite_store


def service(store: Store, retention: float = 3600) -> SessionService:
    return SessionService(store, TraceService(store), retention_seconds=retention)


async def recorded_run(
    store: Store, events: list[tuple[str, dict[str, Any]]], update: RunUpdate, *, session_id: str | None = SID
) -> RunRecord:
    flow = await store.save_draft("acme", "web", "two", DOCUMENT, None)
    run = await store.create_run(
        NewRun(
            org_id="acme",
            project_id=flow.project_id,
            flow_id=flow.id,
            flow_version=0,
            flow_revision=flow.draft_revision,
            document=DOCUMENT,
            trigger_type="execute",
            session_id=session_id,
        )
    )
    claimed = await store.claim_next_run("w", 30)
    assert claimed is not None and claimed.id == run.id
    rows = [
        EventRow(seq, kind, orjson.dumps({"eventType": kind, **payload}).decode())
        for seq, (kind, payload) in enumerate(events, start=1)
    ]
    await store.record(run.id, claimed.attempt, rows, update)
    current = await store.get_run(run.id)
    assert current is not None
    return current


A_DONE = [
    (ev.RUN_STARTED, {}),
    (ev.STEP_STARTED, {"stepId": "a", "attempt": 1}),
    (ev.STEP_COMPLETED, {"stepId": "a", "attempt": 1, "output": "x"}),
]


async def test_a_run_cancelled_between_steps_stops_at_its_cursor(store: Store) -> None:
    run = await recorded_run(store, A_DONE, RunUpdate(status="cancelled", cursor=1))
    [execution] = (await service(store).get(SID, org="acme", project=None))["executions"]
    assert execution["executionId"] == run.id
    assert (execution["status"], execution["errorAtStep"]) == ("cancelled", "b")
    done, stopped = execution["steps"]
    assert done["outputSnapshot"] == "x"
    assert stopped["stepId"] == "b" and stopped["status"] == "failed"
    assert stopped["errorSnapshot"] == {"code": "RUN_CANCELLED", "message": "the run was cancelled"}


async def test_a_run_cancelled_mid_step(store: Store) -> None:
    events = [*A_DONE, (ev.STEP_STARTED, {"stepId": "b", "attempt": 1}), (ev.RUN_CANCELLED, {})]
    await recorded_run(store, events, RunUpdate(status="cancelled", cursor=1))
    [execution] = (await service(store).get(SID, org="acme", project=None))["executions"]
    assert execution["errorAtStep"] == "b"
    assert [s["stepId"] for s in execution["steps"]] == ["a", "b"]
    assert execution["steps"][1]["errorSnapshot"]["code"] == "RUN_CANCELLED"


async def test_a_run_that_failed_before_any_step(store: Store) -> None:
    error = {"code": "INVALID_TREE", "message": "bad flow"}
    await recorded_run(
        store,
        [(ev.RUN_STARTED, {}), (ev.RUN_FAILED, {"error": error})],
        RunUpdate(status="failed", error=error),
    )
    [execution] = (await service(store).get(SID, org="acme", project=None))["executions"]
    assert execution["errorAtStep"] == "a"
    assert execution["steps"] == [
        {
            "stepId": "a",
            "attempt": 1,
            "loopIndex": None,
            "status": "failed",
            "inputSnapshot": None,
            "outputSnapshot": None,
            "errorSnapshot": error,
            "truncated": False,
        }
    ]


async def test_a_failure_without_a_step_or_cursor(store: Store) -> None:
    await recorded_run(store, [(ev.RUN_STARTED, {})], RunUpdate(status="failed", error="odd", cursor=7))
    [execution] = (await service(store).get(SID, org="acme", project=None))["executions"]
    assert execution["errorAtStep"] is None and execution["steps"] == []


async def test_statuses_of_unfinished_runs(store: Store) -> None:
    flow = await store.save_draft("acme", "web", "two", DOCUMENT, None)
    await store.create_run(
        NewRun(
            org_id="acme",
            project_id=flow.project_id,
            flow_id=flow.id,
            flow_version=0,
            flow_revision=flow.draft_revision,
            document=DOCUMENT,
            trigger_type="job",
            session_id=SID,
        )
    )
    [execution] = (await service(store).get(SID, org="acme", project=None))["executions"]
    assert (execution["status"], execution["completedAt"], execution["steps"]) == ("pending", None, [])


async def test_expired_by_age_of_the_oldest_run(store: Store, clock: FakeClock) -> None:
    clock.advance(-7200)
    await recorded_run(store, A_DONE, RunUpdate(status="completed"))
    clock.advance(7200)
    await recorded_run(store, A_DONE, RunUpdate(status="completed"))
    with pytest.raises(RequestRejected) as caught:
        await service(store, retention=3600).get(SID, org="acme", project=None)
    assert caught.value.code == "SESSION_EXPIRED"
    assert (
        len((await service(store, retention=3 * 3600).get(SID, org="acme", project=None))["executions"]) == 2
    )


async def test_expired_once_a_log_was_pruned(store: Store) -> None:
    run = await recorded_run(store, A_DONE, RunUpdate(status="completed"))
    assert run.completed_at is not None
    await store.prune_events(run.completed_at + timedelta(seconds=1))
    with pytest.raises(RequestRejected) as caught:
        await service(store).get(SID, org="acme", project=None)
    assert caught.value.code == "SESSION_EXPIRED"


async def _ended_ago(store: Store, clock: FakeClock, seconds: float, session_id: str | None) -> str:
    clock.advance(-seconds)
    try:
        run = await recorded_run(store, A_DONE, RunUpdate(status="completed"), session_id=session_id)
    finally:
        clock.advance(seconds)
    return run.id


async def test_the_retention_task_keeps_session_logs_for_the_session_period(
    store: Store, clock: FakeClock
) -> None:
    recorded = await _ended_ago(store, clock, 2 * 86400, "x")
    plain = await _ended_ago(store, clock, 2 * 86400, None)
    task = RetentionTask(store, retention_seconds=86400, session_retention_seconds=30 * 86400)
    assert await task.prune_once() == 1
    assert await store.has_events(recorded) and not await store.has_events(plain)
    assert (
        await RetentionTask(store, retention_seconds=86400, session_retention_seconds=86400).prune_once() == 1
    )
    assert not await store.has_events(recorded)


async def test_a_short_session_period_never_shortens_a_logs_life(store: Store, clock: FakeClock) -> None:
    recorded = await _ended_ago(store, clock, 12 * 3600, "y")
    task = RetentionTask(store, retention_seconds=86400, session_retention_seconds=3600)
    assert await task.prune_once() == 0
    assert await store.has_events(recorded)
