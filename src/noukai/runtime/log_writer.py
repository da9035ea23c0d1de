"""The engine's event sink in production: gives each event its seq, serialises it once, stores
events in batches (group commit) fenced by the run's attempt, then fans them out on the bus.

Events are published only *after* they are stored, so a live reader never sees an event that a
crash could take back; readers that resume from the store and readers on the bus agree on seqs.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from noukai.bus import Bus, LogEvent
from noukai.engine.state import RunState
from noukai.store import EventRow, RunUpdate, Store


class RunLogWriter:
    def __init__(self, store: Store, bus: Bus, run_id: str, attempt: int, last_seq: int) -> None:
        self._store = store
        self._bus = bus
        self._run_id = run_id
        self._attempt = attempt
        self._seq = last_seq
        self._pending: list[tuple[LogEvent, datetime]] = []
        """Events not yet stored, each with the time it was emitted (its `created_at`: a batch
        commits later, but traces time steps by when things happened)."""
        self._flusher: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        # Batches must commit in seq order, so only one write is in flight at a time.
        self._write_lock = asyncio.Lock()
        self._stamp_tick = -1
        self._stamp = datetime.now(UTC)

    @property
    def last_seq(self) -> int:
        return self._seq

    async def emit(self, event_type: str, payload: dict[str, Any]) -> None:
        self._append(event_type, payload)
        # Writes happen in the background: while one batch commits, the next one gathers, so a
        # token stream costs one transaction per batch rather than one per token.
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_pending())

    async def emit_with_update(self, event_type: str, payload: dict[str, Any], update: RunUpdate) -> None:
        """Store an event and a run update in one transaction, so whoever hears the event (say, a
        terminal one) already finds the run row changed."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        self._append(event_type, payload)
        await self.flush(update)

    def _append(self, event_type: str, payload: dict[str, Any]) -> None:
        self._raise_if_failed()
        self._seq += 1
        data = orjson.dumps({"eventType": event_type, "seq": self._seq, **payload})
        event = LogEvent.create(self._run_id, self._seq, event_type, data)
        self._pending.append((event, self._now()))

    async def checkpoint(self, next_step_index: int, state: RunState) -> None:
        await self.flush(RunUpdate(cursor=next_step_index, state=state.to_json()))

    async def flush(self, update: RunUpdate | None = None) -> None:
        """Wait until everything emitted so far is stored (and `update` applied with it)."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        self._raise_if_failed()
        if self._pending or update is not None:
            await self._write(update)

    async def _flush_pending(self) -> None:
        try:
            while self._pending:
                await self._write(None)
        except BaseException as exc:  # surfaced to the engine on its next emit
            self._failure = exc

    async def _write(self, update: RunUpdate | None) -> None:
        # Shielded: cancelling the run mid-write must not leave a batch half-known (taken from
        # `_pending` but maybe not stored), or the next write would leave a gap in the seqs.
        await asyncio.shield(self._write_batch(update))

    async def _write_batch(self, update: RunUpdate | None) -> None:
        async with self._write_lock:
            batch, self._pending = self._pending, []
            rows = [EventRow(e.seq, e.type, e.data.decode(), created_at=at) for e, at in batch]
            await self._store.record(self._run_id, self._attempt, rows, update)
            if batch:
                await self._bus.publish(self._run_id, [e for e, _ in batch])

    def _now(self) -> datetime:
        """The emit time, read from the clock at most once per millisecond: a burst of tokens
        shares one timestamp (and the store formats it once), and traces time steps to the
        millisecond anyway."""
        tick = time.monotonic_ns() // 1_000_000
        if tick != self._stamp_tick:
            self._stamp_tick = tick
            self._stamp = datetime.now(UTC)
        return self._stamp

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure
