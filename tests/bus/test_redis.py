"""The Redis bus against a real Redis: two `RedisBus` instances stand in for two processes (each
test on channels of its own prefix). Events, wake-ups and cancel notices cross between them;
a process's own subscribers are served without Redis; subscriptions share one channel; a Redis
outage (a private redis-server killed and restarted) neither fails nor stalls a publisher, and
the bus recovers; a follower reads a run written through another instance with no gap or
duplicate, across a Redis restart."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as redis_client
from redis.asyncio.connection import ConnectionPool

from noukai.types.events import StepOutputFields
from noukai_server.bus import LogEvent, RedisBus
from noukai_server.bus.factory import open_bus
from noukai_server.bus.redis import _RedisSubscription, check_redis_url, redacted
from noukai_server.bus.redis_links import Backoff, Outage, Publisher
from noukai_server.bus.redis_wire import WireError, decode_batch, encode_batch, encode_notice
from noukai_server.eventlog.follower import RunEventFollower
from noukai_server.eventlog.writer import RunLogWriter
from noukai_server.store import EventRow, RunHead, RunUpdate, Store
from tests._services import REDIS_URL, require_redis
from tests.bus._redis_helpers import (
    HANG_GUARD,
    FreezingProxy,
    PrivateRedis,
    free_port,
    receive,
    receive_through,
    redis_server_executable,
    until,
)
from tests.store.conftest import make_run

pytestmark = pytest.mark.anyio

OpenBus = Callable[..., Awaitable[RedisBus]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
async def open_redis_bus(prefix: str) -> AsyncIterator[OpenBus]:
    """Opens buses on this test's prefix (the shared Redis unless a URL is given) and closes them
    all at the end."""
    async with AsyncExitStack() as stack:

        async def opener(url: str | None = None, **options: float) -> RedisBus:
            if url is None:
                require_redis()
            bus = await RedisBus.open(url or REDIS_URL, prefix=prefix, **options)
            stack.push_async_callback(bus.aclose)
            return bus

        yield opener


@pytest.fixture
async def raw_redis() -> AsyncIterator[redis_client.Redis]:
    require_redis()
    client = redis_client.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(redis_server_executable(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def events(run_id: str, *seqs: int) -> list[LogEvent]:
    return [LogEvent.create(run_id, seq, "token", b'{"seq":%d}' % seq) for seq in seqs]


async def subscribers(client: redis_client.Redis, channel: str) -> int:
    [(_, count)] = await client.pubsub_numsub(channel)
    return int(count)


# --- URLs and start-up ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://127.0.0.1:6379/0", "must start with redis:// or rediss://"),
        ("127.0.0.1:6379", "must start with redis:// or rediss://"),
        ("unix:///tmp/redis.sock", "must start with redis:// or rediss://"),
        ("redis://", "names no host"),
        ("redis://127.0.0.1:port/0", "invalid port"),
        ("redis://127.0.0.1:6379/cache", "not a number"),
        ("redis://127.0.0.1:6379/0?socket_timeout=soon", "is not usable: Invalid value for 'socket_timeout'"),
    ],
)
async def test_a_bad_url_is_refused_naming_it(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as refused:
        await open_bus(url)
    assert repr(url) in str(refused.value)


async def test_a_refused_url_never_shows_its_password() -> None:
    url = "http://admin:hunter2@cache.internal:6379/0"
    with pytest.raises(ValueError) as refused:
        check_redis_url(url)
    assert "hunter2" not in str(refused.value)
    assert "admin:***@cache.internal:6379" in str(refused.value)
    assert redacted("redis://cache:6379/0") == "redis://cache:6379/0"


def test_a_rediss_url_connects_over_tls_with_its_credentials() -> None:
    bus = RedisBus("rediss://reader:pw@cache.internal:6380/3")  # not started: nothing connects
    connection = bus._pool.make_connection()  # type: ignore[no-untyped-call]
    assert type(connection).__name__ == "SSLConnection"
    assert (connection.host, connection.port, connection.db) == ("cache.internal", 6380, 3)
    assert (connection.username, connection.password) == ("reader", "pw")
    assert bus.url == "rediss://reader:***@cache.internal:6380/3"


async def test_open_bus_returns_a_connected_redis_bus() -> None:
    require_redis()
    bus = await open_bus(REDIS_URL)
    try:
        assert isinstance(bus, RedisBus)
        assert bus.connected
    finally:
        await bus.aclose()


async def test_url_options_cannot_change_what_the_bus_relies_on(open_redis_bus: OpenBus) -> None:
    require_redis()
    url = f"{REDIS_URL}?protocol=3&decode_responses=true&health_check_interval=1"
    bus, remote = await open_redis_bus(url), await open_redis_bus()
    subscription = bus.subscribe("r")
    assert await subscription.ready(HANG_GUARD)
    await remote.publish("r", events("r", 1))
    assert [e.seq for e in await receive(subscription, 1)] == [1]


async def test_an_unreachable_redis_starts_degraded_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"  # nothing listens there
    caplog.set_level(logging.WARNING, logger="noukai.bus.redis")
    bus = await open_bus(url)
    try:
        assert isinstance(bus, RedisBus) and not bus.connected
        subscription = bus.subscribe("r")
        assert await subscription.ready(1.0) is False  # at once: readers go to the store
        async with asyncio.timeout(1.0):  # publishing neither fails nor waits for Redis
            for seq in range(1, 101):
                await bus.publish("r", events("r", seq))
        assert [e.seq for e in subscription.take_nowait()] == list(range(1, 101))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await bus.wait_for_work(0.2)
        assert 0.15 <= loop.time() - started < 2.0
        unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(unreachable) == 1  # once per outage, not per publish or reconnection attempt
        assert any("not reachable yet" in r.getMessage() for r in caplog.records)
        assert "secret" not in caplog.text
    finally:
        async with asyncio.timeout(HANG_GUARD):
            await bus.aclose()


# --- Between processes ----------------------------------------------------------------------------


async def test_events_cross_to_the_other_instance_in_order_one_publish_per_batch(
    open_redis_bus: OpenBus, raw_redis: redis_client.Redis, prefix: str
) -> None:
    writer, reader = await open_redis_bus(), await open_redis_bus()
    subscription = reader.subscribe("run-1")
    other_run = reader.subscribe("run-2")
    assert await subscription.ready(HANG_GUARD)
    watcher = raw_redis.pubsub()
    await watcher.subscribe(f"{prefix}:run:run-1")
    batches = [events("run-1", 1, 2, 3), events("run-1", 4), events("run-1", 5, 6)]
    for batch in batches:
        await writer.publish("run-1", batch)
    received = await receive(subscription, 6)
    assert [(e.seq, e.type, e.data, e.frame) for e in received] == [
        (e.seq, e.type, e.data, e.frame) for batch in batches for e in batch
    ]
    assert other_run.take_nowait() == []
    # On the wire: one message per published batch, each decoding to exactly that batch.
    published: list[list[int]] = []
    async with asyncio.timeout(HANG_GUARD):
        while len(published) < len(batches):
            message = await watcher.get_message(timeout=HANG_GUARD)
            if message is not None and message["type"] == "message":
                _, decoded = decode_batch("run-1", message["data"])
                published.append([e.seq for e in decoded])
    assert published == [[1, 2, 3], [4], [5, 6]]
    await watcher.aclose()


async def test_own_subscribers_are_served_at_once_and_the_echo_is_dropped(open_redis_bus: OpenBus) -> None:
    first, second = await open_redis_bus(), await open_redis_bus()
    local = first.subscribe("r")
    remote = second.subscribe("r")
    assert await local.ready(HANG_GUARD) and await remote.ready(HANG_GUARD)
    await first.publish("r", events("r", 1, 2))
    # No await between: delivered in the publish itself, without a Redis round trip.
    assert [e.seq for e in local.take_nowait()] == [1, 2]
    assert [e.seq for e in await receive(remote, 2)] == [1, 2]
    # Redis has now sent `first` its own echo; the next message it sends there comes after it.
    await second.publish("r", events("r", 3))
    assert [e.seq for e in await receive(remote, 1)] == [3]
    assert [e.seq for e in await receive(local, 1)] == [3]  # the echo of 1, 2 was dropped


async def test_local_delivery_needs_no_redis(open_redis_bus: OpenBus) -> None:
    bus = await open_redis_bus(f"redis://127.0.0.1:{free_port()}/0", connect_wait=0.05)
    first, second = bus.subscribe("r"), bus.subscribe("r")
    await bus.publish("r", events("r", 1))
    await bus.publish("r", events("r", 2, 3))
    assert [e.seq for e in first.take_nowait()] == [1, 2, 3]
    assert [e.seq for e in second.take_nowait()] == [1, 2, 3]
    cancelled: list[str] = []
    bus.on_cancel(cancelled.append)
    await bus.announce_cancel("r")
    assert cancelled == ["r"]
    await bus.announce_work()
    async with asyncio.timeout(1.0):
        await bus.wait_for_work(HANG_GUARD)  # already announced: returns at once


async def test_local_subscribers_share_one_channel_and_the_last_one_unsubscribes(
    open_redis_bus: OpenBus, raw_redis: redis_client.Redis, prefix: str
) -> None:
    bus, remote = await open_redis_bus(), await open_redis_bus()
    channel = f"{prefix}:run:r"
    first, second, third = bus.subscribe("r"), bus.subscribe("r"), bus.subscribe("r")
    assert await third.ready(HANG_GUARD)
    assert await subscribers(raw_redis, channel) == 1
    await remote.publish("r", events("r", 1))
    for subscription in (first, second, third):
        assert [e.seq for e in await receive(subscription, 1)] == [1]
    await first.aclose()
    await second.aclose()
    # A barrier: this SUBSCRIBE goes out after any UNSUBSCRIBE would have, so once Redis confirms
    # it, Redis has seen everything the bus sent about `r`.
    barrier = bus.subscribe("barrier")
    assert await barrier.ready(HANG_GUARD)
    assert await subscribers(raw_redis, channel) == 1
    await remote.publish("r", events("r", 2))
    assert [e.seq for e in await receive(third, 1)] == [2]
    await third.aclose()

    async def unsubscribed() -> bool:
        return await subscribers(raw_redis, channel) == 0

    await until(unsubscribed, "the UNSUBSCRIBE of the last local subscriber")
    again = bus.subscribe("r")  # and a channel dropped can be taken again
    assert await again.ready(HANG_GUARD)
    assert await subscribers(raw_redis, channel) == 1


async def test_ten_thousand_streams_share_the_two_connections_of_the_process(
    open_redis_bus: OpenBus, raw_redis: redis_client.Redis, prefix: str
) -> None:
    bus, remote = await open_redis_bus(), await open_redis_bus()
    streams = [bus.subscribe(f"run-{n}") for n in range(10_000)]
    assert await streams[-1].ready(HANG_GUARD)  # subscribed in order: the others are too
    clients = [c for c in await raw_redis.client_list() if c["name"] == f"{prefix}-bus"]
    # Two buses, each one publishing and one subscription connection.
    assert len(clients) == 4
    assert sorted(int(c["sub"]) for c in clients) == [0, 0, 0, 10_000]
    await remote.publish("run-4321", events("run-4321", 1))
    assert [e.seq for e in await receive(streams[4321], 1)] == [1]
    assert all(s.take_nowait() == [] for s in streams)
    for stream in streams:
        await stream.aclose()

    async def all_unsubscribed() -> bool:
        subscribed = [c for c in await raw_redis.client_list() if c["name"] == f"{prefix}-bus"]
        return sorted(int(c["sub"]) for c in subscribed) == [0, 0, 0, 0]

    await until(all_unsubscribed, "every channel to be unsubscribed")


async def test_a_channel_dropped_and_taken_again_before_redis_answers_stays_subscribed(
    open_redis_bus: OpenBus,
) -> None:
    bus, remote = await open_redis_bus(), await open_redis_bus()
    for _ in range(20):  # SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE... in flight together
        await bus.subscribe("r").aclose()
        await asyncio.sleep(0)
    kept = bus.subscribe("r")
    assert await kept.ready(HANG_GUARD)
    await remote.publish("r", events("r", 1))
    assert [e.seq for e in await receive(kept, 1)] == [1]


async def test_announce_work_wakes_a_worker_of_the_other_instance(
    open_redis_bus: OpenBus, raw_redis: redis_client.Redis, prefix: str
) -> None:
    api, worker = await open_redis_bus(), await open_redis_bus()
    loop = asyncio.get_running_loop()
    waiting = asyncio.create_task(worker.wait_for_work(HANG_GUARD))

    async def listening() -> bool:
        return await subscribers(raw_redis, f"{prefix}:work") == 1

    await until(listening, "the worker to listen for work")
    started = loop.time()
    await api.announce_work()
    await waiting
    assert loop.time() - started < 1.0  # a wake-up, not the end of the wait (HANG_GUARD)


async def test_announce_cancel_reaches_the_listener_of_the_other_instance(
    open_redis_bus: OpenBus, raw_redis: redis_client.Redis, prefix: str
) -> None:
    api, worker = await open_redis_bus(), await open_redis_bus()
    heard = asyncio.Event()
    cancelled: list[str] = []
    own: list[str] = []

    def listener(run_id: str) -> None:
        cancelled.append(run_id)
        heard.set()

    worker.on_cancel(listener)
    api.on_cancel(own.append)

    async def listening() -> bool:
        return await subscribers(raw_redis, f"{prefix}:cancel") == 2

    await until(listening, "both instances to listen for cancel notices")
    await api.announce_cancel("run-9")
    async with asyncio.timeout(HANG_GUARD):
        await heard.wait()
    assert cancelled == ["run-9"]
    # The announcing instance heard it once, locally; a notice from the other one comes after its
    # echo, so once that arrives the echo would have too.
    await worker.announce_cancel("run-10")
    await until(lambda: len(own) >= 2, "the second notice")
    assert own == ["run-9", "run-10"]


async def test_unreadable_messages_are_dropped_and_the_bus_goes_on(
    open_redis_bus: OpenBus, raw_redis: redis_client.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="noukai.bus.redis")
    bus, remote = await open_redis_bus(), await open_redis_bus()
    subscription = bus.subscribe("r")
    assert await subscription.ready(HANG_GUARD)
    channel = f"{prefix}:run:r"
    await raw_redis.publish(channel, b"\x09" + b"x" * 20)  # a future format version
    await raw_redis.publish(channel, encode_batch(b"12345678", events("r", 1))[:-3])  # truncated
    await raw_redis.publish(channel, encode_notice(b"12345678"))  # no event count
    await remote.publish("r", events("r", 1))
    assert [e.seq for e in await receive(subscription, 1)] == [1]
    assert sum("cannot read" in r.getMessage() for r in caplog.records) == 1


def test_the_wire_format_round_trips_and_rejects_garbage() -> None:
    batch = [LogEvent.create("r", 7, "step_output", b'{"x":"\xc3\xa9"}'), *events("r", 8)]
    origin, decoded = decode_batch("r", encode_batch(b"abcdefgh", batch))
    assert origin == b"abcdefgh" and decoded == batch
    assert [e.frame for e in decoded] == [e.frame for e in batch]
    for garbage in (b"", b"\x01abc", encode_batch(b"abcdefgh", batch) + b"!"):
        with pytest.raises(WireError):
            decode_batch("r", garbage)


# --- Outages ---------------------------------------------------------------------------------------


async def test_a_redis_outage_neither_fails_nor_stalls_publishing_and_the_bus_recovers(
    open_redis_bus: OpenBus, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="noukai.bus.redis")
    options = {"health_interval": 1.0, "max_backoff": 0.2}
    writer = await open_redis_bus(private_redis.url, **options)
    reader = await open_redis_bus(private_redis.url, **options)
    subscription = reader.subscribe("r")
    assert await subscription.ready(HANG_GUARD)
    assert subscription.assured  # confirmed on a live link: readers may poll rarely
    assert not subscription.take_resync()
    await writer.publish("r", events("r", 1))
    assert [e.seq for e in await receive(subscription, 1)] == [1]

    private_redis.kill()
    await until(lambda: not writer.connected and not reader.connected, "the bus to notice")
    assert not subscription.assured
    async with asyncio.timeout(1.0):
        for seq in range(2, 502):
            await writer.publish("r", events("r", seq))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await reader.wait_for_work(0.3)  # degraded: the wait runs out, as a poll interval would
    assert 0.25 <= loop.time() - started < 2.0
    assert await subscription.ready(0.5) is False  # at once while disconnected

    private_redis.start()
    assert await writer.wait_connected(HANG_GUARD) and await reader.wait_connected(HANG_GUARD)
    # What was published while the link was down may be lost: readers are told to read the
    # store now, once.
    assert subscription.take_resync() and not subscription.take_resync()
    assert await subscription.ready(HANG_GUARD)  # the channel was subscribed again
    assert subscription.assured
    await writer.publish("r", events("r", 502))
    received = await receive_through(subscription, 502)
    assert received[-1].seq == 502
    # In order: whatever was still queued when Redis came back arrives before 502, never after.
    seqs = [e.seq for e in received]
    assert seqs == sorted(seqs)
    messages = [r.getMessage() for r in caplog.records]
    # Once per outage and bus (each bus stands for a process), not per publish or retry.
    assert sum("unreachable" in m for m in messages) == 2
    assert sum("reachable again" in m for m in messages) == 2


async def test_what_waits_to_be_published_is_bounded_and_keeps_the_newest() -> None:
    pool = ConnectionPool.from_url(f"redis://127.0.0.1:{free_port()}/0")
    publisher = Publisher(
        pool, Outage("test"), health_interval=1.0, backoff=Backoff(0.05, 0.1), queue_bytes=1_000
    )
    for n in range(100):  # never started: nothing leaves, as while Redis is away
        publisher.put(b"channel", b"%03d" % n + b"." * 97)
    assert [m[:3] for m in publisher.queued] == [b"%03d" % n for n in range(90, 100)]
    assert publisher.dropped == 90
    publisher.put(b"channel", b"x" * 5_000)  # a message over the bound alone is still sent
    assert publisher.queued == [b"x" * 5_000] and publisher.dropped == 100
    await pool.disconnect()


async def test_a_silent_connection_is_detected_and_replaced(open_redis_bus: OpenBus) -> None:
    """A link that goes silent without closing (a dead route, a NAT that forgot it, a frozen
    host) is dropped by the PING watchdog rather than waited on forever, and replaced."""
    require_redis()
    proxy = FreezingProxy(urlsplit(REDIS_URL).port or 6379)
    await proxy.start()
    try:
        options = {"health_interval": 0.4, "max_backoff": 0.2}
        bus = await open_redis_bus(proxy.url, **options)
        remote = await open_redis_bus(**options)
        subscription = bus.subscribe("r")
        assert await subscription.ready(HANG_GUARD)
        proxy.freeze()
        await until(lambda: not bus.connected, "the watchdog to drop the silent link")
        proxy.thaw()
        assert await bus.wait_connected(HANG_GUARD)
        assert await subscription.ready(HANG_GUARD)
        await remote.publish("r", events("r", 1))
        assert [e.seq for e in await receive(subscription, 1)] == [1]
    finally:
        await proxy.close()


# --- End to end: a writer on one instance, a follower on another -----------------------------------


def output(n: int) -> StepOutputFields:
    return {"stepId": "a", "stepIndex": 0, "attempt": 1, "outputData": f"w{n}"}


async def test_a_follower_reads_a_run_written_through_another_instance_across_a_restart(
    open_redis_bus: OpenBus, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    options = {"health_interval": 1.0, "max_backoff": 0.2}
    worker_bus = await open_redis_bus(private_redis.url, **options)
    api_bus = await open_redis_bus(private_redis.url, **options)
    async with await Store.connect(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}") as store:
        await make_run(store)
        run = await store.claim_next_run("w1", 30)
        assert run is not None
        writer = RunLogWriter(store, worker_bus, run.id, run.attempt, run.last_seq)
        for n in range(1, 11):  # before the reader subscribes: it finds these in the store
            await writer.emit("step_output", output(n))
        await writer.flush()
        # A poll interval no test waits out: every later event must come over Redis (or, after
        # the restart, by the gap it leaves being filled from the store when the next arrives).
        follower = RunEventFollower(store, api_bus, run.id, poll_interval=HANG_GUARD * 4)
        seen: list[int] = []

        async def read_until(seq: int) -> None:
            async with asyncio.timeout(HANG_GUARD):
                while not seen or seen[-1] < seq:
                    seen.extend(e.seq for e in await follower.next_batch(HANG_GUARD))

        async with follower:
            await read_until(10)
            for n in range(11, 61):
                await writer.emit("step_output", output(n))
                if n % 10 == 0:
                    await writer.flush()
            await read_until(60)

            private_redis.kill()
            await until(lambda: not api_bus.connected, "the reader to notice")
            for n in range(61, 81):  # stored, and lost on the bus
                await writer.emit("step_output", output(n))
            await writer.flush()
            private_redis.start()
            assert await worker_bus.wait_connected(HANG_GUARD)
            assert await api_bus.wait_connected(HANG_GUARD)
            subscription = follower._subscription
            assert subscription is not None and await subscription.ready(HANG_GUARD)  # type: ignore[attr-defined]

            for n in range(81, 100):
                await writer.emit("step_output", output(n))
            await writer.emit_with_update("step_output", output(100), RunUpdate(status="completed"))
            await read_until(100)
    assert seen == list(range(1, 101))  # no gap, no duplicate, in order


class _RecordingRedisBus(RedisBus):
    """A Redis bus that keeps the subscriptions it hands out, for the test to inspect."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.handed_out: list[_RedisSubscription] = []

    def subscribe(self, run_id: str) -> _RedisSubscription:
        subscription = super().subscribe(run_id)
        self.handed_out.append(subscription)
        return subscription


