from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from noukai_server.store import (
    EventRow,
    InvalidIdentifier,
    LeaseLost,
    LeaseState,
    RunBusy,
    RunNotFound,
    RunUpdate,
    Store,
)

from .conftest import FakeClock, make_flow, make_run, new_run

pytestmark = pytest.mark.anyio


def ev(seq: int, type_: str = "step_started") -> EventRow:
    return EventRow(seq=seq, type=type_, data=f'{{"seq":{seq}}}')


async def test_claim_sets_the_lease(store: Store, clock: FakeClock) -> None:
    run = await make_run(store)
    claimed = await store.claim_next_run("worker-1", 30)
    assert claimed is not None
    assert claimed.id == run.id
    assert (claimed.status, claimed.attempt, claimed.lease_owner) == ("running", 1, "worker-1")
    assert claimed.started_at is not None
    assert claimed.lease_expires_at == claimed.started_at + timedelta(seconds=30)
    assert claimed.available_at == claimed.lease_expires_at
    assert await store.get_run(run.id) == claimed


async def test_claim_on_empty_queue(store: Store) -> None:
    assert await store.claim_next_run("worker-1", 30) is None


async def test_claim_takes_the_oldest_first(store: Store, clock: FakeClock) -> None:
    flow = await make_flow(store)
    ids = []
    for _ in range(4):
        ids.append((await store.create_run(new_run(flow))).id)
        clock.advance(0.01)
    claimed = [await store.claim_next_run("w", 30) for _ in range(5)]
    assert [c.id if c else None for c in claimed] == [*ids, None]


async def test_claim_skips_runs_not_yet_available(store: Store, clock: FakeClock) -> None:
    run = await make_run(store)
    await store.claim_next_run("w1", 30)
    later = clock() + timedelta(seconds=60)
    await store.record(run.id, 1, [], RunUpdate(status="queued", available_at=later))
    assert await store.claim_next_run("w2", 30) is None
    clock.advance(61)
    again = await store.claim_next_run("w2", 30)
    assert again is not None
    assert again.id == run.id
    assert again.attempt == 2


async def test_claim_skips_waiting_and_finished_runs(store: Store) -> None:
    flow = await make_flow(store)
    waiting = await store.create_run(new_run(flow))
    done = await store.create_run(new_run(flow))
    for run, status in ((waiting, "waiting"), (done, "completed")):
        claimed = await store.claim_next_run("w", 30)
        assert claimed is not None
        assert claimed.id == run.id
        await store.record(run.id, 1, [], RunUpdate(status=status))  # type: ignore[arg-type]
    assert await store.claim_next_run("w", 30) is None


async def test_no_double_claim_under_concurrency(store: Store, store_url: str) -> None:
    flow = await make_flow(store)
    ids = {(await store.create_run(new_run(flow))).id for _ in range(20)}
    claimers = [await Store.connect(store_url, migrate=False) for _ in range(4)]

    async def drain(claimer: Store, name: str) -> list[str]:
        got = []
        while (run := await claimer.claim_next_run(name, 30)) is not None:
            assert run.attempt == 1
            got.append(run.id)
        return got

    try:
        results = await asyncio.gather(*(drain(c, f"w{i}") for i, c in enumerate(claimers)))
    finally:
        for claimer in claimers:
            await claimer.close()
    claimed = [run_id for got in results for run_id in got]
    assert sorted(claimed) == sorted(ids)  # every run exactly once


async def test_concurrent_claimers_on_one_store(store: Store) -> None:
    flow = await make_flow(store)
    ids = {(await store.create_run(new_run(flow))).id for _ in range(10)}
    claimed = await asyncio.gather(*(store.claim_next_run(f"w{i}", 30) for i in range(12)))
    got = [c.id for c in claimed if c is not None]
    assert sorted(got) == sorted(ids)


async def test_expired_lease_is_reclaimed_with_the_next_attempt(store: Store, clock: FakeClock) -> None:
    run = await make_run(store)
    first = await store.claim_next_run("w1", 10)
    assert first is not None
    await store.record(run.id, 1, [ev(1)])
    assert await store.claim_next_run("w2", 10) is None  # lease still valid
    clock.advance(11)
    second = await store.claim_next_run("w2", 10)
    assert second is not None
    assert second.id == run.id
    assert (second.attempt, second.lease_owner, second.last_seq) == (2, "w2", 1)
    assert second.started_at == first.started_at


