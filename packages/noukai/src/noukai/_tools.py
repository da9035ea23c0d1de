"""Client-side tool calls: handler checks and the resume request of a paused `/execute` run."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from noukai._errors import ToolCallLimitError
from noukai.types.wire import ExecuteRequest

ToolResults = list[dict[str, Any]]
ToolCalls = list[dict[str, Any]]
ToolHandler = Callable[[ToolCalls], ToolResults]
AsyncToolHandler = Callable[[ToolCalls], ToolResults | Awaitable[ToolResults]]


def is_async_callable(handler: object) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return inspect.iscoroutinefunction(call)


def check_sync_handler(handler: object | None) -> None:
    if handler is None:
        return
    if not callable(handler):
        raise TypeError(f"tool_handler must be callable, got {type(handler).__name__}")
    if is_async_callable(handler):
        raise TypeError("Flow.execute takes a sync tool_handler; use AsyncNoukai for an async one")


def check_results(results: object) -> ToolResults:
    if not isinstance(results, list) or not all(isinstance(item, dict) for item in results):
        raise TypeError("a tool handler must return a list of dicts (one per tool call)")
    return results


def check_rounds(rounds_done: int, max_rounds: int, execution_id: str | None) -> None:
    if rounds_done >= max_rounds:
        raise ToolCallLimitError(
            f"the flow still wants tool results after {max_rounds} rounds", execution_id=execution_id
        )


def resume_request(
    original: ExecuteRequest,
    *,
    execution_id: str,
    paused_at_step: str,
    iterations_used: int,
    tool_call_messages: list[dict[str, Any]],
    accumulated_outputs: dict[str, Any],
    tool_results: ToolResults,
) -> ExecuteRequest:
    """The body that resumes a paused run: the original inputs minus `message`, the pause's state,
    and the conversation with the tool results appended unchanged."""
    return ExecuteRequest(
        parameters=original.parameters,
        block_overrides=original.block_overrides,
        attachments=original.attachments,
        tools=original.tools,
        tool_choice=original.tool_choice,
        execution_id=execution_id,
        paused_at_step=paused_at_step,
        iterations_used=iterations_used,
        tool_call_messages=[*tool_call_messages, *tool_results],
        accumulated_outputs=accumulated_outputs,
        trace=original.trace,
    )
