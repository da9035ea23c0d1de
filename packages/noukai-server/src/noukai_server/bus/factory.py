"""Choosing the bus for a deployment: in-process for the embedded default, Redis when a URL is
configured."""

from __future__ import annotations

from noukai_server.bus.base import Bus
from noukai_server.bus.memory import MemoryBus
from noukai_server.bus.redis import RedisBus


async def open_bus(redis_url: str | None) -> Bus:
    """The in-process bus when `redis_url` is None; otherwise the Redis bus on that URL.

    A URL that is not redis:// or rediss:// raises ValueError naming it. A valid URL whose Redis
    cannot be reached starts the bus degraded, with a warning, and it connects when Redis comes:
    Redis only makes delivery fast, so its absence must not stop a server that works without it
    (see "The Redis bus" in docs/architecture.md)."""
    if redis_url is None:
        return MemoryBus()
    return await RedisBus.open(redis_url)
