"""`follow_frames` over a real store and the in-process bus: a burst of events is one chunk, the
bytes are exactly the stored events' frames, and filtering, heartbeats, the planned close and the
end at the terminal event still apply event by event."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import orjson
import pytest

from noukai.types import events as ev
from noukai_server.api import sse
from noukai_server.api.sse import PING, StreamPolicy, follow_frames, planned_lifetime
from noukai_server.bus import LogEvent, MemoryBus
from noukai_server.eventlog.follower import RunEventFollower
from noukai_server.store import EventRow, RunUpdate, Store, StoreBusy
from tests.store.conftest import make_run

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.connect(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    try:
        yield opened
    finally:
        await opened.close()


async def emit(
    store: Store,
    bus: MemoryBus,
    run_id: str,
    types: Sequence[str],
    first_seq: int,
    *,
    size: int = 8,
    update: RunUpdate | None = None,
) -> list[LogEvent]:
    """Store events and then publish them as one burst, as the log writer does."""
    events = []
    for offset, event_type in enumerate(types):
        seq = first_seq + offset
        data = orjson.dumps({"eventType": event_type, "seq": seq, "text": "x" * size})
        events.append(LogEvent.create(run_id, seq, event_type, data))
    await store.append_events_unleased(
        run_id, [EventRow(e.seq, e.type, e.data.decode()) for e in events], update
    )
    await bus.publish(run_id, events)
    return events


async def stored_frames(store: Store, run_id: str) -> bytes:
    rows = await store.read_events(run_id)
    return b"".join(LogEvent.create(run_id, r.seq, r.type, r.data.encode()).frame for r in rows)


def stream(store: Store, bus: MemoryBus, run_id: str, policy: StreamPolicy) -> AsyncIterator[bytes]:
    return follow_frames(lambda: RunEventFollower(store, bus, run_id, 0, poll_interval=30), policy)


async def test_a_burst_is_one_chunk_and_the_bytes_are_the_stored_frames(store: Store) -> None:
    run = await make_run(store)
    bus = MemoryBus()
    policy = StreamPolicy(retry_ms=1000, stop_after=ev.TERMINAL_EVENTS)
    backlog = await emit(store, bus, run.id, [ev.RUN_STARTED, ev.STEP_STARTED], 1)
    frames = stream(store, bus, run.id, policy)
    assert await anext(frames) == b"retry: 1000\n\n"
    assert await anext(frames) == b"".join(e.frame for e in backlog)
    burst = await emit(store, bus, run.id, [ev.STEP_OUTPUT] * 20, 3)
    assert await anext(frames) == b"".join(e.frame for e in burst)  # 20 events, one write
    end = await emit(
        store,
        bus,
        run.id,
        [ev.STEP_OUTPUT, ev.STEP_COMPLETED, ev.FLOW_COMPLETED],
        23,
        update=RunUpdate(status="completed"),
    )
    assert await anext(frames) == b"".join(e.frame for e in end)
    with pytest.raises(StopAsyncIteration):
        await anext(frames)

    # A reader that arrives late gets the same bytes from the store, in one chunk.
    replay = [chunk async for chunk in stream(store, bus, run.id, policy)]
    assert replay == [b"retry: 1000\n\n", await stored_frames(store, run.id)]


async def test_nothing_is_sent_after_the_terminal_event_of_a_batch(store: Store) -> None:
    run = await make_run(store)
    bus = MemoryBus()
    policy = StreamPolicy(stop_after=ev.TERMINAL_EVENTS)
    frames = stream(store, bus, run.id, policy)
    first = asyncio.ensure_future(anext(frames))
    await asyncio.sleep(0.05)  # the stream is live and waiting on the bus
    events = await emit(store, bus, run.id, [ev.STEP_OUTPUT, ev.RUN_CANCELLED, ev.STEP_OUTPUT], 1)
    assert await first == events[0].frame + events[1].frame
    with pytest.raises(StopAsyncIteration):
        await anext(frames)


async def test_types_filter_each_event_of_a_batch(store: Store) -> None:
    run = await make_run(store)
    bus = MemoryBus()
    wanted = frozenset({ev.STEP_COMPLETED, ev.FLOW_COMPLETED})
    kinds = [ev.STEP_STARTED, ev.STEP_OUTPUT, ev.STEP_COMPLETED] * 3 + [ev.FLOW_COMPLETED, ev.STEP_COMPLETED]
    events = await emit(store, bus, run.id, kinds, 1)
    chunks = [
        c async for c in stream(store, bus, run.id, StreamPolicy(stop_after=ev.TERMINAL_EVENTS, types=wanted))
    ]
    assert chunks == [b"".join(e.frame for e in events[:10] if e.type in wanted)]

    # The terminal event ends the stream even when it is filtered out.
    only_outputs = StreamPolicy(stop_after=ev.TERMINAL_EVENTS, types={ev.STEP_OUTPUT})
    chunks = [c async for c in stream(store, bus, run.id, only_outputs)]
    assert chunks == [b"".join(e.frame for e in events[:10] if e.type == ev.STEP_OUTPUT)]


async def test_a_long_backlog_is_cut_into_chunks(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "CHUNK_BYTES", 1000)
    run = await make_run(store)
    bus = MemoryBus()
    await emit(store, bus, run.id, [ev.STEP_OUTPUT] * 40 + [ev.FLOW_COMPLETED], 1, size=100)
    chunks = [c async for c in stream(store, bus, run.id, StreamPolicy(stop_after=ev.TERMINAL_EVENTS))]
    assert len(chunks) > 3
    assert all(chunk.endswith(b"\n\n") for chunk in chunks)
    assert b"".join(chunks) == await stored_frames(store, run.id)


async def test_heartbeats_and_the_planned_close(store: Store) -> None:
    run = await make_run(store)
    bus = MemoryBus()
    policy = StreamPolicy(
        heartbeat_seconds=0.05, max_lifetime_seconds=0.4, lifetime_spread=0, stop_after=ev.TERMINAL_EVENTS
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    frames = stream(store, bus, run.id, policy)
    assert await anext(frames) == PING
    events = await emit(store, bus, run.id, [ev.STEP_OUTPUT] * 3, 1)

    async def until_closed() -> list[bytes]:
        return [c async for c in frames]

    # The run never ends, so only the planned close can end the stream: it must come, and not
    # before the lifetime. No upper bound on time: a busy machine may run late, never early.
    chunks = await asyncio.wait_for(until_closed(), timeout=30)
    assert loop.time() - started >= 0.4
    assert b"".join(e.frame for e in events) in chunks
    assert set(chunks) - {b"".join(e.frame for e in events)} == {PING}


class BusyOnPoll:
    """The store, out of connections once the stored log was read: the first poll's read of the
    run's head times out waiting for the pool."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.polls = 0

    async def get_run_head(self, run_id: str) -> object:
        self.polls += 1
        raise StoreBusy("no database connection came free in time (test)")

    async def read_events(
        self, run_id: str, after_seq: int = 0, limit: int | None = None, **kw: object
    ) -> object:
        return await self.store.read_events(run_id, after_seq, limit, timestamps=False)


