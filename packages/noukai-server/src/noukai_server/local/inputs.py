"""A call's inputs checked and bound before any run exists, as `noukai serve` checks a request
(`RunService.check_inputs` and `bind_inputs`): the same codes, raised as the SDK's errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from noukai.types.errors import ErrorCode
from noukai_server.engine import RunInputs
from noukai_server.flows import FlowSpec, InputError, apply_block_overrides, bind_parameters
from noukai_server.local.errors import sdk_error
from noukai_server.runtime.errors import RequestRejected
from noukai_server.runtime.runs import check_run_inputs


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
    flow's declared inputs); the SDK's error for what a server would refuse, checked by the
    server's own `check_run_inputs`."""
    if call.message is not None and call.messages:
        raise ValueError("pass message or messages, not both")
    asked = RunInputs(
        message=call.message,
        messages=call.messages,
        attachments=call.attachments,
        block_overrides=call.block_overrides,
        tools=call.tools,
        tool_choice=call.tool_choice,
    )
    try:
        check_run_inputs(spec, asked)
    except RequestRejected as exc:
        raise sdk_error(exc.code, exc.message) from exc
    message = call.message
    if message is None and call.messages:  # a conversation's last user turn is the current message
        turns = [m for m in call.messages if m.get("role") == "user"]
        content = turns[-1].get("content") if turns else None
        message = content if isinstance(content, str) else None
    if call.block_overrides:  # checked above: applying them cannot fail now
        spec = apply_block_overrides(spec, call.block_overrides)
    try:
        parameters = bind_parameters(spec, call.parameters)
    except InputError as exc:
        raise sdk_error(ErrorCode.VALIDATION_ERROR, f"flow '{spec.slug}': {exc.message}") from exc
    return spec, replace(asked, message=message, parameters=parameters)