async def test_zombie_write_raises_lease_lost_and_writes_nothing(store: Store, clock: FakeClock) -> None:
    run = await make_run(store)
    await store.claim_next_run("w1", 10)
    await store.record(run.id, 1, [ev(1)])
    clock.advance(11)
    await store.claim_next_run("w2", 10)
    with pytest.raises(LeaseLost, match="attempt 1"):
        await store.record(run.id, 1, [ev(2), ev(3)], RunUpdate(status="completed", result="zombie"))
    after = await store.get_run(run.id)
    assert after is not None
    assert (after.status, after.last_seq, after.result, after.attempt) == ("running", 1, None, 2)
    assert [e.seq for e in await store.read_events(run.id)] == [1]
    # The live attempt carries on from where the log is.
    await store.record(run.id, 2, [ev(2)], RunUpdate(status="completed", result="ok"))
    done = await store.get_run(run.id)
    assert done is not None
    assert (done.status, done.result, done.last_seq) == ("completed", "ok", 2)


async def test_expired_but_unclaimed_lease_still_writes(store: Store, clock: FakeClock) -> None:
    # The fencing token is the attempt: nobody else claimed, so nobody else could have written.
    run = await make_run(store)
    await store.claim_next_run("w1", 10)
    clock.advance(60)
    await store.record(run.id, 1, [ev(1)])
    assert (await store.extend_lease(run.id, 1, "w1", 10)).held


async def test_record_after_release_is_lease_lost(store: Store) -> None:
    run = await make_run(store)
    await store.claim_next_run("w1", 10)
    await store.record(run.id, 1, [ev(1)], RunUpdate(status="waiting", release_lease=True))
    with pytest.raises(LeaseLost):
        await store.record(run.id, 1, [ev(2)])


async def test_record_on_cancelled_run_is_lease_lost(store: Store) -> None:
    run = await make_run(store)
    await store.request_cancel(run.id)
    with pytest.raises(LeaseLost):
        await store.record(run.id, 0, [ev(1)])


async def test_record_unknown_run(store: Store) -> None:
    with pytest.raises(RunNotFound):
        await store.record(str(uuid.uuid4()), 1, [ev(1)])


async def test_record_applies_the_update(store: Store, clock: FakeClock) -> None:
    run = await make_run(store)
    await store.claim_next_run("w1", 10)
    await store.record(run.id, 1, [ev(1)], RunUpdate(cursor=1, state={"outputs": {"a": "x"}}, pause_after=3))
    mid = await store.get_run(run.id)
    assert mid is not None
    assert (mid.status, mid.cursor, mid.state, mid.pause_after, mid.lease_owner) == (
        "running",
        1,
        {"outputs": {"a": "x"}},
        3,
        "w1",
    )
    await store.record(run.id, 1, [ev(2)], RunUpdate(status="failed", error={"code": "X"}, pause_after=None))
    failed = await store.get_run(run.id)
    assert failed is not None
    assert (failed.status, failed.error, failed.pause_after) == ("failed", {"code": "X"}, None)
    assert failed.lease_owner is None
    assert failed.lease_expires_at is None
    assert failed.completed_at is not None


async def test_record_with_explicit_completed_at(store: Store, clock: FakeClock) -> None:
    run = await make_run(store)
    await store.claim_next_run("w1", 10)
    moment = clock() - timedelta(seconds=5)
    await store.record(run.id, 1, [], RunUpdate(status="completed", completed_at=moment))
    done = await store.get_run(run.id)
    assert done is not None
    assert done.completed_at == moment


async def test_record_without_events_or_update_only_checks_the_lease(store: Store, clock: FakeClock) -> None:
    run = await make_run(store)
    await store.claim_next_run("w1", 10)
    await store.record(run.id, 1, [])
    with pytest.raises(LeaseLost):
        await store.record(run.id, 2, [])


@pytest.mark.parametrize(
    ("update", "message"),
    [
        (RunUpdate(release_lease=True), "release_lease"),
        (RunUpdate(status="running", release_lease=True), "release_lease"),
        (RunUpdate(available_at=None), "available_at"),  # type: ignore[arg-type]
        (RunUpdate(status="waiting", available_at=None), "available_at"),  # type: ignore[arg-type]
    ],
)
async def test_contradictory_updates_are_refused(store: Store, update: RunUpdate, message: str) -> None:
    run = await make_run(store)
    await store.claim_next_run("w1", 10)
    with pytest.raises(ValueError, match=message):
        await store.record(run.id, 1, [ev(1)], update)
    assert await store.read_events(run.id) == []


# -- extend_lease ----------------------------------------------------------------------------------


