"""Reading a thread's runs' logs as one stream, without gaps or duplicates.

A thread's runs are numbered in the order they were created (`thread_ordinal`: 1, 2, 3 ...), which
is also the order they run in (one active run per thread; waiting turns start oldest first). The
thread's stream is their logs one after the other, and its cursor is the pair
`(ordinal, seq)`: written `"<ordinal>-<seq>"` as the SSE `id:`, ordered first by ordinal, then by
seq, so it grows monotonically across runs.

A finished run's log is read straight from the store; the run that is still going is followed
with `RunEventFollower` (stored backlog, then the live tail from the bus), and when it ends the
next run is taken. While the thread has no next run, the store is asked every `poll_interval`.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from types import TracebackType
from typing import Final

from noukai_server.bus import Bus
from noukai_server.eventlog.follower import RunEnded, RunEventFollower
from noukai_server.store import RunRecord, Store

_CURSOR: Final = re.compile(r"^([0-9]{1,9})-([0-9]{1,18})$")


@dataclass(frozen=True, order=True, slots=True)
class ThreadCursor:
    """A position in a thread's stream: after event `seq` of the thread's run number `ordinal`."""

    ordinal: int = 0
    seq: int = 0

    def __str__(self) -> str:
        return f"{self.ordinal}-{self.seq}"

    @classmethod
    def parse(cls, raw: str) -> ThreadCursor:
        """`"<ordinal>-<seq>"` (ASCII digits); `ValueError` for anything else."""
        match = _CURSOR.match(raw.strip())
        if match is None:
            raise ValueError("must be a thread event id: <run ordinal>-<seq>, such as 3-17")
        return cls(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True, slots=True)
class ThreadEvent:
    ordinal: int
    run_id: str
    seq: int
    type: str
    data: bytes

    @property
    def cursor(self) -> ThreadCursor:
        return ThreadCursor(self.ordinal, self.seq)

    @property
    def frame(self) -> bytes:
        return b"id: %d-%d\nevent: %s\ndata: %s\n\n" % (self.ordinal, self.seq, self.type.encode(), self.data)


class ThreadEventFollower:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        thread_id: str,
        after: ThreadCursor = ThreadCursor(),
        *,
        poll_interval: float = 0.5,
    ) -> None:
        self._store = store
        self._bus = bus
        self._thread_id = thread_id
        self.position = after
        """The cursor of the last event returned (or the one resumed after)."""
        self._finished_current = after.ordinal == 0
        """Whether run `position.ordinal` was read to its end (then the next run comes)."""
        self._poll_interval = poll_interval
        self._live: RunEventFollower | None = None
        self._live_run: RunRecord | None = None

    async def __aenter__(self) -> ThreadEventFollower:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close_live()

    async def _close_live(self) -> None:
        if self._live is not None:
            live, self._live, self._live_run = self._live, None, None
            await live.__aexit__(None, None, None)

    async def _current_run(self) -> RunRecord | None:
        """The run to read now: the cursor's run until it is read to its end, then the next."""
        ordinal = self.position.ordinal
        after = ordinal if self._finished_current else ordinal - 1
        runs = await self._store.list_thread_runs(self._thread_id, after_ordinal=after, limit=1)
        if not runs:
            return None
        run = runs[0]
        if run.thread_ordinal != ordinal:  # a new run: start at its beginning
            self.position = ThreadCursor(run.thread_ordinal or 0, 0)
            self._finished_current = False
        return run

    def _events(self, run: RunRecord, rows: list[tuple[int, str, bytes]]) -> list[ThreadEvent]:
        ordinal = run.thread_ordinal or 0
        events = [ThreadEvent(ordinal, run.id, seq, kind, data) for seq, kind, data in rows]
        if events:
            self.position = events[-1].cursor
        return events

    async def next_batch(self, max_wait: float) -> list[ThreadEvent]:
        """The events available now, in stream order: at least one, unless nothing came within
        `max_wait` ([]: time for a heartbeat). The stream never ends by itself: a thread can
        always take another turn."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        while True:
            if self._live is not None and self._live_run is not None:
                run = self._live_run
                try:
                    batch = await self._live.next_batch(max(0.0, deadline - loop.time()))
                except RunEnded:
                    await self._close_live()
                    self._finished_current = True
                    continue
                if batch:
                    return self._events(run, [(e.seq, e.type, e.data) for e in batch])
                return []
            current = await self._current_run()
            if current is None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return []
                await asyncio.sleep(min(self._poll_interval, remaining))
                continue
            if current.terminal:
                rows = await self._store.read_events(current.id, self.position.seq, timestamps=False)
                self._finished_current = True
                events = self._events(current, [(r.seq, r.type, r.data.encode()) for r in rows])
                if events:
                    return events
                continue
            follower = RunEventFollower(self._store, self._bus, current.id, self.position.seq)
            await follower.__aenter__()
            self._live, self._live_run = follower, current
