"""The bus for scaled-out deployments: API and worker processes sharing PostgreSQL and Redis.

Redis pub/sub carries three kinds of messages between processes: a run's stored events (channel
`{prefix}:run:{run_id}`, one PUBLISH per stored batch), work announcements (`{prefix}:work`) and
cancel notices (`{prefix}:cancel`). Pub/sub keeps nothing in Redis, and nothing here needs it
to: the store holds every event, and readers that miss a message find it there (see
`eventlog/follower.py`). Why pub/sub and not Streams: docs/architecture.md, "The Redis bus".

Within a process, the bus is a `MemoryBus`: a publish reaches the process's own subscribers at
once, with no round trip, and goes to Redis for the others; each message carries the id of the
bus that sent it, so the echo that Redis sends back is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio.connection import ConnectionPool, parse_url

from noukai_server.bus.base import CancelListener, LogEvent
from noukai_server.bus.memory import MemoryBus, MemorySubscription
from noukai_server.bus.redis_links import Backoff, Outage, Publisher, Subscriber
from noukai_server.bus.redis_wire import (
    ORIGIN_SIZE,
    WireError,
    decode_batch,
    decode_notice,
    encode_batch,
    encode_notice,
)

log = logging.getLogger("noukai.bus.redis")

CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 5.0
"""A Redis that accepted a command and says nothing for this long is treated as gone."""
HEALTH_INTERVAL = 10.0
"""Idle connections are PINGed about this often; a dead one is replaced within ~1.5x this."""
QUEUE_BYTES = 16 * 1024 * 1024
"""What may wait to be published while Redis is slow or away; beyond it the oldest is dropped."""


def redacted(url: str) -> str:
    """The URL with its password masked, for errors and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def check_redis_url(url: str) -> None:
    """Raise ValueError, naming the URL (password masked), unless it is a usable redis:// or
    rediss:// URL: a typo in the configuration must stop the server, not degrade it."""
    shown = redacted(url)
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"the Redis URL {shown!r} must start with redis:// or rediss://")
    if not parts.hostname:
        raise ValueError(f"the Redis URL {shown!r} names no host")
    try:
        _ = parts.port  # parsing it is the check
    except ValueError:
        raise ValueError(f"the Redis URL {shown!r} has an invalid port") from None
    database = parts.path.lstrip("/")
    if database and not database.isdigit():
        raise ValueError(f"the Redis URL {shown!r} names database {database!r}, not a number")


def _pool(url: str, client_name: str) -> ConnectionPool:
    """A pool (the links take their own connections from it) of the URL's kind: TLS for
    rediss://, its credentials, database and query options, except for what the links rely on."""
    try:
        options: dict[str, Any] = dict(parse_url(url))
    except (ValueError, TypeError) as error:  # its query string: `?socket_timeout=soon`
        raise ValueError(f"the Redis URL {redacted(url)!r} is not usable: {error}") from None
    options.setdefault("socket_connect_timeout", CONNECT_TIMEOUT)
    options.setdefault("socket_timeout", SOCKET_TIMEOUT)
    options.setdefault("socket_keepalive", True)
    # Whatever the query string says: RESP2, where pub/sub messages are plain replies on the
    # subscription connection (RESP3 routes them to a push handler); bytes, not str; and no
    # client-side PING before commands (a subscribed connection answers a PING with a message,
    # and the links watch liveness themselves).
    options.update(protocol=2, decode_responses=False, health_check_interval=0)
    options["client_name"] = client_name  # what an operator sees in CLIENT LIST
    return ConnectionPool(**options)


class _RedisSubscription:
    """A local subscription (the `MemoryBus` one) that also holds its run's Redis channel."""

    __slots__ = ("_bus", "_channel", "_closed", "_local")

    def __init__(self, bus: RedisBus, channel: bytes, local: MemorySubscription) -> None:
        self._bus = bus
        self._channel = channel
        self._local = local
        self._closed = False

    def __aiter__(self) -> _RedisSubscription:
        return self

    async def __anext__(self) -> LogEvent:
        return await self._local.__anext__()

    def take_nowait(self) -> list[LogEvent]:
        return self._local.take_nowait()

    async def wait(self, timeout: float) -> bool:
        return await self._local.wait(timeout)

    def take_resync(self) -> bool:
        return self._local.take_resync()

    @property
    def assured(self) -> bool:
        """Every event of the run published from now on reaches this subscription, unless the
        link drops, after which `take_resync` says so: Redis confirmed the channel on the
        current connection and the publishing link is up."""
        return self._bus.connected and self._bus._subscriber.is_confirmed(self._channel)

    async def ready(self, timeout: float) -> bool:
        """Wait until Redis confirmed the run's channel: from then on, every event published by
        any process reaches this subscription. False after `timeout`, and at once while Redis
        is unreachable (the reader then relies on the store)."""
        if self._closed:
            return False
        return await self._bus._subscriber.confirmed(self._channel, timeout)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._local.aclose()
            self._bus._subscriber.unsubscribe(self._channel)