async def test_a_store_out_of_connections_ends_the_stream_as_a_planned_close(store: Store) -> None:
    run = await make_run(store)
    bus = MemoryBus()
    events = await emit(store, bus, run.id, [ev.STEP_OUTPUT] * 2, 1)  # read when the stream opens
    busy = BusyOnPoll(store)
    policy = StreamPolicy(heartbeat_seconds=30, max_lifetime_seconds=None, stop_after=ev.TERMINAL_EVENTS)
    frames = follow_frames(lambda: RunEventFollower(busy, bus, run.id, 0, poll_interval=0.01), policy)  # type: ignore[arg-type]
    chunks = await asyncio.wait_for(_all(frames), timeout=30)
    # Whole frames, then a clean end (no exception reaches the server): the client resumes
    # from the last id it got.
    assert b"".join(chunks) == b"".join(e.frame for e in events)
    assert busy.polls == 1


async def _all(frames: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in frames]


def test_planned_closes_of_streams_opened_together_are_spread_over_the_last_fifth() -> None:
    """So thousands of streams opened at once do not all reconnect in the same second."""
    policy = StreamPolicy(max_lifetime_seconds=300)
    draws = random.Random(7)
    lifetimes = [planned_lifetime(policy, draws.random) for _ in range(1000)]
    assert all(lifetime is not None and 240 <= lifetime <= 300 for lifetime in lifetimes)
    assert len({round(lifetime or 0) for lifetime in lifetimes}) > 50  # about one a second, not one
    assert planned_lifetime(policy, lambda: 0.0) == 300
    assert planned_lifetime(policy, lambda: 1.0) == 240
    assert planned_lifetime(StreamPolicy(max_lifetime_seconds=None)) is None
