"""Per-key caps on running runs (the claim) and per-org / per-key caps on queued runs (the insert),
on both stores."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from noukai_server.store import OrgCaps, QueueCaps, QueueFull, RunRecord, RunUpdate, Store

from .conftest import FakeClock, make_flow, new_run

pytestmark = pytest.mark.anyio


async def _queue(
    store: Store, clock: FakeClock, keys: list[str | None], org: str = "acme"
) -> list[RunRecord]:
    flow = await make_flow(store, org=org)
    created = []
    for key in keys:
        created.append(await store.create_run(new_run(flow, api_key_id=key)))
        clock.advance(0.01)
    return created


async def _claim_all(store: Store, caps: OrgCaps) -> list[RunRecord]:
    claimed = []
    while (run := await store.claim_next_run("w", 30, caps)) is not None:
        claimed.append(run)
    return claimed


def _queued_count(store_url: str, org: str) -> int:
    """Read apart from the store under test (a plain synchronous connection)."""
    engine = sa.create_engine(store_url.replace("+aiosqlite", ""))
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT count(*) FROM runs WHERE org_id = :org AND status = 'queued'")
            return int(conn.execute(query, {"org": org}).scalar_one())
    finally:
        engine.dispose()


async def test_a_key_at_its_running_cap_is_skipped_for_other_keys_and_keyless_runs(
    store: Store, clock: FakeClock
) -> None:
    runs = await _queue(store, clock, ["k1", "k1", "k1", "k2", None])
    assert all(run.api_key_id == key for run, key in zip(runs, ["k1", "k1", "k1", "k2", None], strict=True))
    claimed = await _claim_all(store, OrgCaps(default=None, key_default=1))
    assert [run.id for run in claimed] == [runs[0].id, runs[3].id, runs[4].id]


async def test_key_overrides_replace_the_default_and_a_finished_run_frees_the_slot(
    store: Store, clock: FakeClock
) -> None:
    runs = await _queue(store, clock, ["vip", "vip", "vip", "k1", "k1"])
    caps = OrgCaps(default=None, key_default=1, key_overrides={"vip": 2})
    claimed = await _claim_all(store, caps)
    assert [run.id for run in claimed] == [runs[0].id, runs[1].id, runs[3].id]
    await store.record(runs[0].id, 1, [], RunUpdate(status="completed"))
    assert [run.id for run in await _claim_all(store, caps)] == [runs[2].id]


async def test_key_caps_add_to_org_caps(store: Store, clock: FakeClock) -> None:
    runs = await _queue(store, clock, ["k1", "k1", "k2", "k2"])
    claimed = await _claim_all(store, OrgCaps(default=3, key_default=1))
    assert [run.id for run in claimed] == [runs[0].id, runs[2].id]


async def test_an_expired_lease_of_a_capped_key_is_claimable_and_does_not_count(
    store: Store, clock: FakeClock
) -> None:
    runs = await _queue(store, clock, ["k1", "k1"])
    caps = OrgCaps(default=None, key_default=1)
    assert [run.id for run in await _claim_all(store, caps)] == [runs[0].id]
    clock.advance(31)  # its worker died: the dead lease does not hold the key's slot
    # The queued run is older than the dead lease's expiry, so it goes first; then the key holds
    # its one slot again, and the dead run waits for it.
    again = await store.claim_next_run("w2", 30, caps)
    assert again is not None and again.id == runs[1].id
    assert await store.claim_next_run("w3", 30, caps) is None
    await store.record(runs[1].id, 1, [], RunUpdate(status="completed"))
    last = await store.claim_next_run("w3", 30, caps)
    assert last is not None and (last.id, last.attempt) == (runs[0].id, 2)


def test_caps_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="key k1 must be >= 1"):
        OrgCaps(default=None, key_overrides={"k1": 0})
    with pytest.raises(ValueError, match="queued-runs cap must be >= 1"):
        QueueCaps(org_default=0)


async def test_an_org_past_its_queued_cap_is_refused_and_nothing_is_written(
    store: Store, store_url: str
) -> None:
    flow = await make_flow(store)
    caps = QueueCaps(org_default=2)
    for _ in range(2):
        await store.create_run(new_run(flow), queue_caps=caps)
    with pytest.raises(QueueFull) as refused:
        await store.create_run(new_run(flow), queue_caps=caps)
    assert (refused.value.scope, refused.value.owner, refused.value.cap) == ("org", "acme", 2)
    assert _queued_count(store_url, "acme") == 2
    other = await make_flow(store, org="other")
    await store.create_run(new_run(other), queue_caps=caps)  # another org has its own queue
    # A claimed run leaves the queue and gives its place back.
    assert await store.claim_next_run("w", 30) is not None
    await store.create_run(new_run(flow), queue_caps=caps)


async def test_a_key_past_its_queued_cap_is_refused_while_other_keys_queue(
    store: Store, store_url: str
) -> None:
    flow = await make_flow(store)
    caps = QueueCaps(key_default=1, key_overrides={"vip": 2})
    await store.create_run(new_run(flow, api_key_id="k1"), queue_caps=caps)
    with pytest.raises(QueueFull, match="key k1 already has 1 queued runs"):
        await store.create_run(new_run(flow, api_key_id="k1"), queue_caps=caps)
    for _ in range(2):
        await store.create_run(new_run(flow, api_key_id="vip"), queue_caps=caps)
    with pytest.raises(QueueFull):
        await store.create_run(new_run(flow, api_key_id="vip"), queue_caps=caps)
    await store.create_run(new_run(flow), queue_caps=caps)  # no key: only its org's cap applies
    assert _queued_count(store_url, "acme") == 4


async def test_an_idempotent_repeat_at_the_cap_gets_its_run(store: Store) -> None:
    flow = await make_flow(store)
    caps = QueueCaps(org_default=1)
    first = await store.create_run(new_run(flow, idempotency_key="once"), queue_caps=caps)
    repeat = await store.create_run(new_run(flow, idempotency_key="once"), queue_caps=caps)
    assert (repeat.id, repeat.created) == (first.id, False)


async def test_concurrent_submissions_never_pass_the_queued_cap(store: Store, store_url: str) -> None:
    """On PostgreSQL the org's advisory lock serialises the count and the insert; on SQLite the
    single writer does."""
    flow = await make_flow(store)
    caps = QueueCaps(org_default=3)
    outcomes = await asyncio.gather(
        *(store.create_run(new_run(flow), queue_caps=caps) for _ in range(12)), return_exceptions=True
    )
    assert sum(isinstance(outcome, RunRecord) for outcome in outcomes) == 3
    assert all(isinstance(outcome, RunRecord | QueueFull) for outcome in outcomes), outcomes
    assert _queued_count(store_url, "acme") == 3