class RedisBus:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "noukai",
        health_interval: float = HEALTH_INTERVAL,
        max_backoff: float = 5.0,
        queue_bytes: int = QUEUE_BYTES,
    ) -> None:
        """A bus on the Redis at `url`; nothing connects until `start`. Processes that share a
        `prefix` (and a Redis database) hear each other; tests use one prefix each."""
        check_redis_url(url)
        self.url = redacted(url)
        self._origin = os.urandom(ORIGIN_SIZE)
        self._run_prefix = f"{prefix}:run:".encode()
        self._work_channel = f"{prefix}:work".encode()
        self._cancel_channel = f"{prefix}:cancel".encode()
        self._local = MemoryBus()
        self._pool = _pool(url, client_name=f"{prefix}-bus")
        outage = Outage(self.url)
        self._publisher = Publisher(
            self._pool,
            outage,
            health_interval=health_interval,
            backoff=Backoff(0.05, max_backoff),
            queue_bytes=queue_bytes,
        )
        self._subscriber = Subscriber(
            self._pool,
            outage,
            self._dispatch,
            self._reconnected,
            health_interval=health_interval,
            backoff=Backoff(0.05, max_backoff),
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._listening_for_work = False
        self._listening_for_cancels = False
        self._bad_message_logged = False
        self._closed = False

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        connect_wait: float = CONNECT_TIMEOUT,
        prefix: str = "noukai",
        health_interval: float = HEALTH_INTERVAL,
        max_backoff: float = 5.0,
    ) -> Self:
        """Start a bus and wait up to `connect_wait` for Redis. An unreachable Redis is logged
        and the bus starts degraded (it keeps trying): see docs/architecture.md for why."""
        bus = cls(url, prefix=prefix, health_interval=health_interval, max_backoff=max_backoff)
        bus.start()
        if not await bus.wait_connected(connect_wait):
            log.warning(
                "Redis at %s is not reachable yet; starting without it (events reach readers by "
                "the store poll) and retrying in the background",
                bus.url,
            )
        return bus

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._publisher.run(), name="redis-bus-publisher"),
                asyncio.create_task(self._subscriber.run(), name="redis-bus-subscriber"),
            ]

    async def wait_connected(self, timeout: float) -> bool:
        """True once both connections are up; False if they are not within `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                await self._publisher.connected.wait()
                await self._subscriber.connected.wait()
        except TimeoutError:
            return False
        return True

    @property
    def connected(self) -> bool:
        return self._publisher.connected.is_set() and self._subscriber.connected.is_set()

    async def publish(self, run_id: str, events: Sequence[LogEvent]) -> None:
        if not events:
            return
        await self._local.publish(run_id, events)
        if not self._closed:
            channel = self._run_prefix + run_id.encode()
            self._publisher.put(channel, encode_batch(self._origin, events))

    def subscribe(self, run_id: str) -> _RedisSubscription:
        channel = self._run_prefix + run_id.encode()
        local = self._local.subscribe(run_id)
        self._subscriber.subscribe(channel)
        return _RedisSubscription(self, channel, local)

    async def announce_work(self) -> None:
        await self._local.announce_work()
        if not self._closed:
            self._publisher.put(self._work_channel, encode_notice(self._origin))

    async def wait_for_work(self, max_wait: float) -> None:
        if not self._listening_for_work:  # only processes with workers hear announcements
            self._listening_for_work = True
            self._subscriber.subscribe(self._work_channel)
        await self._local.wait_for_work(max_wait)

    async def announce_cancel(self, run_id: str) -> None:
        await self._local.announce_cancel(run_id)
        if not self._closed:
            self._publisher.put(self._cancel_channel, encode_notice(self._origin, run_id.encode()))

    def on_cancel(self, listener: CancelListener) -> None:
        if not self._listening_for_cancels:
            self._listening_for_cancels = True
            self._subscriber.subscribe(self._cancel_channel)
        self._local.on_cancel(listener)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        # A moment for what is queued (say, a run's last events) to reach the other processes;
        # whatever does not, they read from the store.
        if self._publisher.connected.is_set():
            await self._publisher.drained(1.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._local.aclose()
        await self._pool.disconnect()

    async def _dispatch(self, channel: bytes, message: bytes) -> None:
        """A message from Redis: hand it to this process's subscribers or listeners, unless this
        bus sent it (it was delivered here when it was published)."""
        if message[1 : 1 + ORIGIN_SIZE] == self._origin:
            return
        try:
            if channel.startswith(self._run_prefix):
                run_id = channel[len(self._run_prefix) :].decode()
                _, events = decode_batch(run_id, message)
                await self._local.publish(run_id, events)
            elif channel == self._work_channel:
                decode_notice(message)
                await self._local.announce_work()
            elif channel == self._cancel_channel:
                _, run_id_bytes = decode_notice(message)
                await self._local.announce_cancel(run_id_bytes.decode())
        except (WireError, UnicodeDecodeError) as error:
            if not self._bad_message_logged:  # once: a newer process would send nothing else
                self._bad_message_logged = True
                log.warning("dropping Redis bus messages this version cannot read: %s", error)
        except Exception:
            # A cancel listener's bug must not take the subscription connection down with it.
            log.exception("a Redis bus message handler failed")

    async def _reconnected(self) -> None:
        """Messages sent while the subscription was down are lost: every reader reads the store
        now (its events), and the workers look for claimable runs now (its announcements),
        rather than at their next poll."""
        self._local.resync_all()
        if self._listening_for_work:
            await self._local.announce_work()
