from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import timedelta

import pytest

from noukai_server.store import EventRow, FlowNotFound, InvalidIdentifier, RunRecord, Store

from .conftest import make_flow, make_run, new_run

pytestmark = pytest.mark.anyio


async def test_create_run_queues_it(store: Store) -> None:
    flow = await make_flow(store)
    run = await store.create_run(new_run(flow, session_id="s-1", pause_after=0, state={"k": 1}))
    assert run.created is True
    assert (run.status, run.attempt, run.cursor, run.last_seq, run.cancel_requested) == (
        "queued",
        0,
        0,
        0,
        False,
    )
    assert (run.session_id, run.pause_after, run.state, run.input) == ("s-1", 0, {"k": 1}, {"message": "hi"})
    assert run.document == flow.draft
    assert run.flow_version == 0
    assert run.flow_revision == 1
    assert run.lease_owner is None
    assert run.lease_expires_at is None
    assert run.result is None
    assert run.error is None
    assert run.started_at is None
    assert run.completed_at is None
    assert run.available_at == run.created_at == run.updated_at
    uuid.UUID(run.id)
    fetched = await store.get_run(run.id)
    assert fetched is not None
    assert fetched.created is False
    assert fetched == dataclasses.replace(run, created=False)


async def test_caller_may_choose_the_run_id(store: Store) -> None:
    run_id = str(uuid.uuid4())
    run = await make_run(store, id=run_id)
    assert run.id == run_id


async def test_get_unknown_run(store: Store) -> None:
    assert await store.get_run(str(uuid.uuid4())) is None


async def test_idempotency_key_returns_the_same_run(store: Store) -> None:
    flow = await make_flow(store)
    first = await store.create_run(new_run(flow, idempotency_key="req-1"))
    again = await store.create_run(new_run(flow, idempotency_key="req-1", input={"message": "other"}))
    assert first.created
    assert not again.created
    assert again.id == first.id
    assert again.input == {"message": "hi"}
    other = await store.create_run(new_run(flow, idempotency_key="req-2"))
    assert other.created
    assert other.id != first.id


async def test_idempotency_keys_are_per_org(store: Store) -> None:
    a = await store.create_run(new_run(await make_flow(store, org="acme"), idempotency_key="k"))
    b = await store.create_run(new_run(await make_flow(store, org="globex"), idempotency_key="k"))
    assert a.created
    assert b.created
    assert a.id != b.id


async def test_runs_without_idempotency_key_are_always_new(store: Store) -> None:
    flow = await make_flow(store)
    runs = [await store.create_run(new_run(flow)) for _ in range(3)]
    assert len({r.id for r in runs}) == 3


async def test_concurrent_creates_with_one_key_create_one_run(store: Store, store_url: str) -> None:
    flow = await make_flow(store)
    others = [await Store.connect(store_url, migrate=False) for _ in range(3)]
    try:
        made = await asyncio.gather(
            *(s.create_run(new_run(flow, idempotency_key="same")) for s in [store, *others])
        )
    finally:
        for s in others:
            await s.close()
    assert len({r.id for r in made}) == 1
    assert sum(r.created for r in made) == 1


async def test_create_run_for_unknown_flow(store: Store) -> None:
    flow = await make_flow(store)
    with pytest.raises(FlowNotFound):
        await store.create_run(new_run(flow, flow_id=str(uuid.uuid4())))


async def test_create_run_refuses_a_flow_of_another_tenant(store: Store) -> None:
    mine = await make_flow(store, org="acme")
    theirs = await make_flow(store, org="globex")
    with pytest.raises(FlowNotFound):
        await store.create_run(new_run(mine, flow_id=theirs.id))
    other_project = await make_flow(store, org="acme", project="api")
    with pytest.raises(FlowNotFound):
        await store.create_run(new_run(mine, flow_id=other_project.id))


@pytest.mark.parametrize("field", ["session_id", "idempotency_key"])
async def test_create_run_refuses_overlong_tokens(store: Store, field: str) -> None:
    flow = await make_flow(store)
    with pytest.raises(InvalidIdentifier):
        await store.create_run(new_run(flow, **{field: "x" * 256}))


# -- advance_run ---------------------------------------------------------------------------------


