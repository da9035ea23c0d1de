"""The engine's event sink in production: gives each event its seq, serialises it once, stores
events in batches (group commit) fenced by the run's attempt, then fans them out on the bus.

Events are published only *after* they are stored, so a live reader never sees an event that a
crash could take back; readers that resume from the store and readers on the bus agree on seqs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime

import orjson

from noukai.types.events import EventFields
from noukai_server.bus import Bus, LogEvent
from noukai_server.engine.sink import CreditsExhausted, UnstorableValue
from noukai_server.engine.state import RunState
from noukai_server.store import UNSET, EventRow, RunUpdate, StepCharge, Store, micro_to_usd
from noukai_server.telemetry import metrics

MAX_PENDING = 512
"""`emit` waits for the background writes once this many events are waiting to be written."""


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
        self._update: RunUpdate | None = None
        """A run update to apply with the next write (see `flush`)."""
        self._charge: StepCharge | None = None
        """A step charge to apply with the next write, with `_update` (see `checkpoint`)."""
        self._balance_micro_usd: int | None = None
        """The org's balance as the last charge left it (None: unlimited, or nothing charged)."""
        self._failure: BaseException | None = None
        # Batches must commit in seq order, so only one write is in flight at a time.
        self._write_lock = asyncio.Lock()
        self._stamp_tick = -1
        self._stamp = datetime.now(UTC)

    @property
    def last_seq(self) -> int:
        return self._seq

    async def emit(self, event_type: str, payload: EventFields) -> None:
        """Append an event: `payload` is the `...Fields` TypedDict of `event_type`; the log entry is
        `{"eventType", "seq", **payload}` (its `...Payload`)."""
        self._append(event_type, payload)
        # Writes happen in the background: while one batch commits, the next one gathers, so a
        # token stream costs one transaction per batch rather than one per token.
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_pending())
        if len(self._pending) >= MAX_PENDING:
            # Back-pressure. A model that never awaits between tokens (a builtin one, or a burst
            # in one network read) would otherwise hold the loop until its step ends: the
            # flusher, and with it the delivery of the first events, would wait for the whole
            # step, and `_pending` grow without bound.
            await asyncio.shield(self._flusher)

    async def emit_with_update(self, event_type: str, payload: EventFields, update: RunUpdate) -> None:
        """Store an event and a run update in one transaction, so whoever hears the event (say, a
        terminal one) already finds the run row changed."""
        self._append(event_type, payload)
        await self.flush(update)

    def _append(self, event_type: str, payload: EventFields) -> None:
        self._raise_if_failed()
        seq = self._seq + 1
        try:
            data = orjson.dumps({"eventType": event_type, "seq": seq, **payload})
        except orjson.JSONEncodeError as exc:
            # Before the seq is taken: a refused event leaves no gap, and the engine can go on
            # writing (it fails the step that produced the value; see `UnstorableValue`).
            raise UnstorableValue.of(event_type, payload, exc) from exc
        self._seq = seq
        event = LogEvent.create(self._run_id, seq, event_type, data)
        self._pending.append((event, self._now()))

    async def checkpoint(self, next_step_index: int, state: RunState) -> None:
        # The step's charge rides on the checkpoint's write: one transaction moves the cursor past
        # the step and charges it (`Store.record_step`), so a step is charged iff it is done.
        self._charge = StepCharge(
            step_index=next_step_index - 1,
            total_cost_usd=state.cost_usd,
            prompt_tokens=state.prompt_tokens,
            completion_tokens=state.completion_tokens,
        )
        self._balance_micro_usd = None
        await self.flush(RunUpdate(cursor=next_step_index, state=state.to_json()))
        if self._balance_micro_usd is not None and self._balance_micro_usd <= 0:
            raise CreditsExhausted(micro_to_usd(self._balance_micro_usd))

    async def flush(self, update: RunUpdate | None = None) -> None:
        """Wait until everything emitted so far is stored, and `update` applied with the last of it
        in the same transaction.

        The update waits in a slot that the next write takes together with the pending events:
        usually that is the background flusher's write, so a step's events and its checkpoint cost
        one transaction, not two."""
        if update is not None:
            # Taken only if an earlier flush was abandoned (its caller cancelled) before a write
            # took its update: both still apply, the later one winning field by field.
            self._update = update if self._update is None else _merged(self._update, update)
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        self._raise_if_failed()
        if self._pending or self._update is not None:
            await self._write()

    async def _flush_pending(self) -> None:
        try:
            while self._pending:
                await self._write()
        except BaseException as exc:  # surfaced to the engine on its next emit
            self._failure = exc

    async def _write(self) -> None:
        # Shielded: cancelling the run mid-write must not leave a batch half-known (taken from
        # `_pending` but maybe not stored), or the next write would leave a gap in the seqs.
        await asyncio.shield(self._write_batch())

    async def _write_batch(self) -> None:
        async with self._write_lock:
            batch, self._pending = self._pending, []
            update, self._update = self._update, None
            # A charge goes with its checkpoint's update (they are set together; a charge is
            # cumulative, so a later one covers an earlier one that was never written).
            charge, self._charge = (self._charge, None) if update is not None else (None, self._charge)
            rows = [EventRow(e.seq, e.type, e.data.decode(), created_at=at) for e, at in batch]
            began = time.perf_counter()
            if charge is None:
                promoted = await self._store.record(self._run_id, self._attempt, rows, update)
            else:
                recorded = await self._store.record_step(self._run_id, self._attempt, rows, update, charge)
                promoted, self._balance_micro_usd = recorded.promoted, recorded.balance_micro_usd
            metrics.events_written(len(rows), began)
            if batch:
                await self._bus.publish(self._run_id, [e for e, _ in batch])
            if promoted is not None:  # the next turn of this run's thread can start now
                await self._bus.announce_work()

    async def settle(self) -> None:
        """Wait until the background write in flight, if any, has ended, whether it failed or not:
        afterwards the store holds every event this writer will ever write."""
        if self._flusher is not None:
            await asyncio.wait({self._flusher})

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


def _merged(first: RunUpdate, then: RunUpdate) -> RunUpdate:
    changes = {
        field.name: getattr(then, field.name)
        for field in dataclasses.fields(then)
        if getattr(then, field.name) is not UNSET
    }
    changes["release_lease"] = first.release_lease or then.release_lease
    return dataclasses.replace(first, **changes)
