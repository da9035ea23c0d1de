"""A call's inputs checked and bound before any run exists, as `noukai serve` checks a request
(`RunService.check_inputs` and `bind_inputs`): the same codes, raised as the SDK's errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from noukai.types.errors import ErrorCode
from noukai_server.engine import RunInputs
from noukai_server.flows import (
    FlowSpec,
    InputError,
    OverrideError,
    apply_block_overrides,
    bind_parameters,
)
from noukai_server.local.errors import sdk_error
from noukai_server.runtime.errors import RequestRejected
from noukai_server.runtime.runs import MAX_ATTACHMENTS, check_client_tools

_ROLES = ("user", "assistant", "tool")


@dataclass(frozen=True, slots=True)
class CallInputs:
    """What one invoke/stream call passes to a run (the SDK's `execute` arguments)."""

    message: str | None = None
    messages: list[dict[str, Any]] | None = None
    parameters: Mapping[str, Any] | None = None
    attachments: list[dict[str, Any]] | None = None
    block_overrides: dict[str, dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None


def prepared(spec: FlowSpec, call: CallInputs) -> tuple[FlowSpec, RunInputs]:
    """The spec to run (block overrides applied) and the run's inputs (parameters bound to the
    flow's declared inputs); the SDK's error for what a server would refuse."""
    if call.message is not None and call.messages:
        raise ValueError("pass message or messages, not both")
    message = call.message
    if call.messages is not None:
        for index, entry in enumerate(call.messages):
            role = entry.get("role") if isinstance(entry, dict) else None
            if role not in _ROLES:
                raise sdk_error(
                    ErrorCode.MESSAGES_ROLE_INVALID,
                    f"messages[{index}].role is {role!r}; allowed roles: assistant, tool, user",
                )
        if message is None:  # a conversation's last user turn is the current message
            turns = [m for m in call.messages if m.get("role") == "user"]
            content = turns[-1].get("content") if turns else None
            message = content if isinstance(content, str) else None
    if call.attachments is not None and len(call.attachments) > MAX_ATTACHMENTS:
        raise sdk_error(ErrorCode.VALIDATION_ERROR, f"at most {MAX_ATTACHMENTS} attachments are accepted")
    if message is None and not call.messages and spec.uses_message():
        raise sdk_error(
            ErrorCode.MISSING_MESSAGE, f"flow '{spec.slug}' uses `message` in its templates; send a message"
        )
    if call.block_overrides:
        try:
            spec = apply_block_overrides(spec, call.block_overrides)
        except OverrideError as exc:
            raise sdk_error(ErrorCode.INVALID_OVERRIDE, str(exc)) from exc
    if call.tools:
        try:
            check_client_tools(call.tools)
        except RequestRejected as exc:
            raise sdk_error(exc.code, exc.message) from exc
        if not any(step.type == "agent" for step in spec.steps):
            raise sdk_error(
                ErrorCode.TOOLS_NOT_ENABLED, f"flow '{spec.slug}' has no agent step, so it cannot call tools"
            )
    try:
        parameters = bind_parameters(spec, call.parameters)
    except InputError as exc:
        raise sdk_error(ErrorCode.VALIDATION_ERROR, f"flow '{spec.slug}': {exc.message}") from exc
    inputs = RunInputs(
        message=message,
        messages=call.messages,
        parameters=parameters,
        attachments=call.attachments,
        block_overrides=call.block_overrides,
        tools=call.tools,
        tool_choice=call.tool_choice,
    )
    return spec, inputs