async def test_extend_lease_pushes_the_expiry(store: Store, clock: FakeClock) -> None:
    run = await make_run(store)
    await store.claim_next_run("w1", 10)
    clock.advance(8)
    assert await store.extend_lease(run.id, 1, "w1", 10) == LeaseState(held=True, cancel_requested=False)
    clock.advance(8)  # 16s after the claim: expired without the heartbeat
    assert await store.claim_next_run("w2", 10) is None
    extended = await store.get_run(run.id)
    assert extended is not None
    assert extended.lease_expires_at == extended.available_at


async def test_extend_lease_reports_a_lost_lease(store: Store, clock: FakeClock) -> None:
    run = await make_run(store)
    await store.claim_next_run("w1", 10)
    clock.advance(11)
    await store.claim_next_run("w2", 10)
    assert await store.extend_lease(run.id, 1, "w1", 10) == LeaseState(held=False, cancel_requested=False)
    assert await store.extend_lease(run.id, 2, "w1", 10) == LeaseState(held=False, cancel_requested=False)
    assert (await store.extend_lease(run.id, 2, "w2", 10)).held


async def test_extend_lease_reports_cancellation(store: Store) -> None:
    run = await make_run(store)
    await store.claim_next_run("w1", 10)
    await store.request_cancel(run.id)
    assert await store.extend_lease(run.id, 1, "w1", 10) == LeaseState(held=True, cancel_requested=True)
    await store.record(run.id, 1, [ev(1, "run_cancelled")], RunUpdate(status="cancelled", release_lease=True))
    assert await store.extend_lease(run.id, 1, "w1", 10) == LeaseState(held=False, cancel_requested=True)


async def test_extend_lease_unknown_run(store: Store) -> None:
    assert await store.extend_lease(str(uuid.uuid4()), 1, "w1", 10) == LeaseState(False, False)


@pytest.mark.parametrize("seconds", [0, -1])
async def test_lease_must_be_positive(store: Store, seconds: float) -> None:
    run = await make_run(store)
    with pytest.raises(ValueError, match="lease_seconds"):
        await store.claim_next_run("w1", seconds)
    await store.claim_next_run("w1", 10)
    with pytest.raises(ValueError, match="lease_seconds"):
        await store.extend_lease(run.id, 1, "w1", seconds)


@pytest.mark.parametrize("worker", ["", "w" * 256])
async def test_worker_id_is_checked(store: Store, worker: str) -> None:
    with pytest.raises(InvalidIdentifier):
        await store.claim_next_run(worker, 10)


async def test_requeue_by_the_worker(store: Store) -> None:
    run = await make_run(store)
    await store.claim_next_run("w1", 10)
    await store.record(run.id, 1, [ev(1)], RunUpdate(status="queued", cursor=1))
    again = await store.claim_next_run("w2", 10)
    assert again is not None
    assert (again.id, again.attempt, again.cursor) == (run.id, 2, 1)


# -- append_events_unleased ------------------------------------------------------------------------


async def test_append_unleased_to_a_waiting_run(store: Store) -> None:
    run = await make_run(store)
    await store.claim_next_run("w1", 10)
    await store.record(run.id, 1, [ev(1)], RunUpdate(status="waiting", release_lease=True))
    cancelled = await store.request_cancel(run.id)
    assert cancelled is not None
    assert cancelled.status == "cancelled"
    after = await store.append_events_unleased(run.id, [ev(2, "run_cancelled")])
    assert after.last_seq == 2
    assert after.status == "cancelled"
    assert [e.type for e in await store.read_events(run.id)] == ["step_started", "run_cancelled"]


async def test_append_unleased_with_update(store: Store) -> None:
    run = await make_run(store)
    after = await store.append_events_unleased(
        run.id, [ev(1, "run_failed")], RunUpdate(status="failed", error={"code": "BAD"})
    )
    assert (after.status, after.error, after.last_seq) == ("failed", {"code": "BAD"}, 1)
    assert after.completed_at is not None


async def test_append_unleased_refuses_a_running_run(store: Store) -> None:
    run = await make_run(store)
    await store.claim_next_run("w1", 10)
    with pytest.raises(RunBusy):
        await store.append_events_unleased(run.id, [ev(1)])
    assert await store.read_events(run.id) == []


async def test_append_unleased_cannot_make_a_run_running(store: Store) -> None:
    run = await make_run(store)
    with pytest.raises(ValueError, match="claim"):
        await store.append_events_unleased(run.id, [ev(1)], RunUpdate(status="running"))


async def test_append_unleased_unknown_run(store: Store) -> None:
    with pytest.raises(RunNotFound):
        await store.append_events_unleased(str(uuid.uuid4()), [ev(1)])
