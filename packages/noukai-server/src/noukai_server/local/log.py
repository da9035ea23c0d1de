"""The in-process run's log: the engine's `EventSink`, writing each event as the server's log
writer does (`{"eventType", "seq", **payload}`, serialised once with orjson) and handing the bytes
to one listener at once, with no store, bus or batching behind it.

Writing the very bytes the server stores, then parsing them with the SDK's own parser, is what
makes an in-process run's typed events the same as a served run's: parity by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson

from noukai.types.events import EventFields
from noukai_server.engine.sink import UnstorableValue
from noukai_server.engine.state import RunState


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One event of the run's log: its seq, wire name and JSON payload (the stored bytes)."""

    seq: int
    type: str
    data: bytes


Listener = Callable[[LogEntry], None]
"""Called on the engine's thread for each entry, in seq order, as soon as it is appended."""


class MemoryRunLog:
    """Appends a run's events in memory; gapless seqs from 1, as the server's `RunLogWriter`."""

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._entries: list[LogEntry] = []
        self.checkpoints = 0
        """Steps checkpointed so far (the engine checkpoints after each finished step)."""

    @property
    def entries(self) -> list[LogEntry]:
        return list(self._entries)

    @property
    def last_type(self) -> str | None:
        return self._entries[-1].type if self._entries else None

    def append(self, event_type: str, payload: EventFields) -> None:
        """Append at once. Synchronous, so that a run cancelled before its first await can still
        record its `run_cancelled` from a task's done callback."""
        seq = len(self._entries) + 1
        try:
            data = orjson.dumps({"eventType": event_type, "seq": seq, **payload})
        except orjson.JSONEncodeError as exc:
            # Before the seq is taken, as the server's writer does: the engine fails the step
            # with OUTPUT_NOT_SERIALIZABLE and goes on writing without a gap.
            raise UnstorableValue.of(event_type, payload, exc) from exc
        entry = LogEntry(seq, event_type, data)
        self._entries.append(entry)
        self._listener(entry)

    async def emit(self, event_type: str, payload: EventFields) -> None:
        self.append(event_type, payload)

    async def checkpoint(self, next_step_index: int, state: RunState) -> None:
        # Nothing to make durable: the run's state lives in the driver until it ends. No credit
        # is charged in-process, so `CreditsExhausted` never comes from here.
        self.checkpoints += 1
