"""The one interface through which the engine reports what happens: no HTTP, no SQL behind it here.

`emit` is typed per event: each step or tool event the engine writes must be the `...Fields`
TypedDict of its name (`noukai.types.events`), so `mypy --strict` checks every payload the engine
builds against the wire schema. Run-level events are not the engine's to write.
"""

from __future__ import annotations

from typing import Literal, Protocol, overload

from noukai.types.events import (
    StepCompletedFields,
    StepErrorFields,
    StepInputFields,
    StepOutputFields,
    StepProgressFields,
    StepReasoningFields,
    StepRetryingFields,
    StepStartedFields,
    ToolCallCompletedFields,
    ToolCallStartedFields,
)
from noukai_server.engine.state import RunState


class EventSink(Protocol):
    """Append one event to the run's log (the sink assigns its seq and serialises it once)."""

    @overload
    async def emit(self, event_type: Literal["step_started"], payload: StepStartedFields) -> None: ...
    @overload
    async def emit(self, event_type: Literal["step_input"], payload: StepInputFields) -> None: ...
    @overload
    async def emit(self, event_type: Literal["step_output"], payload: StepOutputFields) -> None: ...
    @overload
    async def emit(self, event_type: Literal["step_reasoning"], payload: StepReasoningFields) -> None: ...
    @overload
    async def emit(self, event_type: Literal["step_progress"], payload: StepProgressFields) -> None: ...
    @overload
    async def emit(self, event_type: Literal["step_completed"], payload: StepCompletedFields) -> None: ...
    @overload
    async def emit(self, event_type: Literal["step_error"], payload: StepErrorFields) -> None: ...
    @overload
    async def emit(self, event_type: Literal["step_retrying"], payload: StepRetryingFields) -> None: ...
    @overload
    async def emit(
        self, event_type: Literal["tool_call_started"], payload: ToolCallStartedFields
    ) -> None: ...
    @overload
    async def emit(
        self, event_type: Literal["tool_call_completed"], payload: ToolCallCompletedFields
    ) -> None: ...

    async def checkpoint(self, next_step_index: int, state: RunState) -> None:
        """A step finished: make the cursor and outputs durable together with its events."""
        ...
