"""Idempotency keys in the store, on SQLite and PostgreSQL: a repeat gets the run, another request
with the key is refused (`IdempotencyConflict`), a key past its TTL starts a new run (the old run
gives it up), and concurrent creations with one key, in one store or across two, make one run."""

from __future__ import annotations

import asyncio

import pytest

from noukai_server.store import FlowRecord, IdempotencyConflict, NewRun, RunRecord, Store, ThreadTurn
from tests.store.conftest import (
    FakeClock,
    _migrated_postgres,
    anyio_backend,
    clock,
    make_flow,
    new_run,
    store,
    store_url,
)

pytestmark = pytest.mark.anyio
__all__ = ["_migrated_postgres", "anyio_backend", "clock", "store", "store_url"]  # the store fixtures

DAY = 24 * 3600.0


def keyed(flow: FlowRecord, key: str, fingerprint: str, **overrides: object) -> NewRun:
    return new_run(flow, idempotency_key=key, request_hash=fingerprint, **overrides)


async def test_a_repeat_gets_the_run_and_another_request_is_refused(store: Store) -> None:
    flow = await make_flow(store)
    first = await store.create_run(keyed(flow, "k", "a" * 64), idempotency_ttl_seconds=DAY)
    again = await store.create_run(keyed(flow, "k", "a" * 64), idempotency_ttl_seconds=DAY)
    assert first.created and not again.created and again.id == first.id
    assert again.request_hash == "a" * 64
    with pytest.raises(IdempotencyConflict) as info:
        await store.create_run(keyed(flow, "k", "b" * 64), idempotency_ttl_seconds=DAY)
    assert info.value.run_id == first.id
    assert "'k' was already used for run" in str(info.value) and "different request" in str(info.value)


async def test_a_run_without_a_fingerprint_is_replayed_as_before(store: Store) -> None:
    flow = await make_flow(store)
    old = await store.create_run(new_run(flow, idempotency_key="legacy"))
    again = await store.create_run(keyed(flow, "legacy", "c" * 64), idempotency_ttl_seconds=DAY)
    assert again.id == old.id and not again.created


async def test_a_key_past_its_ttl_starts_a_new_run(store: Store, clock: FakeClock) -> None:
    flow = await make_flow(store)
    first = await store.create_run(keyed(flow, "k", "a" * 64), idempotency_ttl_seconds=60)
    clock.advance(59)
    assert (await store.create_run(keyed(flow, "k", "a" * 64), idempotency_ttl_seconds=60)).id == first.id
    clock.advance(2)
    # Past the TTL even another request may take the key: it is forgotten.
    fresh = await store.create_run(keyed(flow, "k", "b" * 64), idempotency_ttl_seconds=60)
    assert fresh.created and fresh.id != first.id and fresh.idempotency_key == "k"
    old = await store.get_run(first.id)
    assert old is not None and old.idempotency_key is None  # gave the key up, kept everything else
    repeat = await store.create_run(keyed(flow, "k", "b" * 64), idempotency_ttl_seconds=60)
    assert repeat.id == fresh.id and not repeat.created
    with pytest.raises(IdempotencyConflict):
        await store.create_run(keyed(flow, "k", "a" * 64), idempotency_ttl_seconds=60)


async def test_without_a_ttl_a_key_is_kept(store: Store, clock: FakeClock) -> None:
    flow = await make_flow(store)
    first = await store.create_run(keyed(flow, "k", "a" * 64))
    clock.advance(10 * DAY)
    assert (await store.create_run(keyed(flow, "k", "a" * 64))).id == first.id


async def test_a_leased_creation_follows_the_same_rules(store: Store, clock: FakeClock) -> None:
    """The path the server's own worker takes (`lease_to`)."""
    flow = await make_flow(store)
    first = await store.create_run(keyed(flow, "k", "a" * 64), lease_to="w1", idempotency_ttl_seconds=60)
    assert first.created and first.status == "running"
    again = await store.create_run(keyed(flow, "k", "a" * 64), lease_to="w1", idempotency_ttl_seconds=60)
    assert again.id == first.id and not again.created
    with pytest.raises(IdempotencyConflict):
        await store.create_run(keyed(flow, "k", "b" * 64), lease_to="w1", idempotency_ttl_seconds=60)
    clock.advance(61)
    fresh = await store.create_run(keyed(flow, "k", "a" * 64), lease_to="w1", idempotency_ttl_seconds=60)
    assert fresh.created and fresh.id != first.id


async def test_a_thread_turn_follows_the_same_rules(store: Store, clock: FakeClock) -> None:
    flow = await make_flow(store)
    thread = await store.create_thread(flow.org_id, "web", ttl_seconds=int(DAY))
    turn = ThreadTurn(thread.id, ({"role": "user", "content": "hi"},), multitask="enqueue")
    first = await store.create_run(keyed(flow, "t", "a" * 64, thread=turn), idempotency_ttl_seconds=60)
    again = await store.create_run(keyed(flow, "t", "a" * 64, thread=turn), idempotency_ttl_seconds=60)
    assert first.created and again.id == first.id
    with pytest.raises(IdempotencyConflict):
        await store.create_run(keyed(flow, "t", "b" * 64, thread=turn), idempotency_ttl_seconds=60)
    clock.advance(61)
    fresh = await store.create_run(keyed(flow, "t", "a" * 64, thread=turn), idempotency_ttl_seconds=60)
    assert fresh.created and fresh.id != first.id


async def _race(stores: list[Store], news: list[NewRun], ttl: float) -> list[RunRecord | BaseException]:
    return await asyncio.gather(
        *(stores[i % len(stores)].create_run(new, idempotency_ttl_seconds=ttl) for i, new in enumerate(news)),
        return_exceptions=True,
    )


async def test_concurrent_creations_with_one_key_make_one_run_across_two_stores(
    store: Store, store_url: str, clock: FakeClock
) -> None:
    """Two `Store`s on one database stand for two processes."""
    other = await Store.connect(store_url, migrate=False, clock=clock)
    try:
        flow = await make_flow(store)
        results = await _race([store, other], [keyed(flow, "k", "a" * 64) for _ in range(20)], 60)
        runs = [r for r in results if isinstance(r, RunRecord)]
        assert len(runs) == 20, [r for r in results if not isinstance(r, RunRecord)]
        assert len({r.id for r in runs}) == 1 and sum(r.created for r in runs) == 1
        # Past the TTL, a crowd reusing the key still makes exactly one new run.
        clock.advance(61)
        results = await _race([store, other], [keyed(flow, "k", "a" * 64) for _ in range(20)], 60)
        runs = [r for r in results if isinstance(r, RunRecord)]
        assert len(runs) == 20, [r for r in results if not isinstance(r, RunRecord)]
        assert len({r.id for r in runs}) == 1 and sum(r.created for r in runs) == 1
        # Two different requests racing for one key: one wins, every request of the other is refused.
        mixed = [keyed(flow, "m", ("a" if i % 2 else "b") * 64) for i in range(20)]
        results = await _race([store, other], mixed, 60)
        winners = [r for r in results if isinstance(r, RunRecord)]
        refused = [r for r in results if isinstance(r, IdempotencyConflict)]
        assert len(winners) == 10 and len(refused) == 10 and len({r.id for r in winners}) == 1
        assert len({r.request_hash for r in winners}) == 1
    finally:
        await other.close()
