"""Typed run events: one pydantic model per event type, discriminated by `.type`.

`.type` is the README's name for the event. It equals the wire name except for two: the wire's
`step_paused_for_tool_calls` is `"tool_calls_required"` (class `ToolCallsRequired`) and the
legacy `flow_started` is `"run_started"`. `step_error` keeps its name (class `StepFailed`).
Events this SDK does not know, or cannot validate, arrive as `UnknownEvent` with their whole
payload, so nothing the server sends is dropped. Known events keep unknown fields too
(`event.model_extra`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError
from pydantic.alias_generators import to_camel

from noukai._models import TokenUsage

__all__ = [
    "FlowCompleted",
    "FlowTransfer",
    "GuardTripped",
    "RunCancelled",
    "RunFailed",
    "RunStarted",
    "StepCompleted",
    "StepFailed",
    "StepInput",
    "StepOutput",
    "StepPaused",
    "StepProgress",
    "StepReasoning",
    "StepRetrying",
    "StepStarted",
    "StreamEvent",
    "SubflowEvent",
    "ToolCallCompleted",
    "ToolCallStarted",
    "ToolCallsRequired",
    "UnknownEvent",
    "parse_event",
]


class _Event(BaseModel):
    # Not populated by field name: step events carry the step's own `type` ("llm", ...) on the
    # wire, which must land in `step_type`, never in the event's `type`.
    model_config = ConfigDict(alias_generator=to_camel, extra="allow", frozen=True)

    seq: int | None = None
    """The event's position in the run's log (1, 2, 3 ...)."""


class _ErrorMixin:
    """`.code` and `.message` read from the event's `error` object."""

    @property
    def code(self) -> str | None:
        value = (getattr(self, "error", None) or {}).get("code")
        return value if isinstance(value, str) else None

    @property
    def message(self) -> str | None:
        value = (getattr(self, "error", None) or {}).get("message")
        return value if isinstance(value, str) else None


class RunStarted(_Event):
    type: Literal["run_started"] = Field("run_started", alias="eventType")
    run_id: str | None = None
    execution_id: str | None = None
    flow_id: str | None = None
    step_count: int | None = None
    flow_version: int | None = None
    trigger_type: str | None = None


class StepStarted(_Event):
    type: Literal["step_started"] = Field("step_started", alias="eventType")
    step_id: str
    name: str | None = None
    step_index: int | None = None
    step_type: str | None = Field(None, alias="type")
    attempt: int | None = None


class StepInput(_Event):
    type: Literal["step_input"] = Field("step_input", alias="eventType")
    step_id: str
    step_index: int | None = None
    loop_index: int | None = None
    attempt: int | None = None
    input_data: dict[str, Any] | None = None
    input_size_bytes: int | None = None
    """Size of the whole input as compact JSON, even when the flow's capture mode keeps less of it."""


class StepOutput(_Event):
    """A streamed chunk of a step's output (for model steps, a text delta)."""

    type: Literal["step_output"] = Field("step_output", alias="eventType")
    step_id: str
    step_index: int | None = None
    loop_index: int | None = None
    attempt: int | None = None
    output_data: Any = None

    @property
    def text(self) -> str:
        """The chunk as text ("" when it is not text)."""
        return self.output_data if isinstance(self.output_data, str) else ""


class StepReasoning(_Event):
    """A reasoning delta, from providers that expose their reasoning."""

    type: Literal["step_reasoning"] = Field("step_reasoning", alias="eventType")
    step_id: str
    step_index: int | None = None
    loop_index: int | None = None
    attempt: int | None = None
    delta: str = ""


class StepProgress(_Event):
    """One finished iteration of a `foreach` step."""

    type: Literal["step_progress"] = Field("step_progress", alias="eventType")
    step_id: str
    step_index: int | None = None
    loop_index: int | None = None
    attempt: int | None = None
    output: Any = None
    duration_ms: int | None = None
    tokens: TokenUsage | None = None
    cost_usd: str | None = None
    """Estimated cost of the iteration as a decimal string, e.g. "0.000150"."""
    model: str | None = None


class StepCompleted(_Event):
    type: Literal["step_completed"] = Field("step_completed", alias="eventType")
    step_id: str
    name: str | None = None
    step_index: int | None = None
    step_type: str | None = Field(None, alias="type")
    output: Any = None
    duration_ms: int | None = None
    tokens: TokenUsage | None = None
    cost_usd: str | None = None
    """Estimated cost as a decimal string, e.g. "0.000150"."""
    model: str | None = None
    attempt: int | None = None
    skipped: bool = False
    """True when the step's `when` was false (its output is None)."""


