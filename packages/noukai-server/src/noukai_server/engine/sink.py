"""The one interface through which the engine reports what happens: no HTTP, no SQL behind it here.

`emit` is typed per event: each step or tool event the engine writes must be the `...Fields`
TypedDict of its name (`noukai.types.events`), so `mypy --strict` checks every payload the engine
builds against the wire schema. Run-level events are not the engine's to write.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final, Literal, Protocol, overload

import orjson

from noukai.types.events import (
    FlowTransferFields,
    GuardTrippedFields,
    StepCompletedFields,
    StepErrorFields,
    StepInputFields,
    StepOutputFields,
    StepProgressFields,
    StepReasoningFields,
    StepRetryingFields,
    StepStartedFields,
    SubflowEventFields,
    ToolCallCompletedFields,
    ToolCallStartedFields,
)
from noukai_server.engine.state import RunState

MIN_INTEGER: Final = -(2**63)
MAX_INTEGER: Final = 2**64 - 1
"""The integers the log can store: orjson writes signed or unsigned 64 bits, no wider."""


class UnstorableValue(ValueError):
    """`emit` refuses an event whose payload cannot be written as JSON (an integer outside 64 bits,
    a set, an object, a key that is not a string). Nothing was appended: the event took no seq, so
    the log stays gapless and the caller can still write (the runner fails the step with
    `OUTPUT_NOT_SERIALIZABLE`).

    `where` is the path of the first such value in the payload (`output.rows[2].id`), `problem`
    what is wrong with it; `loop_index` the payload's `loopIndex`, when it has one."""

    def __init__(self, event_type: str, where: str, problem: str, loop_index: int | None) -> None:
        super().__init__(f"{event_type}: {where}: {problem}")
        self.event_type = event_type
        self.where = where
        self.problem = problem
        self.loop_index = loop_index

    @classmethod
    def of(cls, event_type: str, payload: Mapping[str, Any], error: Exception) -> UnstorableValue:
        """Locate what in `payload` made the serialiser raise `error`. Called only on that
        failure, so finding the value costs nothing on the way of an event that is stored."""
        found = next(_unstorable(payload, ""), None)
        where, problem = found or ("(payload)", str(error))
        loop_index = payload.get("loopIndex")
        return cls(event_type, where, problem, loop_index if isinstance(loop_index, int) else None)


class CreditsExhausted(Exception):
    """`checkpoint` stored the step's checkpoint (and charged the step), and the run's org has no
    credit left: the run must not start another step. The engine fails the run at this step
    boundary with `CREDITS_EXHAUSTED` (after the last step, the run simply completes)."""

    def __init__(self, balance_usd: str) -> None:
        super().__init__(f"the org's credit balance is {balance_usd} USD")
        self.balance_usd = balance_usd


def _unstorable(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Where `value` holds something orjson cannot write, and what, depth first."""
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return
    if isinstance(value, int):
        if not MIN_INTEGER <= value <= MAX_INTEGER:
            yield (
                where,
                (
                    f"an integer of {value.bit_length()} bits; JSON values here hold 64 at most "
                    f"({MIN_INTEGER} to {MAX_INTEGER})"
                ),
            )
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                yield (
                    where or "(payload)",
                    f"a key of type {type(key).__name__} ({key!r:.40}); keys must be strings",
                )
                return
            yield from _unstorable(item, f"{where}.{key}" if where else key)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _unstorable(item, f"{where}[{index}]")
        return
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        yield where, f"a value of type {type(value).__name__}, which is not JSON"


class EventSink(Protocol):
    """Append one event to the run's log (the sink assigns its seq and serialises it once).

    `emit` raises `UnstorableValue`, having appended nothing, when the payload cannot be stored."""

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
    @overload
    async def emit(self, event_type: Literal["subflow_event"], payload: SubflowEventFields) -> None: ...
    @overload
    async def emit(self, event_type: Literal["flow_transfer"], payload: FlowTransferFields) -> None: ...
    @overload
    async def emit(self, event_type: Literal["guard_tripped"], payload: GuardTrippedFields) -> None: ...

    async def checkpoint(self, next_step_index: int, state: RunState) -> None:
        """A step finished: make the cursor and outputs durable together with its events (and the
        step's charge). Raises `CreditsExhausted`, once all that is stored, when the org's credit
        balance is no longer positive."""
        ...
