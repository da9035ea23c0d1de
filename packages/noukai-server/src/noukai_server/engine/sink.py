"""The one interface through which the engine reports what happens: no HTTP, no SQL behind it here."""

from __future__ import annotations

from typing import Any, Protocol

from noukai_server.engine.state import RunState


class EventSink(Protocol):
    async def emit(self, event_type: str, payload: dict[str, Any]) -> None:
        """Append one event to the run's log (the sink assigns its seq and serialises it once)."""
        ...

    async def checkpoint(self, next_step_index: int, state: RunState) -> None:
        """A step finished: make the cursor and outputs durable together with its events."""
        ...
