"""Fair claiming (a per-org cap on live leases) and handing leases back (`release_leases`), on
both stores."""

from __future__ import annotations

import pytest

from noukai_server.store import EventRow, LeaseLost, OrgCaps, RunRecord, RunUpdate, Store

from .conftest import FakeClock, make_flow, new_run

pytestmark = pytest.mark.anyio


async def _queue(store: Store, clock: FakeClock, org: str, count: int) -> list[RunRecord]:
    flow = await make_flow(store, org=org)
    created = []
    for _ in range(count):
        created.append(await store.create_run(new_run(flow)))
        clock.advance(0.01)
    return created


async def _claim_all(store: Store, caps: OrgCaps | None, worker: str = "w") -> list[RunRecord]:
    claimed = []
    while (run := await store.claim_next_run(worker, 30, caps)) is not None:
        claimed.append(run)
    return claimed


async def test_an_org_at_its_cap_is_skipped_for_an_older_backlog(store: Store, clock: FakeClock) -> None:
    big = await _queue(store, clock, "big", 5)
    small = await _queue(store, clock, "small", 1)
    claimed = await _claim_all(store, OrgCaps(default=2))
    # Oldest first, but the big org stops at 2 and the small org's newer run is claimed anyway.
    assert [run.id for run in claimed] == [big[0].id, big[1].id, small[0].id]


async def test_a_finished_run_frees_its_orgs_slot(store: Store, clock: FakeClock) -> None:
    big = await _queue(store, clock, "big", 3)
    first, second = await _claim_all(store, OrgCaps(default=2))
    await store.record(first.id, 1, [], RunUpdate(status="completed"))
    third = await store.claim_next_run("w", 30, OrgCaps(default=2))
    assert (first.id, second.id, third and third.id) == (big[0].id, big[1].id, big[2].id)


async def test_an_expired_lease_does_not_count_and_is_claimable(store: Store, clock: FakeClock) -> None:
    big = await _queue(store, clock, "big", 1)
    caps = OrgCaps(default=1)
    assert [run.id for run in await _claim_all(store, caps)] == [big[0].id]
    clock.advance(31)  # the holder died: its lease no longer counts, and its run is claimable again
    again = await _claim_all(store, caps, worker="w2")
    assert [(run.id, run.attempt) for run in again] == [(big[0].id, 2)]
    assert await store.claim_next_run("w3", 30, caps) is None


async def test_overrides_and_no_default(store: Store, clock: FakeClock) -> None:
    big = await _queue(store, clock, "big", 3)
    vip = await _queue(store, clock, "vip", 3)
    claimed = await _claim_all(store, OrgCaps(default=None, overrides={"big": 1}))
    assert [run.id for run in claimed] == [big[0].id, *(run.id for run in vip)]
    claimed_more = await _claim_all(store, OrgCaps(default=1, overrides={"big": 3}))
    assert [run.id for run in claimed_more] == [big[1].id, big[2].id]


async def test_without_caps_the_oldest_wins(store: Store, clock: FakeClock) -> None:
    big = await _queue(store, clock, "big", 3)
    assert [run.id for run in await _claim_all(store, OrgCaps(default=None))] == [run.id for run in big]


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="every org"):
        OrgCaps(default=0)
    with pytest.raises(ValueError, match="acme"):
        OrgCaps(default=None, overrides={"acme": -1})


async def test_release_hands_runs_back_and_fences_the_old_holder(store: Store, clock: FakeClock) -> None:
    runs = await _queue(store, clock, "acme", 3)
    mine = await _claim_all(store, None, worker="leaving")
    await store.record(mine[0].id, 1, [EventRow(1, "run_started", "{}")])
    released = await store.release_leases("leaving", [mine[0].id, mine[1].id])
    assert released == sorted([runs[0].id, runs[1].id])
    back = await store.get_run(runs[0].id)
    assert back is not None
    assert (back.status, back.lease_owner, back.lease_expires_at, back.attempt, back.last_seq) == (
        "queued",
        None,
        None,
        1,
        1,
    )
    # A late write of the old holder is refused, before and after someone else claims the run.
    with pytest.raises(LeaseLost):
        await store.record(runs[0].id, 1, [EventRow(2, "step_started", "{}")])
    again = await store.claim_next_run("staying", 30)
    assert again is not None
    assert (again.id, again.attempt) == (runs[0].id, 2)
    with pytest.raises(LeaseLost):
        await store.record(runs[0].id, 1, [EventRow(2, "step_started", "{}")])
    # Releasing everything left takes only what this worker still holds.
    assert await store.release_leases("leaving") == [runs[2].id]
    assert await store.release_leases("leaving") == []
    assert await store.release_leases("leaving", []) == []
    held = await store.get_run(runs[0].id)
    assert held is not None
    assert held.lease_owner == "staying"


async def test_a_per_worker_default_counts_only_the_claiming_workers_leases(
    store: Store, clock: FakeClock
) -> None:
    big = await _queue(store, clock, "big", 5)
    caps = OrgCaps(default=2, default_per_worker=True)
    first = await _claim_all(store, caps, worker="w1")
    second = await _claim_all(store, caps, worker="w2")
    assert [run.id for run in first] == [big[0].id, big[1].id]
    assert [run.id for run in second] == [big[2].id, big[3].id]
    # An override is counted across the deployment, whoever claims.
    capped = OrgCaps(default=2, overrides={"big": 4}, default_per_worker=True)
    assert await store.claim_next_run("w3", 30, capped) is None
