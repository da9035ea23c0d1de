"""The run-log follower over a real SQLite store and the in-process bus: bursts come out as one
batch, in order, once each; waits and polls are timed as promised (on a fake clock: no test
measures the wall clock); the fast path makes no task."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from noukai_server.bus import LogEvent, MemoryBus
from noukai_server.eventlog.follower import RunEnded, RunEventFollower
from noukai_server.store import EventRow, RunHead, RunUpdate, Store
from tests.store.conftest import make_run

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class CountingStore:
    """The store, counting the reads a follower makes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.polls = 0
        """Reads of the run's head: one per poll."""
        self.read_events_calls = 0

    async def get_run_head(self, run_id: str) -> RunHead | None:
        self.polls += 1
        return await self.store.get_run_head(run_id)

    async def read_events(
        self, run_id: str, after_seq: int = 0, limit: int | None = None, *, timestamps: bool = True
    ) -> list[EventRow]:
        self.read_events_calls += 1
        return await self.store.read_events(run_id, after_seq, limit, timestamps=timestamps)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.connect(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    try:
        yield opened
    finally:
        await opened.close()


def event(run_id: str, seq: int, event_type: str = "token") -> LogEvent:
    data = orjson.dumps({"eventType": event_type, "seq": seq, "text": f"t{seq}"})
    return LogEvent.create(run_id, seq, event_type, data)


async def store_events(
    store: Store, run_id: str, seqs: Sequence[int], event_type: str = "token", update: RunUpdate | None = None
) -> list[LogEvent]:
    events = [event(run_id, seq, event_type) for seq in seqs]
    rows = [EventRow(e.seq, e.type, e.data.decode()) for e in events]
    await store.append_events_unleased(run_id, rows, update)
    return events


HANG_GUARD = 30.0
"""Seconds a test may wait for something that should come at once: a guard against hangs, far
longer than a busy machine needs, never the measure being tested."""


class FakeClock:
    """The follower's notion of now, moved only by the test; nothing waits on it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def polls_after(
    reader: RunEventFollower, clock: FakeClock, counting: CountingStore, seconds: float
) -> tuple[list[int], int]:
    """Move the clock on by `seconds`, then take what is due without waiting: the seqs returned
    and how many store polls that made."""
    clock.now += seconds
    polls = counting.polls
    batch = await reader.next_batch(0)
    return [e.seq for e in batch], counting.polls - polls


def follower(store: Any, bus: MemoryBus, run_id: str, after: int = 0, **kwargs: Any) -> RunEventFollower:
    return RunEventFollower(store, bus, run_id, after, **kwargs)


async def test_a_burst_comes_out_as_one_ordered_batch_without_duplicates(store: Store) -> None:
    run = await make_run(store)
    bus = MemoryBus()
    counting = CountingStore(store)
    backlog = await store_events(store, run.id, range(1, 4))
    async with follower(counting, bus, run.id, poll_interval=30) as reader:
        reads = counting.read_events_calls
        burst = await store_events(store, run.id, range(4, 24))
        # The bus repeats what the store already gave, and some of the burst twice.
        await bus.publish(run.id, backlog + burst[:5])
        await bus.publish(run.id, burst[2:])
        batch = await reader.next_batch(1.0)
        assert [e.seq for e in batch] == list(range(1, 24))
        assert [e.frame for e in batch] == [e.frame for e in backlog + burst]
        assert reader.last_seq == 23
        assert counting.read_events_calls == reads  # no gap: the store was not asked again
        assert await reader.next_batch(0.05) == []


async def test_a_gap_on_the_bus_is_filled_from_the_store(store: Store) -> None:
    run = await make_run(store)
    bus = MemoryBus()
    async with follower(store, bus, run.id, poll_interval=30) as reader:
        events = await store_events(store, run.id, range(1, 8))
        await bus.publish(run.id, [events[0], events[3], events[4], events[6]])  # 2, 3 and 6 lost
        batch = await reader.next_batch(1.0)
        assert [e.seq for e in batch] == list(range(1, 8))
        assert [e.frame for e in batch] == [e.frame for e in events]


async def test_next_and_next_batch_interleave_without_losing_or_repeating(store: Store) -> None:
    run = await make_run(store)
    bus = MemoryBus()
    async with follower(store, bus, run.id, poll_interval=30) as reader:
        await bus.publish(run.id, await store_events(store, run.id, range(1, 6)))
        first = await reader.next(1.0)
        assert first is not None and first.seq == 1
        assert reader.last_seq == 1
        assert [e.seq for e in await reader.next_batch(1.0)] == [2, 3, 4, 5]
        assert await reader.next(0.05) is None


async def test_next_batch_waits_at_most_max_wait(store: Store) -> None:
    run = await make_run(store)
    bus = MemoryBus()
    counting = CountingStore(store)
    loop = asyncio.get_running_loop()
    async with follower(counting, bus, run.id, poll_interval=600) as reader:
        started = loop.time()
        # Waiting for the next poll instead (600 s) would trip the 30 s hang guard.
        assert await asyncio.wait_for(reader.next_batch(0.2), HANG_GUARD) == []
        assert loop.time() - started >= 0.19  # it did wait
        assert counting.polls == 0  # the deadline ended the wait, not a poll
        # With no time to wait it returns without ever suspending.
        pending = reader.next_batch(0)
        with pytest.raises(StopIteration) as returned:
            pending.send(None)
        assert returned.value.value == []


async def test_next_batch_wakes_on_a_publish(store: Store) -> None:
    run = await make_run(store)
    bus = MemoryBus()
    counting = CountingStore(store)
    async with follower(counting, bus, run.id, poll_interval=600) as reader:

        async def later() -> None:
            await asyncio.sleep(0.05)
            await bus.publish(run.id, await store_events(store, run.id, [1, 2]))

        publisher = asyncio.create_task(later())
        # Not woken by the publish, it would sleep out its 600 s max_wait: the hang guard trips.
        batch = await asyncio.wait_for(reader.next_batch(600), HANG_GUARD)
        assert [e.seq for e in batch] == [1, 2]
        assert counting.polls == 0  # the bus woke it, not a poll of the store
        await publisher


async def test_queued_events_cost_no_task_and_no_store_read(store: Store) -> None:
    run = await make_run(store)
    bus = MemoryBus()
    counting = CountingStore(store)
    loop = asyncio.get_running_loop()
    created = 0
    default_factory = loop.get_task_factory()

    def counting_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        nonlocal created
        created += 1
        if default_factory is not None:
            return default_factory(loop, coro, **kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async with follower(counting, bus, run.id, poll_interval=30) as reader:
        await bus.publish(run.id, await store_events(store, run.id, range(1, 11)))
        reads = counting.read_events_calls
        loop.set_task_factory(counting_factory)
        try:
            one = await reader.next(1.0)
            rest = await reader.next_batch(1.0)
        finally:
            loop.set_task_factory(default_factory)
        assert one is not None and [one.seq] + [e.seq for e in rest] == list(range(1, 11))
        assert created == 0
        assert counting.read_events_calls == reads


async def test_a_lost_publish_is_found_by_polling_the_store(store: Store) -> None:
    run = await make_run(store)
    bus = MemoryBus()
    async with follower(store, bus, run.id, poll_interval=0.05) as reader:
        await store_events(store, run.id, [1, 2, 3])  # stored, never published
        # Only a poll can find them: without one this returns [] after max_wait.
        batch = await reader.next_batch(HANG_GUARD)
        assert [e.seq for e in batch] == [1, 2, 3]


async def test_a_poll_comes_exactly_poll_interval_after_the_last(store: Store) -> None:
    run = await make_run(store)
    bus = MemoryBus()
    clock = FakeClock()
    counting = CountingStore(store)
    async with follower(counting, bus, run.id, poll_interval=0.25, clock=clock) as reader:
        await store_events(store, run.id, [1, 2, 3])  # stored, never published
        assert await polls_after(reader, clock, counting, 0.125) == ([], 0)  # not due yet
        assert await polls_after(reader, clock, counting, 0.125) == ([1, 2, 3], 1)


async def test_polls_back_off_while_the_run_is_queued_and_not_while_running(store: Store) -> None:
    run = await make_run(store)
    bus = MemoryBus()
    clock = FakeClock()
    counting = CountingStore(store)
    async with follower(
        counting, bus, run.id, poll_interval=0.25, max_poll_interval=1.0, clock=clock
    ) as reader:
        # Queued: the waits double from poll_interval up to the cap, 0.25, 0.5, 1, 1.
        for interval in (0.25, 0.5, 1.0, 1.0):
            assert await polls_after(reader, clock, counting, interval - 0.125) == ([], 0)
            assert await polls_after(reader, clock, counting, 0.125) == ([], 1)
        # Still correct: an event that was stored but never published is found within the cap.
        await store_events(store, run.id, [1])
        assert await polls_after(reader, clock, counting, 1.0) == ([1], 1)

    claimed = await store.claim_next_run("worker-1", 30)
    assert claimed is not None and claimed.id == run.id
    counting = CountingStore(store)
    async with follower(
        counting, bus, run.id, after=1, poll_interval=0.25, max_poll_interval=1.0, clock=clock
    ) as reader:
        for _ in range(5):  # a running run is polled every poll_interval, with no backoff
            assert await polls_after(reader, clock, counting, 0.125) == ([], 0)
            assert await polls_after(reader, clock, counting, 0.125) == ([], 1)


async def test_a_bus_event_resets_the_poll_backoff(store: Store) -> None:
    run = await make_run(store)
    bus = MemoryBus()
    clock = FakeClock()
    counting = CountingStore(store)
    async with follower(
        counting, bus, run.id, poll_interval=0.25, max_poll_interval=1000, clock=clock
    ) as reader:
        for interval in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0):  # backing off: the next wait is 16 s
            assert await polls_after(reader, clock, counting, interval) == ([], 1)
        await bus.publish(run.id, await store_events(store, run.id, [1]))
        assert await polls_after(reader, clock, counting, 0) == ([1], 0)
        await store_events(store, run.id, [2])  # never published: the next poll finds it
        assert await polls_after(reader, clock, counting, 0) == ([], 0)  # the bus's silence starts
        assert await polls_after(reader, clock, counting, 0.125) == ([], 0)
        # Polled after poll_interval, not after the backed-off 16 s.
        assert await polls_after(reader, clock, counting, 0.125) == ([2], 1)


async def test_run_ended_after_the_whole_log_was_returned(store: Store) -> None:
    run = await make_run(store)
    bus = MemoryBus()
    async with follower(store, bus, run.id, poll_interval=0.05) as reader:
        events = await store_events(store, run.id, [1, 2, 3], update=RunUpdate(status="cancelled"))
        await bus.publish(run.id, events)
        assert [e.seq for e in await reader.next_batch(1.0)] == [1, 2, 3]
        with pytest.raises(RunEnded):
            await reader.next_batch(1.0)


async def test_a_closed_bus_leaves_the_store_polls_working(store: Store) -> None:
    run = await make_run(store)
    bus = MemoryBus()
    async with follower(store, bus, run.id, poll_interval=0.05) as reader:
        await bus.aclose()
        assert await reader.next_batch(0.1) == []
        await store_events(store, run.id, [1])
        assert [e.seq for e in await reader.next_batch(1.0)] == [1]


class AssuringBus(MemoryBus):
    """The in-process bus, with subscriptions that vouch for their delivery while `assured` is
    set, as the Redis bus's do while its links are up and the channel is confirmed."""

    def __init__(self) -> None:
        super().__init__()
        self.assured = True

    def subscribe(self, run_id: str) -> Any:
        return _Assuring(self, super().subscribe(run_id))


class _Assuring:
    def __init__(self, bus: AssuringBus, local: Any) -> None:
        self._bus = bus
        self._local = local

    @property
    def assured(self) -> bool:
        return self._bus.assured

    def take_resync(self) -> bool:
        return bool(self._local.take_resync())

    def take_nowait(self) -> list[LogEvent]:
        return list(self._local.take_nowait())

    async def wait(self, timeout: float) -> bool:
        return bool(await self._local.wait(timeout))

    async def aclose(self) -> None:
        await self._local.aclose()


async def test_an_assured_bus_lets_idle_polls_back_off_further(store: Store) -> None:
    run = await make_run(store)
    bus = AssuringBus()
    clock = FakeClock()
    counting = CountingStore(store)
    async with follower(counting, bus, run.id, poll_interval=1.0, clock=clock) as reader:
        # Queued, on a bus that vouches for delivery: 1, 2, 4, 8, 16, 30, 30 (not capped at 5).
        for interval in (1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0):
            assert await polls_after(reader, clock, counting, interval - 0.5) == ([], 0)
            assert await polls_after(reader, clock, counting, 0.5) == ([], 1)
        # The bus stops vouching (its link dropped): the next backoff is capped at 5 s again.
        bus.assured = False
        assert await polls_after(reader, clock, counting, 30.0) == ([], 1)
        assert await polls_after(reader, clock, counting, 4.5) == ([], 0)
        assert await polls_after(reader, clock, counting, 0.5) == ([], 1)


async def test_a_resync_makes_an_idle_follower_read_the_store_at_once(store: Store) -> None:
    run = await make_run(store)
    bus = AssuringBus()
    clock = FakeClock()
    counting = CountingStore(store)
    async with follower(counting, bus, run.id, poll_interval=1.0, clock=clock) as reader:
        for interval in (1.0, 2.0, 4.0, 8.0):  # backed off: the next poll is 16 s away
            assert await polls_after(reader, clock, counting, interval) == ([], 1)
        await store_events(store, run.id, [1, 2])  # published while the link was down: lost
        assert await polls_after(reader, clock, counting, 1.0) == ([], 0)
        bus.resync_all()  # the link is back: every reader reads the store now
        assert await polls_after(reader, clock, counting, 0) == ([1, 2], 1)
        assert await polls_after(reader, clock, counting, 0) == ([], 0)  # once per resync


async def test_a_resync_wakes_a_waiting_follower(store: Store) -> None:
    run = await make_run(store)
    bus = AssuringBus()
    async with follower(store, bus, run.id, poll_interval=HANG_GUARD) as reader:
        await store_events(store, run.id, [1])  # stored, never published
        waiting = asyncio.create_task(reader.next_batch(HANG_GUARD))
        await asyncio.sleep(0)
        bus.resync_all()
        batch = await asyncio.wait_for(waiting, HANG_GUARD / 2)
        assert [e.seq for e in batch] == [1]
