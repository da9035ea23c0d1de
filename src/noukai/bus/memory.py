"""In-process broker for the embedded deployment: one server process, no services."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from noukai.bus.base import CancelListener, LogEvent


class _MemorySubscription:
    def __init__(self, bus: MemoryBus, run_id: str) -> None:
        self._bus = bus
        self._run_id = run_id
        self._items: deque[LogEvent] = deque()
        self._ready = asyncio.Event()
        self._closed = False

    def _deliver(self, events: Sequence[LogEvent]) -> None:
        self._items.extend(events)
        self._ready.set()

    def __aiter__(self) -> _MemorySubscription:
        return self

    async def __anext__(self) -> LogEvent:
        # A plain method, not an async generator: a reader may cancel a wait (a timeout) and
        # call again without losing the subscription or any queued event.
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._ready.set()
            self._bus._remove(self._run_id, self)


class MemoryBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[_MemorySubscription]] = {}
        self._work = asyncio.Event()
        self._cancel_listeners: list[CancelListener] = []

    async def publish(self, run_id: str, events: Sequence[LogEvent]) -> None:
        for subscription in self._subscribers.get(run_id, ()):
            subscription._deliver(events)

    def subscribe(self, run_id: str) -> _MemorySubscription:
        subscription = _MemorySubscription(self, run_id)
        self._subscribers.setdefault(run_id, set()).add(subscription)
        return subscription

    def _remove(self, run_id: str, subscription: _MemorySubscription) -> None:
        subscribers = self._subscribers.get(run_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[run_id]

    async def announce_work(self) -> None:
        self._work.set()

    async def wait_for_work(self, max_wait: float) -> None:
        try:
            await asyncio.wait_for(self._work.wait(), max_wait)
        except TimeoutError:
            return
        self._work.clear()

    async def announce_cancel(self, run_id: str) -> None:
        for listener in self._cancel_listeners:
            listener(run_id)

    def on_cancel(self, listener: CancelListener) -> None:
        self._cancel_listeners.append(listener)

    async def aclose(self) -> None:
        for subscribers in list(self._subscribers.values()):
            for subscription in list(subscribers):
                await subscription.aclose()
