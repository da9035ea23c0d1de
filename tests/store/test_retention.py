"""Pruning the event logs of long-finished runs."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from noukai_server.store import EventRow, NewRun, RunStatus, RunUpdate, Store

pytestmark = pytest.mark.anyio


async def _finished_run(store: Store, status: RunStatus = "completed") -> str:
    flow = await store.save_draft("acme", "p", "f", {"slug": "f", "steps": []}, None)
    run = await store.create_run(
        NewRun(
            org_id="acme",
            project_id=flow.project_id,
            flow_id=flow.id,
            flow_version=0,
            flow_revision=flow.draft_revision,
            document={},
            trigger_type="execute",
        )
    )
    claimed = await store.claim_next_run("w", 30)
    assert claimed is not None and claimed.id == run.id
    events = [EventRow(1, "run_started", "{}"), EventRow(2, "flow_completed", "{}")]
    await store.record(run.id, claimed.attempt, events, RunUpdate(status=status))
    return run.id


async def _completed_at(store: Store, run_id: str) -> datetime:
    run = await store.get_run(run_id)
    assert run is not None and run.completed_at is not None
    return run.completed_at


async def test_prunes_only_runs_finished_before_the_cutoff(store: Store) -> None:
    old = await _finished_run(store)
    assert await store.has_events(old)
    now = await _completed_at(store, old)
    assert await store.prune_events(now - timedelta(seconds=1)) == 0
    assert await store.prune_events(now + timedelta(seconds=1)) == 1
    assert not await store.has_events(old)
    assert await store.read_events(old) == []
    run = await store.get_run(old)
    assert run is not None and run.status == "completed" and run.last_seq == 2
    assert await store.prune_events(now + timedelta(seconds=1)) == 0


async def test_running_runs_are_never_pruned(store: Store) -> None:
    flow = await store.save_draft("acme", "p", "g", {"slug": "g", "steps": []}, None)
    run = await store.create_run(
        NewRun(
            org_id="acme",
            project_id=flow.project_id,
            flow_id=flow.id,
            flow_version=0,
            flow_revision=flow.draft_revision,
            document={},
            trigger_type="execute",
        )
    )
    claimed = await store.claim_next_run("w", 30)
    assert claimed is not None
    await store.record(run.id, claimed.attempt, [EventRow(1, "run_started", "{}")])
    far_future = claimed.updated_at + timedelta(days=3650)
    assert await store.prune_events(far_future) == 0
    assert await store.has_events(run.id)


async def test_prunes_in_batches(store: Store) -> None:
    ids = [await _finished_run(store) for _ in range(3)]
    cutoff = await _completed_at(store, ids[-1]) + timedelta(seconds=1)
    assert await store.prune_events(cutoff, max_runs=2) == 2
    assert await store.prune_events(cutoff, max_runs=2) == 1
    assert await store.prune_events(cutoff, max_runs=2) == 0


async def _session_run(store: Store, session_id: str | None) -> str:
    flow = await store.save_draft("acme", "p", "s", {"slug": "s", "steps": []}, None)
    run = await store.create_run(
        NewRun(
            org_id="acme",
            project_id=flow.project_id,
            flow_id=flow.id,
            flow_version=0,
            flow_revision=flow.draft_revision,
            document={},
            trigger_type="execute",
            session_id=session_id,
        )
    )
    claimed = await store.claim_next_run("w", 30)
    assert claimed is not None and claimed.id == run.id
    started = [EventRow(1, "run_started", "{}")]
    await store.record(run.id, claimed.attempt, started, RunUpdate(status="completed"))
    return run.id


async def test_runs_in_a_session_keep_their_logs_until_the_session_cutoff(store: Store) -> None:
    plain = await _session_run(store, None)
    recorded = await _session_run(store, "11111111-1111-4111-8111-111111111111")
    ended = await _completed_at(store, recorded)
    later, earlier = ended + timedelta(seconds=5), ended - timedelta(days=1)
    # The event cutoff has passed for both, the session cutoff not yet: only the plain run goes.
    assert await store.prune_events(later, session_finished_before=earlier) == 1
    assert not await store.has_events(plain) and await store.has_events(recorded)
    assert await store.prune_events(later, session_finished_before=later) == 1
    assert not await store.has_events(recorded)


async def test_without_a_session_cutoff_session_runs_follow_the_event_cutoff(store: Store) -> None:
    recorded = await _session_run(store, "s")
    ended = await _completed_at(store, recorded)
    assert await store.prune_events(ended + timedelta(seconds=1)) == 1