async def _waiting_run(store: Store) -> RunRecord:
    run = await make_run(store, pause_after=0, state={"outputs": {"a": 1}})
    claimed = await store.claim_next_run("w1", 30)
    assert claimed is not None
    assert claimed.id == run.id
    from noukai_server.store import RunUpdate

    await store.record(
        run.id,
        1,
        [EventRow(1, "step_completed", "{}")],
        RunUpdate(status="waiting", cursor=1, pause_after=None),
    )
    waiting = await store.get_run(run.id)
    assert waiting is not None
    assert waiting.status == "waiting"
    assert waiting.lease_owner is None
    return waiting


async def test_advance_waiting_run_requeues_it(store: Store, clock) -> None:  # type: ignore[no-untyped-def]
    run = await _waiting_run(store)
    clock.advance(5)
    advanced = await store.advance_run(
        run.id,
        expected_status="waiting",
        cursor=1,
        pause_after=1,
        state_patch={"toolResults": [1]},
        input_patch={"message": "next"},
    )
    assert advanced is not None
    assert (advanced.status, advanced.cursor, advanced.pause_after) == ("queued", 1, 1)
    assert advanced.state == {"outputs": {"a": 1}, "toolResults": [1]}
    assert advanced.input == {"message": "next"}
    assert advanced.available_at == advanced.updated_at > run.updated_at
    claimed = await store.claim_next_run("w2", 30)
    assert claimed is not None
    assert claimed.id == run.id
    assert claimed.attempt == 2


async def test_advance_without_patches_keeps_state_and_input(store: Store) -> None:
    run = await _waiting_run(store)
    advanced = await store.advance_run(run.id, expected_status="waiting", cursor=1, pause_after=None)
    assert advanced is not None
    assert advanced.state == run.state
    assert advanced.input == run.input


async def test_advance_is_conditional_on_the_status(store: Store) -> None:
    run = await _waiting_run(store)
    assert await store.advance_run(run.id, expected_status="waiting", cursor=1, pause_after=None) is not None
    # A second advance of the same pause (a duplicate request) changes nothing.
    assert await store.advance_run(run.id, expected_status="waiting", cursor=2, pause_after=None) is None
    after = await store.get_run(run.id)
    assert after is not None
    assert after.cursor == 1
    assert after.status == "queued"


async def test_advance_a_running_run_does_nothing(store: Store) -> None:
    run = await make_run(store)
    await store.claim_next_run("w1", 30)
    assert await store.advance_run(run.id, expected_status="waiting", cursor=1, pause_after=None) is None
    after = await store.get_run(run.id)
    assert after is not None
    assert after.status == "running"
    assert after.cursor == 0


async def test_advance_unknown_run(store: Store) -> None:
    assert (
        await store.advance_run(str(uuid.uuid4()), expected_status="waiting", cursor=1, pause_after=None)
        is None
    )


@pytest.mark.parametrize("status", ["running", "completed", "failed", "cancelled"])
async def test_advance_refuses_to_expect_a_leased_or_final_status(store: Store, status: str) -> None:
    run = await make_run(store)
    with pytest.raises(ValueError, match="waiting or queued"):
        await store.advance_run(run.id, expected_status=status, cursor=1, pause_after=None)  # type: ignore[arg-type]


# -- request_cancel ------------------------------------------------------------------------------


async def test_cancel_queued_run_is_immediate(store: Store) -> None:
    run = await make_run(store)
    cancelled = await store.request_cancel(run.id)
    assert cancelled is not None
    assert (cancelled.status, cancelled.cancel_requested) == ("cancelled", True)
    assert cancelled.completed_at is not None
    assert await store.claim_next_run("w1", 30) is None


async def test_cancel_waiting_run_is_immediate(store: Store) -> None:
    run = await _waiting_run(store)
    cancelled = await store.request_cancel(run.id)
    assert cancelled is not None
    assert cancelled.status == "cancelled"
    assert cancelled.completed_at is not None
    assert await store.advance_run(run.id, expected_status="waiting", cursor=1, pause_after=None) is None


