"""Reading a run's log from any point without gaps or duplicates: the stored backlog first, then
the live tail from the bus, with the store as the fallback whenever the bus is quiet or skips.

The follower subscribes to the bus *before* it reads the store, so an event stored between the
two reads is seen at least once; duplicates are dropped by seq. A gap (the bus delivering seq
n+2 after n) is filled from the store. When the bus says nothing for `poll_interval`, the store is
asked directly, so a reader never depends on a publish that could be lost. While the run is not
running (queued, or waiting for a client or a retry) nothing happens to it without a publish, so
the polls of a quiet follower back off (1 s, 2 s, 4 s, ... up to `max_poll_interval`); any event
brings them back to `poll_interval`. On a bus that can vouch for its delivery (the Redis bus while
its links are up and the run's channel is confirmed: `assured`), they back off further, to
`ASSURED_MAX_POLL_INTERVAL`, since the poll then only guards against a publish that was lost
without the link dropping; when the link does drop and comes back, the bus asks every reader to
read the store at once (`take_resync`). That is what lets one API process hold many thousands
of idle streams (docs/benchmarks.md, "Idle streams").

Events are taken in bursts: whatever the bus has queued is drained without awaiting, so a reader
that keeps up pays one wait per burst, not one per event.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, TypeGuard, runtime_checkable

from noukai_server.bus import Bus, LogEvent, Subscription
from noukai_server.store import Store

PAGE_SIZE = 500
MAX_POLL_INTERVAL = 5.0
"""The longest wait between two store polls while the run sits queued or waiting."""
ASSURED_MAX_POLL_INTERVAL = 30.0
"""The same, while the bus vouches for delivering every publish to this reader."""


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
        max_poll_interval: float = MAX_POLL_INTERVAL,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._store = store
        self._bus = bus
        self._run_id = run_id
        self.last_seq = after_seq
        """The seq of the last event returned."""
        self._poll_interval = poll_interval
        self._max_poll_interval = max(max_poll_interval, poll_interval)
        self._interval = poll_interval
        """The current wait between polls: `poll_interval`, or more while the run is idle."""
        self._poll_at = 0.0
        self._heard = False
        """The bus delivered something since the poll timer was last set."""
        self._backlog: deque[LogEvent] = deque()
        """Events queued to be returned, contiguous from `last_seq + 1`."""
        self._subscription: Subscription | None = None
        self._assurance: _Assuring | None = None
        """The subscription, when it can vouch for its delivery and ask for a resync."""
        self._clock = clock
        """Where "now" is read for deadlines and poll times (tests pass a fake); the loop's clock
        by default. Waits on the bus still take real time."""

    async def __aenter__(self) -> RunEventFollower:
        self._subscription = subscription = self._bus.subscribe(self._run_id)
        if _is_assuring(subscription):
            self._assurance = subscription
        try:
            await _subscribed(self._subscription)
            await self._read_store()
        except BaseException:
            await self._subscription.aclose()
            raise
        self._poll_at = self._now() + self._poll_interval
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
        if not self._backlog and not await self._fill(max_wait):
            return None
        event = self._backlog.popleft()
        self.last_seq = event.seq
        return event

    async def next_batch(self, max_wait: float) -> list[LogEvent]:
        """Every event available now, in seq order: at least one, unless nothing came within
        `max_wait` ([]: time for a heartbeat). Raises `RunEnded` once the run is terminal and its
        whole log was returned. Costs no await when events are already queued."""
        if not await self._fill(max_wait):
            return []
        batch = list(self._backlog)
        self._backlog.clear()
        self.last_seq = batch[-1].seq
        return batch

    async def _fill(self, max_wait: float) -> bool:
        """Queue whatever the bus holds, waiting up to `max_wait` for something if nothing is
        queued; False if nothing came."""
        subscription = self._subscription
        assert subscription is not None, "use `async with`"
        deadline: float | None = None
        while True:
            events = subscription.take_nowait()
            if events:
                self._heard = True
                while (rest := self._absorb(events)) is not None:
                    await self._read_store()  # the bus skipped something: the store has it
                    events = rest[1:]
            if self._backlog:
                return True
            now = self._now()
            if self._heard:  # the bus's silence starts now
                self._heard = False
                self._interval = self._poll_interval
                self._poll_at = now + self._interval
            if deadline is None:
                deadline = now + max_wait
            if self._assurance is not None and self._assurance.take_resync():
                self._poll_at = now  # the bus may have lost events: the store has them
            if now >= self._poll_at:
                await self._poll()
                continue
            if now >= deadline:
                return False
            await subscription.wait(min(deadline, self._poll_at) - now)

    @property
    def _queued_to(self) -> int:
        """The seq of the last event read so far: queued, or else returned."""
        return self._backlog[-1].seq if self._backlog else self.last_seq

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _absorb(self, events: list[LogEvent]) -> list[LogEvent] | None:
        """Queue the bus's events that follow the last queued one, dropping those already seen.
        On a gap, stop and return the events from the first one past the gap."""
        backlog = self._backlog
        expected = self._queued_to + 1
        for index, event in enumerate(events):
            if event.seq == expected:
                backlog.append(event)
                expected += 1
            elif event.seq > expected:
                return events[index:]
        return None

    async def _poll(self) -> None:
        """Ask the store, since the bus was quiet. Raises `RunEnded` if the run is over and
        everything was read."""
        # The run's head is read *before* the log: its status and last seq are committed together
        # with its events, so a log read after seeing "terminal" misses nothing, and a head whose
        # last seq was read already means there is nothing to read (one statement, shared with
        # the other readers polling now, for most polls of a quiet run).
        run = await self._store.get_run_head(self._run_id)
        found = await self._read_store() if run is None or run.last_seq > self._queued_to else False
        if not found and (run is None or run.terminal):
            raise RunEnded(self._run_id)
        if found or run is None or run.status == "running":
            self._interval = self._poll_interval
        else:  # queued or waiting: only a publish (or a lost one) changes anything
            longest = self._max_poll_interval
            if self._assurance is not None and self._assurance.assured:
                longest = max(longest, ASSURED_MAX_POLL_INTERVAL)
            self._interval = min(self._interval * 2, longest)
        self._poll_at = self._now() + self._interval

    async def _read_store(self) -> bool:
        """Queue stored events after the last one seen; True if any were found."""
        after = self._queued_to
        found = False
        while True:
            rows = await self._store.read_events(self._run_id, after, PAGE_SIZE, timestamps=False)
            for row in rows:
                data = row.data.encode()
                self._backlog.append(LogEvent.create(self._run_id, row.seq, row.type, data))
            found = found or bool(rows)
            if len(rows) < PAGE_SIZE:
                return found
            after = rows[-1].seq


# --- Subscriptions that take effect later (the Redis bus) ----------------------------------------

SUBSCRIBE_WAIT = 1.0
"""How long a reader waits for a remote bus to confirm its subscription before reading the store."""


@runtime_checkable
class _Assuring(Protocol):
    """A subscription that says when its delivery can be relied on (`assured`) and when it may
    have lost events (`take_resync`, True once per loss)."""

    @property
    def assured(self) -> bool: ...

    def take_resync(self) -> bool: ...


@runtime_checkable
class _Confirmable(Protocol):
    async def ready(self, timeout: float) -> bool: ...


async def _subscribed(subscription: Subscription) -> None:
    """Wait until the subscription is in effect, for buses where it is not at once.

    The Redis bus's SUBSCRIBE is sent in the background: an event published between the store read
    and Redis taking the SUBSCRIBE would reach this reader only by the next poll. Waiting for the
    confirmation (one round trip, and only for a run no local reader follows yet) closes that
    window. If it does not come (Redis is away), the store poll covers, as for any lost publish."""
    if _is_confirmable(subscription):
        await subscription.ready(SUBSCRIBE_WAIT)


# An isinstance check against a runtime-checkable protocol walks the protocol's members every
# time (about 12 us each, twice per stream opened); what a subscription offers depends only on
# its class, so it is worked out once per class.
_OFFERS: dict[tuple[type, type], bool] = {}


def _offers(subscription: Subscription, protocol: type) -> bool:
    key = (type(subscription), protocol)
    offered = _OFFERS.get(key)
    if offered is None:
        offered = _OFFERS[key] = isinstance(subscription, protocol)
    return offered


def _is_assuring(subscription: Subscription) -> TypeGuard[_Assuring]:
    return _offers(subscription, _Assuring)


def _is_confirmable(subscription: Subscription) -> TypeGuard[_Confirmable]:
    return _offers(subscription, _Confirmable)
