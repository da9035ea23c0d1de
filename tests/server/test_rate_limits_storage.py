"""The request-rate counters themselves, on SQLite, PostgreSQL and Redis: concurrent requests pass
exactly the limit (within one store connection and across two), window stats, the plain counter
methods, the sweep, a counter store that fails, and the per-request cost of the check (printed;
`pytest -s`)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime

import pytest
from limits import RateLimitItemPerMinute
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter

from noukai_server.api.rate_limits import RateLimits, RatePolicy, redis_storage
from noukai_server.eventlog.retention import RetentionTask
from noukai_server.store import ApiKeyRecord, Store
from noukai_server.store.rate_counters import StoreRateStorage, sweep_expired
from tests._services import REDIS_URL, require_redis
from tests.conftest import free_port
from tests.store.conftest import _migrated_postgres, anyio_backend, clock, store, store_url

pytestmark = pytest.mark.anyio
__all__ = ["_migrated_postgres", "anyio_backend", "clock", "store", "store_url"]  # the store fixtures


def api_key(key_id: str | None = None, org: str = "acme") -> ApiKeyRecord:
    return ApiKeyRecord(
        id=key_id or uuid.uuid4().hex[:12],
        org_id=org,
        project_id=None,
        project_slug=None,
        name=None,
        created_at=datetime.now(UTC),
        last_used_at=None,
        revoked_at=None,
    )


def unique(name: str) -> str:
    """A fresh identity: Redis keeps its counters between test runs."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def hits_passed(storages: list[Storage], limit: int, attempts: int, who: str) -> int:
    item = RateLimitItemPerMinute(limit)
    limiters = [SlidingWindowCounterRateLimiter(storage) for storage in storages]
    results = await asyncio.gather(
        *(limiters[index % len(limiters)].hit(item, "key", who) for index in range(attempts))
    )
    return sum(results)


async def test_concurrent_hits_pass_exactly_the_limit_in_the_store(store: Store) -> None:
    assert await hits_passed([StoreRateStorage(store)], 10, 40, unique("k")) == 10


async def test_two_store_connections_count_together(store: Store, store_url: str) -> None:
    """Two `Store`s on one database stand for two processes: neither lets more through."""
    other = await Store.connect(store_url, migrate=False)
    try:
        passed = await hits_passed([StoreRateStorage(store), StoreRateStorage(other)], 12, 48, unique("k"))
    finally:
        await other.close()
    assert passed == 12


async def test_concurrent_hits_pass_exactly_the_limit_in_redis() -> None:
    require_redis()
    (first, first_pool), (second, second_pool) = redis_storage(REDIS_URL), redis_storage(REDIS_URL)
    try:
        assert await hits_passed([first, second], 10, 40, unique("k")) == 10
    finally:
        await first_pool.aclose()
        await second_pool.aclose()


async def test_window_stats_report_what_is_left_and_when(store: Store) -> None:
    limiter = SlidingWindowCounterRateLimiter(StoreRateStorage(store))
    item = RateLimitItemPerMinute(5)
    fresh = await limiter.get_window_stats(item, "key", "fresh")
    assert fresh.remaining == 5
    for _ in range(3):
        assert await limiter.hit(item, "key", "k")
    stats = await limiter.get_window_stats(item, "key", "k")
    assert stats.remaining == 2
    assert time.time() < stats.reset_time <= time.time() + 120
    assert await limiter.test(item, "key", "k")
    await limiter.clear(item, "key", "k")
    assert (await limiter.get_window_stats(item, "key", "k")).remaining == 5


async def test_the_plain_counter_methods_serve_the_fixed_window(store: Store) -> None:
    storage = StoreRateStorage(store)
    limiter = FixedWindowRateLimiter(storage)
    item = RateLimitItemPerMinute(2)
    assert [await limiter.hit(item, "k") for _ in range(3)] == [True, True, False]
    key = item.key_for("k")
    assert await storage.get(key) == 3
    assert time.time() < await storage.get_expiry(key) <= time.time() + 61
    await storage.clear(key)
    assert await storage.get(key) == 0
    assert await storage.get_expiry(key) <= time.time()
    assert await storage.check()
    await storage.incr("a", 60)
    await storage.incr("b", 60)
    assert await storage.reset() == 2
    assert await storage.get("a") == 0


async def test_the_sweep_drops_only_windows_that_have_passed(store: Store) -> None:
    storage = StoreRateStorage(store)
    await storage.incr("passed", 0)  # expires now
    await storage.incr("live", 60)
    await asyncio.sleep(0.01)  # the passed counter's millisecond is behind us
    assert await sweep_expired(store) == 1
    assert await storage.get("live") == 1
    assert await sweep_expired(store) == 0


async def test_the_retention_sweep_drops_passed_windows(store: Store) -> None:
    storage = StoreRateStorage(store)
    await storage.incr("passed", 0)
    await storage.incr("live", 60)
    await asyncio.sleep(0.01)
    await RetentionTask(store, retention_seconds=3600).prune_once()
    assert await sweep_expired(store) == 0 and await storage.get("live") == 1


async def test_an_unreachable_counter_store_lets_requests_through_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limits = RateLimits(RatePolicy(per_key=1), *redis_storage(f"redis://127.0.0.1:{free_port()}/0"))
    with caplog.at_level(logging.WARNING, logger="noukai_server.api.rate_limits"):
        assert await limits.count(api_key()) is None
        assert await limits.count(api_key()) is None  # never refused while the counters are away
    await limits.aclose()
    assert "rate-limit counters unavailable; request let through" in caplog.text


async def test_the_key_is_counted_before_the_org(store: Store) -> None:
    """A key over its own limit spends nothing of the rate its org's other keys share."""
    org = unique("org")
    limits = RateLimits(RatePolicy(per_key=2, per_org=3), StoreRateStorage(store))
    noisy, quiet = api_key("aaaaaaaaaaaa", org), api_key("bbbbbbbbbbbb", org)
    verdicts = [await limits.count(noisy) for _ in range(5)]
    assert [v.allowed for v in verdicts if v is not None] == [True, True, False, False, False]
    first = await limits.count(quiet)
    assert first is not None and first.allowed and first.limit == 3 and first.remaining == 0
    refused = await limits.count(quiet)
    assert refused is not None and not refused.allowed and refused.limit == 3
    assert refused.headers()["Retry-After"] == str(refused.reset_seconds) and refused.reset_seconds >= 1


async def test_the_cost_of_the_check(store: Store, store_url: str) -> None:
    """Mean time of `RateLimits.count` (key and org limits: two hits and two window reads) on this
    store, and on Redis when it is here. Printed, not asserted: a measurement."""
    policy = RatePolicy(per_key=10_000, per_org=10_000)
    backends = [(store_url.split(":")[0], RateLimits(policy, StoreRateStorage(store)))]
    try:
        require_redis()
        backends.append(("redis", RateLimits(policy, *redis_storage(REDIS_URL))))
    except pytest.skip.Exception:
        pass
    rounds = 200
    for name, limits in backends:
        try:
            key = api_key(org=unique("bench"))
            await limits.count(key)  # connections opened, statements prepared
            started = time.perf_counter()
            remaining = []
            for _ in range(rounds):
                verdict = await limits.count(key)
                assert verdict is not None and verdict.allowed
                remaining.append(verdict.remaining)
            mean_ms = (time.perf_counter() - started) / rounds * 1000
            assert remaining[-1] == 10_000 - rounds - 1
            print(f"\nrate-limit check on {name}: {mean_ms:.3f} ms per request (mean of {rounds})")
        finally:
            await limits.aclose()
