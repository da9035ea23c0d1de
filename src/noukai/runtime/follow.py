"""Reading a run's log from any point without gaps or duplicates: the stored backlog first, then
the live tail from the bus, with the store as the fallback whenever the bus is quiet or skips.

The follower subscribes to the bus *before* it reads the store, so an event stored between the
two reads is seen at least once; duplicates are dropped by seq. A gap (the bus delivering seq
n+2 after n) is filled from the store. When the bus says nothing for `poll_interval`, the store is
asked directly, so a reader never depends on a publish that could be lost.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType

from noukai.bus import Bus, LogEvent, Subscription
from noukai.store import Store

PAGE_SIZE = 500


class RunEnded(Exception):
    """The run is terminal and every event of its log has been read."""


class RunEventFollower:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        run_id: str,
        after_seq: int = 0,
        *,
        poll_interval: float = 1.0,
    ) -> None:
        self._store = store
        self._bus = bus
        self._run_id = run_id
        self.last_seq = after_seq
        self._poll_interval = poll_interval
        self._backlog: deque[LogEvent] = deque()
        self._subscription: Subscription | None = None

    async def __aenter__(self) -> RunEventFollower:
        self._subscription = self._bus.subscribe(self._run_id)
        await self._read_store()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._subscription is not None:
            await self._subscription.aclose()

    async def next(self, max_wait: float) -> LogEvent | None:
        """The next event; None when nothing came within `max_wait` (time for a heartbeat).
        Raises `RunEnded` once the run is terminal and its whole log was returned."""
        assert self._subscription is not None, "use `async with`"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        while True:
            if self._backlog:
                event = self._backlog.popleft()
                self.last_seq = event.seq
                return event
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                event = await asyncio.wait_for(anext(self._subscription), min(remaining, self._poll_interval))
            except TimeoutError:
                # The run row is read *before* the log: its terminal status is committed together
                # with its last events, so a log read after seeing "terminal" misses nothing.
                run = await self._store.get_run(self._run_id)
                if not await self._read_store() and (run is None or run.terminal):
                    raise RunEnded(self._run_id) from None
                continue
            if event.seq <= self.last_seq:
                continue
            if event.seq == self.last_seq + 1:
                self.last_seq = event.seq
                return event
            await self._read_store()  # the bus skipped something: the store has it

    async def _read_store(self) -> bool:
        """Queue stored events after the last one seen; True if any were found."""
        after = self._backlog[-1].seq if self._backlog else self.last_seq
        found = False
        while True:
            rows = await self._store.read_events(self._run_id, after, PAGE_SIZE)
            for row in rows:
                data = row.data.encode()
                self._backlog.append(LogEvent.create(self._run_id, row.seq, row.type, data))
            found = found or bool(rows)
            if len(rows) < PAGE_SIZE:
                return found
            after = rows[-1].seq
