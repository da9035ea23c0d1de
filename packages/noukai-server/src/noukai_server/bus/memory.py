"""In-process broker for the embedded deployment: one server process, no services."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from noukai_server.bus.base import CancelListener, LogEvent


class MemorySubscription:
    """Events queued as they are published; nothing is ever dropped. Waiting costs a future and
    a timer handle, never a task, and an event already queued is taken without any await."""

    def __init__(self, bus: MemoryBus, run_id: str) -> None:
        self._bus = bus
        self._run_id = run_id
        self._items: deque[LogEvent] = deque()
        self._waiters: list[asyncio.Future[bool]] = []
        self._closed = False
        self._resync = False

    def _deliver(self, events: Sequence[LogEvent]) -> None:
        self._items.extend(events)
        self._wake()

    def _ask_resync(self) -> None:
        self._resync = True
        self._wake()

    def take_resync(self) -> bool:
        """True once after the bus may have lost events for this run (the Redis link came back):
        the reader should read the store now rather than at its next poll."""
        asked, self._resync = self._resync, False
        return asked

    def _wake(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(True)

    def __aiter__(self) -> MemorySubscription:
        return self

    async def __anext__(self) -> LogEvent:
        # A plain method, not an async generator: a reader may cancel a wait (a timeout) and
        # call again without losing the subscription or any queued event.
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            await self._wait(None)
        return self._items.popleft()

    def take_nowait(self) -> list[LogEvent]:
        if not self._items:
            return []
        items = list(self._items)
        self._items.clear()
        return items

    async def wait(self, timeout: float) -> bool:
        if self._items:
            return True
        if timeout <= 0:
            return False
        if self._closed:  # nothing will ever come: as quiet as a live subscription with no events
            await asyncio.sleep(timeout)
            return False
        return await self._wait(timeout)

    async def _wait(self, timeout: float | None) -> bool:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        finally:
            if timer is not None:
                timer.cancel()
            if waiter in self._waiters:  # timed out or cancelled: nobody woke it
                self._waiters.remove(waiter)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._wake()
            self._bus._remove(self._run_id, self)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class MemoryBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[MemorySubscription]] = {}
        self._work = asyncio.Event()
        self._cancel_listeners: list[CancelListener] = []

    async def publish(self, run_id: str, events: Sequence[LogEvent]) -> None:
        for subscription in self._subscribers.get(run_id, ()):
            subscription._deliver(events)

    def subscribe(self, run_id: str) -> MemorySubscription:
        subscription = MemorySubscription(self, run_id)
        self._subscribers.setdefault(run_id, set()).add(subscription)
        return subscription

    def resync_all(self) -> None:
        """Tell every subscription that events may have been lost (see `take_resync`)."""
        for subscribers in self._subscribers.values():
            for subscription in subscribers:
                subscription._ask_resync()

    def _remove(self, run_id: str, subscription: MemorySubscription) -> None:
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