class _StoreCheckingTheSubscription:
    """The store, noting at each log read whether the reader's subscription was in effect."""

    def __init__(self, store: Store, bus: _RecordingRedisBus) -> None:
        self._store = store
        self._bus = bus
        self.in_effect_at_reads: list[bool] = []

    async def get_run_head(self, run_id: str) -> RunHead | None:
        return await self._store.get_run_head(run_id)

    async def read_events(
        self, run_id: str, after_seq: int = 0, limit: int | None = None, *, timestamps: bool = True
    ) -> list[EventRow]:
        # `ready(0)` answers without waiting: confirmed by Redis already, or not.
        self.in_effect_at_reads.append(await self._bus.handed_out[-1].ready(0))
        return await self._store.read_events(run_id, after_seq, limit, timestamps=timestamps)


async def test_a_follower_reads_the_store_only_once_redis_confirmed_its_subscription(
    prefix: str, tmp_path: Path
) -> None:
    """Otherwise an event published between the store read and Redis taking the SUBSCRIBE would
    reach the reader only by its next poll."""
    require_redis()
    bus = await _RecordingRedisBus.open(REDIS_URL, prefix=prefix)
    try:
        async with await Store.connect(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}") as store:
            run = await make_run(store)
            checking = _StoreCheckingTheSubscription(store, bus)
            async with RunEventFollower(checking, bus, run.id):  # type: ignore[arg-type]
                pass
            assert checking.in_effect_at_reads == [True]
    finally:
        await bus.aclose()
