"""The Redis bus's two connections: one that publishes, one that holds every subscription of the
process. Each runs in its own task, reconnects with backoff after any failure, and never lets a
Redis problem reach a caller: publishing only queues (bounded), and a lost subscription
connection is reopened with every channel subscribed again.

Why two connections and not a client pool: a connection in subscribe mode can do nothing else,
and one publishing connection fed from one queue keeps every run's batches in the order they were
published (a pool would send two batches of a run on two connections, and Redis could deliver
the second first)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import RedisError

log = logging.getLogger("noukai.bus.redis")

LINK_ERRORS = (RedisError, OSError)
"""What a lost, refused or timed-out connection raises (asyncio's TimeoutError is an OSError)."""

SUBSCRIBE_CHUNK = 1000
"""Channels per SUBSCRIBE command when many are (re)subscribed at once."""


class Outage:
    """Logs a Redis outage once when it starts and once when it ends, however many publishes,
    reconnection attempts and links it spans."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._down: set[str] = set()

    @property
    def down(self) -> bool:
        return bool(self._down)

    def lost(self, link: str, error: BaseException) -> None:
        if not self._down:
            log.warning(
                "Redis at %s is unreachable (%s: %s); live events, work wake-ups and cancel "
                "notices fall back to the store poll until it is back",
                self._where,
                type(error).__name__,
                error,
            )
        self._down.add(link)

    def restored(self, link: str) -> None:
        if link in self._down:
            self._down.discard(link)
            if not self._down:
                log.info("Redis at %s is reachable again; live delivery resumed", self._where)


class Backoff:
    """Exponential delays with jitter, so processes that lost Redis together do not reconnect
    in lockstep."""

    def __init__(self, first: float, limit: float) -> None:
        self._first = first
        self._limit = max(limit, first)
        self._next = first

    def reset(self) -> None:
        self._next = self._first

    async def sleep(self) -> None:
        delay = self._next * random.uniform(0.5, 1.0)
        self._next = min(self._next * 2, self._limit)
        await asyncio.sleep(delay)


class Publisher:
    """PUBLISHes whatever was queued, in order, pipelined: what queues up while one round trip is
    in flight goes out in the next, so a busy process pays one round trip per burst.

    The queue is bounded in bytes: while Redis is away the oldest messages are dropped (their
    events are in the store, where readers find them by polling)."""

    def __init__(
        self,
        pool: ConnectionPool,
        outage: Outage,
        *,
        health_interval: float,
        backoff: Backoff,
        queue_bytes: int,
        pipeline_max: int = 256,
    ) -> None:
        self._pool = pool
        self._outage = outage
        self._health_interval = health_interval
        self._backoff = backoff
        self._queue: deque[tuple[bytes, bytes]] = deque()
        self._queued_bytes = 0
        self._queue_limit = queue_bytes
        self._pipeline_max = pipeline_max
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        """Set while nothing is queued or in flight."""
        self._idle.set()
        self.connected = asyncio.Event()
        self.dropped = 0
        """Messages dropped: the queue was full, or a connection failed while sending them."""

    @property
    def queued(self) -> list[bytes]:
        """The messages waiting to be sent, oldest first."""
        return [message for _, message in self._queue]

    def put(self, channel: bytes, message: bytes) -> None:
        self._queue.append((channel, message))
        self._queued_bytes += len(message)
        while self._queued_bytes > self._queue_limit and len(self._queue) > 1:
            _, old = self._queue.popleft()
            self._queued_bytes -= len(old)
            self.dropped += 1
        self._idle.clear()
        self._wake.set()

    async def drained(self, timeout: float) -> bool:
        """Wait until everything queued was sent (True), or `timeout` passed (False)."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        connection: AbstractConnection | None = None
        retried = False
        """The batch in hand was put back once already: a second failure drops it."""
        try:
            while True:
                if connection is None:
                    connection = await self._connect()
                    if connection is None:
                        continue
                if not self._queue:
                    self._idle.set()
                    if not await self._wait_for_messages(connection):
                        connection = None
                    continue
                batch = self._take()
                try:
                    await _publish(connection, batch)
                except LINK_ERRORS as error:
                    log.debug("publishing to Redis failed: %r", error)
                    await connection.disconnect(nowait=True)
                    connection = None
                    self.connected.clear()
                    # Often a connection that went stale while idle. If the batch was not even
                    # written, nothing of it reached Redis: send it again, once, on a fresh
                    # connection. If it was, Redis may have taken part of it, and sending it
                    # again would deliver an earlier event after a later one: drop it (readers
                    # fill the gap from the store).
                    if isinstance(error, _Unsent) and not retried:
                        self._put_back(batch)
                        retried = True
                    else:
                        self.dropped += len(batch)
                        retried = False
                    continue
                retried = False
        finally:
            if connection is not None:
                await connection.disconnect(nowait=True)

    async def _connect(self) -> AbstractConnection | None:
        connection = _new_connection(self._pool)
        try:
            await connection.connect()  # type: ignore[no-untyped-call]
        except LINK_ERRORS as error:
            await connection.disconnect(nowait=True)
            self._outage.lost("publish", error)
            await self._backoff.sleep()
            return None
        self._backoff.reset()
        self.connected.set()
        self._outage.restored("publish")
        return connection

    async def _wait_for_messages(self, connection: AbstractConnection) -> bool:
        """Wait for a message; while none comes, PING every `health_interval` so a connection
        that died idle (a restarted Redis, a NAT that forgot us) is replaced before the next
        publish needs it. False if the connection failed."""
        self._wake.clear()
        try:
            async with asyncio.timeout(self._health_interval):
                await self._wake.wait()
            return True
        except TimeoutError:
            pass
        try:
            await connection.send_command("PING", check_health=False)
            await connection.read_response()
        except LINK_ERRORS as error:
            log.debug("idle Redis publishing connection failed its PING: %r", error)
            await connection.disconnect(nowait=True)
            self.connected.clear()
            return False
        return True

    def _take(self) -> list[tuple[bytes, bytes]]:
        count = min(len(self._queue), self._pipeline_max)
        batch = [self._queue.popleft() for _ in range(count)]
        self._queued_bytes -= sum(len(message) for _, message in batch)
        return batch

    def _put_back(self, batch: list[tuple[bytes, bytes]]) -> None:
        self._queue.extendleft(reversed(batch))
        self._queued_bytes += sum(len(message) for _, message in batch)


class _Unsent(RedisError):
    """The connection failed before the batch was written: none of it reached Redis."""


async def _publish(connection: AbstractConnection, batch: list[tuple[bytes, bytes]]) -> None:
    """One PUBLISH per message, pipelined in one write."""
    commands = [("PUBLISH", channel, message) for channel, message in batch]
    try:
        await connection.send_packed_command(connection.pack_commands(commands), check_health=False)
    except LINK_ERRORS as error:
        raise _Unsent(str(error)) from error
    for _ in batch:
        await connection.read_response()


def _new_connection(pool: ConnectionPool) -> AbstractConnection:
    """A connection of the pool's kind and settings (TLS, credentials, database, timeouts) that
    the pool does not track: each link owns and closes its own."""
    connection: AbstractConnection = pool.make_connection()  # type: ignore[no-untyped-call]
    return connection


Dispatch = Callable[[bytes, bytes], Awaitable[None]]


class Subscriber:
    """Every subscription of the process on one connection, ref-counted by channel: the first
    local subscriber of a channel SUBSCRIBEs it, the last one to leave UNSUBSCRIBEs it.

    `subscribe`/`unsubscribe` only record what the connection should listen to; a writer task
    sends the difference, so they never wait and never fail. After a reconnection every channel
    is subscribed again. A channel is *confirmed* once Redis acknowledged its SUBSCRIBE on the
    current connection: from then on, every message published to it reaches this process."""

    def __init__(
        self,
        pool: ConnectionPool,
        outage: Outage,
        dispatch: Dispatch,
        on_reconnected: Callable[[], Awaitable[None]],
        *,
        health_interval: float,
        backoff: Backoff,
    ) -> None:
        self._pool = pool
        self._outage = outage
        self._dispatch = dispatch
        self._on_reconnected = on_reconnected
        self._health_interval = health_interval
        self._backoff = backoff
        self._refs: dict[bytes, int] = {}
        # Dicts, not sets, for the insertion order: channels are subscribed in the order asked.
        self._to_subscribe: dict[bytes, None] = {}
        self._to_unsubscribe: dict[bytes, None] = {}
        self._in_flight: dict[bytes, int] = {}
        """SUBSCRIBEs sent on this connection and not yet acknowledged, by channel."""
        self._confirmed: set[bytes] = set()
        self._waiters: dict[bytes, list[asyncio.Future[bool]]] = {}
        self._wake = asyncio.Event()
        self._last_heard = 0.0
        self.connected = asyncio.Event()

    def subscribe(self, channel: bytes) -> None:
        count = self._refs.get(channel, 0)
        self._refs[channel] = count + 1
        if count == 0:
            if channel in self._to_unsubscribe:  # never sent: the server still has it
                del self._to_unsubscribe[channel]
            else:
                self._to_subscribe[channel] = None
                self._wake.set()

    def unsubscribe(self, channel: bytes) -> None:
        count = self._refs[channel] - 1
        if count > 0:
            self._refs[channel] = count
            return
        del self._refs[channel]
        self._resolve(channel, False)
        if channel in self._to_subscribe:  # never sent: nothing to undo
            del self._to_subscribe[channel]
        else:
            self._to_unsubscribe[channel] = None
            self._wake.set()

    def is_confirmed(self, channel: bytes) -> bool:
        return channel in self._confirmed

    async def confirmed(self, channel: bytes, timeout: float) -> bool:
        """Wait until `channel` is confirmed (True). False at once while disconnected (nothing
        would come anyway: readers poll the store), or after `timeout`."""
        if channel in self._confirmed:
            return True
        if not self.connected.is_set() or channel not in self._refs:
            return False
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(channel, [])
        waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError:
            return False
        finally:
            if waiter in waiters:
                waiters.remove(waiter)
                if not waiters and self._waiters.get(channel) is waiters:
                    del self._waiters[channel]

    def _resolve(self, channel: bytes, result: bool) -> None:
        for waiter in self._waiters.pop(channel, ()):
            if not waiter.done():
                waiter.set_result(result)

    async def run(self) -> None:
        was_connected = False
        while True:
            connection = _new_connection(self._pool)
            try:
                await connection.connect()  # type: ignore[no-untyped-call]
            except LINK_ERRORS as error:
                await connection.disconnect(nowait=True)
                self._outage.lost("subscribe", error)
                await self._backoff.sleep()
                continue
            self._backoff.reset()
            self._begin()
            self._outage.restored("subscribe")
            try:
                if was_connected:
                    await self._on_reconnected()
                was_connected = True
                await self._serve(connection)
            except LINK_ERRORS as error:
                log.debug("Redis subscription connection lost: %r", error)
            finally:
                self._end()
                await connection.disconnect(nowait=True)
            # Reconnect at once (most losses are one dropped connection); backoff only if that
            # fails.

    def _begin(self) -> None:
        """A fresh connection listens to nothing: everything wanted is to be subscribed."""
        self._to_subscribe = dict.fromkeys(self._refs)
        self._to_unsubscribe.clear()
        self._in_flight.clear()
        self._confirmed.clear()
        self._last_heard = asyncio.get_running_loop().time()
        self._wake.set()
        self.connected.set()

    def _end(self) -> None:
        self.connected.clear()
        self._confirmed.clear()
        for channel in list(self._waiters):
            self._resolve(channel, False)

    async def _serve(self, connection: AbstractConnection) -> None:
        """Read and write until the connection fails (raises)."""
        reader = asyncio.create_task(self._read(connection))
        writer = asyncio.create_task(self._write(connection))
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reader.cancel()
            writer.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
        for task in done:
            task.result()  # the error that ended it
        raise RedisError("the subscription connection ended")  # pragma: no cover - loops forever

    async def _read(self, connection: AbstractConnection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # math.inf: no read timeout; liveness is the writer's PING watchdog, so a read is
            # never cut in the middle of a message.
            reply: Any = await connection.read_response(timeout=float("inf"))
            self._last_heard = loop.time()
            if not isinstance(reply, list) or not reply:
                continue
            kind = reply[0]
            if kind == b"message":
                await self._dispatch(reply[1], reply[2])
            elif kind == b"subscribe":
                self._acknowledged(reply[1])

    def _acknowledged(self, channel: bytes) -> None:
        left = self._in_flight.get(channel, 0) - 1
        if left > 0:  # an earlier SUBSCRIBE of a channel dropped and taken again since
            self._in_flight[channel] = left
            return
        self._in_flight.pop(channel, None)
        if channel in self._refs and channel not in self._to_unsubscribe:
            self._confirmed.add(channel)
            self._resolve(channel, True)

    async def _write(self, connection: AbstractConnection) -> None:
        loop = asyncio.get_running_loop()
        tick = self._health_interval / 2
        while True:
            self._wake.clear()
            await self._send_changes(connection)
            silent = loop.time() - self._last_heard
            if silent > self._health_interval + tick:
                raise RedisError(f"no reply from Redis for {silent:.1f} s")
            if silent >= tick:
                await connection.send_command("PING", check_health=False)
            try:
                async with asyncio.timeout(tick):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _send_changes(self, connection: AbstractConnection) -> None:
        if self._to_unsubscribe:
            channels = list(self._to_unsubscribe)
            self._to_unsubscribe.clear()
            self._confirmed.difference_update(channels)
            for start in range(0, len(channels), SUBSCRIBE_CHUNK):
                chunk = channels[start : start + SUBSCRIBE_CHUNK]
                await connection.send_command("UNSUBSCRIBE", *chunk, check_health=False)
        if self._to_subscribe:
            channels = list(self._to_subscribe)
            self._to_subscribe.clear()
            for channel in channels:
                self._in_flight[channel] = self._in_flight.get(channel, 0) + 1
            for start in range(0, len(channels), SUBSCRIBE_CHUNK):
                chunk = channels[start : start + SUBSCRIBE_CHUNK]
                await connection.send_command("SUBSCRIBE", *chunk, check_health=False)