async def test_cancel_running_run_only_flags_it(store: Store) -> None:
    run = await make_run(store)
    await store.claim_next_run("w1", 30)
    flagged = await store.request_cancel(run.id)
    assert flagged is not None
    assert (flagged.status, flagged.cancel_requested, flagged.lease_owner) == ("running", True, "w1")
    assert flagged.completed_at is None
    lease = await store.extend_lease(run.id, 1, "w1", 30)
    assert lease.held
    assert lease.cancel_requested


async def test_cancel_finished_run_changes_nothing(store: Store) -> None:
    run = await make_run(store)
    first = await store.request_cancel(run.id)
    again = await store.request_cancel(run.id)
    assert first == again


async def test_cancel_unknown_run(store: Store) -> None:
    assert await store.request_cancel(str(uuid.uuid4())) is None


async def test_database_errors_do_not_echo_parameters(store: Store) -> None:
    import sqlalchemy as sa

    run = await make_run(store)
    flow = await store.get_flow_by_id(run.flow_id)
    assert flow is not None
    with pytest.raises(sa.exc.IntegrityError) as caught:
        await store.create_run(new_run(flow, id=run.id, input={"message": "SECRET-PROMPT"}))
    assert "SECRET-PROMPT" not in str(caught.value)


def _cancel_event(run: RunRecord) -> list[EventRow]:
    seq = run.last_seq + 1
    return [EventRow(seq, "run_cancelled", f'{{"seq":{seq},"status":"{run.status}"}}')]


async def test_cancel_writes_final_events_in_the_same_transaction(store: Store) -> None:
    run = await _waiting_run(store)  # has event 1 already
    cancelled = await store.request_cancel(run.id, final_events=_cancel_event)
    assert cancelled is not None
    assert (cancelled.status, cancelled.last_seq) == ("cancelled", 2)
    [_, last] = await store.read_events(run.id)
    assert (last.seq, last.type, last.data) == (2, "run_cancelled", '{"seq":2,"status":"cancelled"}')
    # Cancelling again changes nothing and writes nothing.
    assert await store.request_cancel(run.id, final_events=_cancel_event) == cancelled
    assert len(await store.read_events(run.id)) == 2


async def test_cancel_final_events_are_not_written_for_a_running_run(store: Store) -> None:
    run = await make_run(store)
    await store.claim_next_run("w1", 30)
    flagged = await store.request_cancel(run.id, final_events=_cancel_event)
    assert flagged is not None
    assert flagged.status == "running"
    assert await store.read_events(run.id) == []


async def test_cancel_with_bad_final_events_changes_nothing(store: Store) -> None:
    from noukai_server.store import EventSequenceError

    run = await make_run(store)
    with pytest.raises(EventSequenceError):
        await store.request_cancel(run.id, final_events=lambda r: [EventRow(5, "run_cancelled", "{}")])
    after = await store.get_run(run.id)
    assert after is not None
    assert (after.status, after.cancel_requested) == ("queued", False)


async def test_a_run_created_leased_to_a_worker(store: Store, clock) -> None:  # type: ignore[no-untyped-def]
    flow = await make_flow(store)
    run = await store.create_run(new_run(flow), lease_to="w-local", lease_seconds=30)
    assert (run.created, run.status, run.attempt, run.lease_owner) == (True, "running", 1, "w-local")
    assert run.started_at == run.created_at
    assert run.lease_expires_at == run.available_at == run.created_at + timedelta(seconds=30)
    assert await store.get_run(run.id) == dataclasses.replace(run, created=False)
    # Nobody else can claim it while the lease holds; the holder writes with attempt 1.
    assert await store.claim_next_run("w-other", 30) is None
    await store.record(run.id, 1, [EventRow(1, "run_started", "{}")])
    # If its worker dies, the run is claimed again once the lease runs out.
    clock.advance(31)
    again = await store.claim_next_run("w-other", 30)
    assert again is not None and (again.id, again.attempt) == (run.id, 2)


async def test_a_leased_create_checks_the_lease(store: Store) -> None:
    flow = await make_flow(store)
    with pytest.raises(ValueError, match="lease_seconds"):
        await store.create_run(new_run(flow), lease_to="w", lease_seconds=0)
    with pytest.raises(InvalidIdentifier):
        await store.create_run(new_run(flow), lease_to="x" * 300)