class StepFailed(_ErrorMixin, _Event):
    """A step failed (`step_error` on the wire); `run_failed` follows."""

    type: Literal["step_error"] = Field("step_error", alias="eventType")
    step_id: str
    name: str | None = None
    step_index: int | None = None
    step_type: str | None = Field(None, alias="type")
    loop_index: int | None = None
    attempt: int | None = None
    error: dict[str, Any] | None = None
    duration_ms: int | None = None


class StepRetrying(_ErrorMixin, _Event):
    """A step attempt failed (or its worker was lost) and the step runs again after `backoff_ms`."""

    type: Literal["step_retrying"] = Field("step_retrying", alias="eventType")
    step_id: str
    name: str | None = None
    step_index: int | None = None
    step_type: str | None = Field(None, alias="type")
    loop_index: int | None = None
    attempt: int | None = None
    """The attempt that ended."""
    next_attempt: int | None = None
    backoff_ms: int | None = None
    error: dict[str, Any] | None = None
    duration_ms: int | None = None


class StepPaused(_Event):
    """The paced step protocol paused after a step; the SDK advances it for you."""

    type: Literal["step_paused"] = Field("step_paused", alias="eventType")
    step_id: str | None = None
    step_index: int | None = None
    next_step_index: int | None = None
    run_id: str | None = None
    execution_id: str | None = None


class _Resumption:
    """What `ToolCallsRequired.resume()` returns: already done, and awaitable for async code."""

    def __await__(self) -> Generator[Any, Any, None]:
        return
        yield  # pragma: no cover - makes this a generator


class ToolCallsRequired(_Event):
    """The run paused for tool results (`step_paused_for_tool_calls` on the wire).

    Call `resume(tool_results=[...])` (or `await` it in async code) inside the loop; the iterator
    then sends the results and goes on. If you do not, the iterator ends after this event.
    """

    type: Literal["tool_calls_required"] = Field("tool_calls_required", alias="eventType")
    run_id: str | None = None
    execution_id: str | None = None
    step_id: str | None = None
    step_index: int | None = None
    attempt: int | None = None
    iterations_used: int = 0
    tool_call_messages: list[dict[str, Any]] = Field(default_factory=list)
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    accumulated_outputs: dict[str, Any] = Field(default_factory=dict)
    _on_resume: Callable[[list[dict[str, Any]]], None] | None = PrivateAttr(None)

    def resume(self, tool_results: list[dict[str, Any]]) -> _Resumption:
        if self._on_resume is None:
            raise RuntimeError("this event was not yielded by a stream that can resume it")
        self._on_resume(list(tool_results))
        return _Resumption()


class ToolCallStarted(_Event):
    type: Literal["tool_call_started"] = Field("tool_call_started", alias="eventType")
    step_id: str | None = None
    step_index: int | None = None
    tool_call_id: str | None = None
    name: str | None = None
    side: str | None = None
    """`"server"` (a tool the server runs) or `"client"` (one of your tools: the run pauses)."""
    arguments: Any = None


class ToolCallCompleted(_Event):
    type: Literal["tool_call_completed"] = Field("tool_call_completed", alias="eventType")
    step_id: str | None = None
    step_index: int | None = None
    tool_call_id: str | None = None
    name: str | None = None
    side: str | None = None
    """`"server"` or `"client"`, as in `ToolCallStarted`."""
    result: Any = None
    error: Any = None
    duration_ms: int | None = None


class SubflowEvent(_Event):
    """An event of a child run (a `flow` step's, or an agent's `flow:` tool's) in its parent's
    stream; `child_event()` parses the wrapped entry itself."""

    type: Literal["subflow_event"] = Field("subflow_event", alias="eventType")
    parent_step_id: str | None = None
    child_run_id: str | None = None
    flow: str | None = None
    depth: int | None = None
    event: dict[str, Any] | None = None

    def child_event(self) -> StreamEvent:
        """The child's own event, typed as its stream would yield it."""
        return event_from_payload(None, self.event or {})


class FlowTransfer(_Event):
    """An agent step handed a tool call to another flow, run as the child `child_run_id`."""

    type: Literal["flow_transfer"] = Field("flow_transfer", alias="eventType")
    step_id: str | None = None
    step_index: int | None = None
    attempt: int | None = None
    tool_call_id: str | None = None
    child_run_id: str | None = None
    flow: str | None = None


class GuardTripped(_Event):
    """A guard's check failed (`guard_tripped`): on the run's input (`target == "input"`) or on a
    step's output (`"step"`); `on_fail` says what follows (fail, retry the step, or replace)."""

    type: Literal["guard_tripped"] = Field("guard_tripped", alias="eventType")
    guard: str | None = None
    """The guard's name."""
    kind: str | None = None
    """`condition`, `schema`, `regex`, `function` or `judge`."""
    target: str | None = None
    on_fail: str | None = None
    reason: str | None = None
    input: str | None = None
    """The input checked (`message` or `parameters.<name>`), for an input guard."""
    step_id: str | None = None
    step_index: int | None = None
    attempt: int | None = None


