"""What `invoke` returns: the run's outcome and every event it streamed, in order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from noukai import FlowCompleted, NoukaiError, RunCancelled, RunFailed, StreamEvent, ToolCallsRequired
from noukai.types.errors import ErrorCode
from noukai_server.local.errors import sdk_error


@dataclass(frozen=True, slots=True)
class LocalResult:
    """A finished (or tool-paused) in-process run.

    `events` are the typed events a `stream(granularity="all")` of the same call yields: a
    non-streamed run records them too. `status` is `"completed"` (with `result` and `summary`),
    or `"tool_calls_required"` when the flow called client tools and no `tool_handler` answered
    (`tool_calls` are the pending calls). A failed or stopped run raises instead, as the SDK's
    `execute` does."""

    run_id: str
    status: Literal["completed", "tool_calls_required"]
    result: Any = None
    summary: dict[str, Any] | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    events: list[StreamEvent] = field(default_factory=list)


def result_of(run_id: str, events: Sequence[StreamEvent]) -> LocalResult:
    """The outcome the run's last event says; the SDK's error for a failed or cancelled run."""
    last = events[-1] if events else None
    if isinstance(last, FlowCompleted):
        return LocalResult(run_id, "completed", last.result, last.summary, events=list(events))
    if isinstance(last, ToolCallsRequired):
        return LocalResult(run_id, "tool_calls_required", tool_calls=last.tool_calls, events=list(events))
    raise outcome_error(run_id, last)


def outcome_error(run_id: str, last: StreamEvent | None) -> NoukaiError:
    if isinstance(last, RunFailed):
        step = (last.error or {}).get("stepId")
        return sdk_error(
            last.code or ErrorCode.INTERNAL_ERROR.value,
            last.message or f"run {run_id} failed",
            run_id=run_id,
            step_id=step if isinstance(step, str) else None,
        )
    if isinstance(last, RunCancelled):
        return sdk_error(ErrorCode.RUN_CANCELLED, f"run {run_id} was cancelled", run_id=run_id)
    return sdk_error(ErrorCode.INTERNAL_ERROR, f"run {run_id} ended without a final event", run_id=run_id)