class FlowCompleted(_Event):
    type: Literal["flow_completed"] = Field("flow_completed", alias="eventType")
    run_id: str | None = None
    execution_id: str | None = None
    result: Any = None
    summary: dict[str, Any] | None = None


class RunFailed(_ErrorMixin, _Event):
    type: Literal["run_failed"] = Field("run_failed", alias="eventType")
    run_id: str | None = None
    execution_id: str | None = None
    error: dict[str, Any] | None = None


class RunCancelled(_Event):
    type: Literal["run_cancelled"] = Field("run_cancelled", alias="eventType")
    run_id: str | None = None
    execution_id: str | None = None


class UnknownEvent(BaseModel):
    """An event this SDK does not know, or whose payload did not validate; `data` is all of it."""

    model_config = ConfigDict(frozen=True)

    type: str
    seq: int | None = None
    data: Any = None
    error: str | None = None
    """Why a known event type did not validate (None for unknown types)."""


StreamEvent = (
    RunStarted
    | StepStarted
    | StepInput
    | StepOutput
    | StepReasoning
    | StepProgress
    | StepCompleted
    | StepFailed
    | StepRetrying
    | StepPaused
    | ToolCallsRequired
    | ToolCallStarted
    | ToolCallCompleted
    | SubflowEvent
    | FlowTransfer
    | GuardTripped
    | FlowCompleted
    | RunFailed
    | RunCancelled
    | UnknownEvent
)
"""Every event a stream can yield."""

_CLASSES: dict[str, type[_Event]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        RunStarted,
        StepStarted,
        StepInput,
        StepOutput,
        StepReasoning,
        StepProgress,
        StepCompleted,
        StepFailed,
        StepRetrying,
        StepPaused,
        ToolCallsRequired,
        ToolCallStarted,
        ToolCallCompleted,
        SubflowEvent,
        FlowTransfer,
        GuardTripped,
        FlowCompleted,
        RunFailed,
        RunCancelled,
    )
}

_SDK_TYPE = {
    "run_started": "run_started",
    "flow_started": "run_started",
    "step_started": "step_started",
    "step_input": "step_input",
    "step_output": "step_output",
    "step_reasoning": "step_reasoning",
    "step_progress": "step_progress",
    "step_completed": "step_completed",
    "step_error": "step_error",
    "step_retrying": "step_retrying",
    "step_paused": "step_paused",
    "step_paused_for_tool_calls": "tool_calls_required",
    "tool_calls_required": "tool_calls_required",
    "tool_call_started": "tool_call_started",
    "tool_call_completed": "tool_call_completed",
    "subflow_event": "subflow_event",
    "flow_transfer": "flow_transfer",
    "guard_tripped": "guard_tripped",
    "flow_completed": "flow_completed",
    "run_failed": "run_failed",
    "run_cancelled": "run_cancelled",
}


def sdk_type(wire_name: str) -> str:
    """The `.type` an event of this wire name gets."""
    return _SDK_TYPE.get(wire_name, wire_name)


def parse_event(name: str | None, data: str, *, seq: int | None = None) -> StreamEvent:
    """One SSE frame's event. The `event:` line wins over the payload's `eventType`."""
    try:
        payload: Any = json.loads(data) if data.strip() else {}
    except ValueError:
        return UnknownEvent(type=name or "message", seq=seq, data=data, error="data is not JSON")
    return event_from_payload(name, payload, seq=seq)


def event_from_payload(name: str | None, payload: Any, *, seq: int | None = None) -> StreamEvent:
    if not isinstance(payload, dict):
        return UnknownEvent(type=name or "message", seq=seq, data=payload, error="data is not an object")
    wire = name or payload.get("eventType")
    if not isinstance(wire, str) or not wire:
        return UnknownEvent(type="message", seq=seq, data=payload)
    if isinstance(payload.get("seq"), int):
        seq = payload["seq"]
    kind = _SDK_TYPE.get(wire)
    if kind is None:
        return UnknownEvent(type=wire, seq=seq, data=payload)
    try:
        # Dispatch on `.type` by hand: a pydantic tagged union would also read the tag from a
        # `type` key, which step events use for the step's own type.
        event: Any = _CLASSES[kind].model_validate({**payload, "eventType": kind, "seq": seq})
    except ValidationError as exc:
        return UnknownEvent(type=wire, seq=seq, data=payload, error=str(exc))
    result: StreamEvent = event
    return result
