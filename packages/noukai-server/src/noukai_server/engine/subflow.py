"""Flows that run flows, as the engine sees them: a `flow` step (and an agent's `flow:` tool) asks
the run's *host* to run another flow as a child run and waits for its result.

The engine knows no store, so the host comes from the runtime (`runtime/child_runs.py`), which
creates the child's run row, drives the engine on it inline and copies its events into the
parent's log. The host is a context variable rather than an engine argument: each run executes in
its own task (a child in a task of its own too), so the host set there is the one of that run,
and a step executor reaches it without every engine call passing it down.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from noukai.types import events as ev
from noukai.types.errors import ErrorCode
from noukai.types.events import FlowTransferFields
from noukai_server.engine.outcome import StepFailure
from noukai_server.engine.sink import EventSink
from noukai_server.flows import FLOW_TOOL_PREFIX
from noukai_server.providers import ToolSpec


@dataclass(frozen=True, slots=True)
class ChildRequest:
    """One child run a step asks for."""

    step_id: str
    """The parent's step that runs the child."""
    step_index: int
    attempt: int
    key: str
    """What tells this child apart from the step's others: its `foreach` index, or the agent's tool
    call id. With the parent's run id, the step id and `attempt` it names the child for good, so
    a parent resumed after a lost worker finds the child it started, and a retry starts another."""
    flow: str
    """`org/project/slug`."""
    version: int | None
    """None: the latest published version (else the draft); 0: the draft; N: version N."""
    parameters: Mapping[str, Any]
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ChildResult:
    run_id: str
    output: Any


class SubflowHost(Protocol):
    """What runs child runs for the engine (`runtime/child_runs.ChildRuns`)."""

    async def run_child(
        self,
        request: ChildRequest,
        sink: EventSink,
        on_start: Callable[[str], Awaitable[None]] | None = None,
    ) -> ChildResult:
        """Run the child to its end and return its result; its events are copied into `sink` (the
        parent's log) as `subflow_event`, and `on_start(child_run_id)` is awaited once the child's
        run exists. Raises `StepFailure` when the child cannot start, fails or is cancelled."""
        ...

    async def flow_tool(self, flow: str) -> FlowTool:
        """The tool an agent's `flow:org/project/slug` offers its model: named after the flow's
        slug, described by its description, its parameters the flow's declared inputs (newest
        version). Raises `StepFailure` when there is no such flow."""
        ...


_host: ContextVar[SubflowHost | None] = ContextVar("noukai_subflow_host", default=None)


def use_host(host: SubflowHost | None) -> None:
    """In the task that executes a run: the host its `flow` steps and `flow:` tools use."""
    _host.set(host)


def current_host(step_id: str) -> SubflowHost:
    """The host of the run being executed; a step fails when the engine runs without one (a bare
    engine in a test or a script has no store to keep a child run in)."""
    host = _host.get()
    if host is None:
        raise StepFailure(
            ErrorCode.SUBFLOW_INVALID,
            f"step '{step_id}' runs another flow, which needs the server's runtime (no run host here)",
        )
    return host


@dataclass(frozen=True, slots=True)
class FlowTool:
    """An agent's `flow:` tool, bound for one run of its step."""

    flow: str
    """`org/project/slug`."""
    spec: ToolSpec
    takes_message: bool
    """The flow declares no inputs: the model sends it a `message` (its only argument)."""


async def bind_flow_tools(step_id: str, references: Sequence[str]) -> dict[str, FlowTool]:
    """The `flow:` tools of an agent step, by the name the model calls (the flow's slug; the first
    of two flows with one slug wins, as with any two tools of one name)."""
    tools: dict[str, FlowTool] = {}
    if not references:
        return tools
    host = current_host(step_id)
    for reference in references:
        flow = reference.removeprefix(FLOW_TOOL_PREFIX)
        tool = await host.flow_tool(flow)
        tools.setdefault(tool.spec.name, tool)
    return tools


@dataclass(frozen=True, slots=True)
class FlowToolCall:
    """One call of a `flow:` tool by an agent step's model."""

    step_id: str
    step_index: int
    attempt: int
    tool_call_id: str
    arguments: str
    """The model's JSON arguments: the flow's parameters (or `{"message": ...}` for a flow that
    declares no inputs)."""
    loop_index: int | None = None
    """The agent step's `foreach` iteration: tool call ids repeat across iterations."""


async def run_flow_tool(tool: FlowTool, call: FlowToolCall, sink: EventSink) -> str:
    """Run the flow as a child run of the step and return its result as the tool's result text
    (JSON unless it is a string). `flow_transfer` is written once the child exists. A child that
    fails raises `StepFailure`; the agent hands it to the model as the tool's error."""
    try:
        arguments = orjson.loads(call.arguments or "{}")
    except orjson.JSONDecodeError as exc:
        raise StepFailure(ErrorCode.SUBFLOW_INVALID, f"the arguments are not JSON: {exc}") from exc
    if not isinstance(arguments, dict):
        raise StepFailure(ErrorCode.SUBFLOW_INVALID, "the arguments must be a JSON object")
    message = arguments.pop("message", None) if tool.takes_message else None
    # Tool call ids are unique within one loop of the agent, not across its `foreach` iterations.
    loop = "" if call.loop_index is None else f"{call.loop_index}-"
    request = ChildRequest(
        step_id=call.step_id,
        step_index=call.step_index,
        attempt=call.attempt,
        key=f"tool-{loop}{call.tool_call_id}",
        flow=tool.flow,
        version=None,
        parameters=arguments,
        message=message if isinstance(message, str) else None,
    )

    async def transferred(child_run_id: str) -> None:
        transfer: FlowTransferFields = {
            "stepId": call.step_id,
            "stepIndex": call.step_index,
            "attempt": call.attempt,
            "toolCallId": call.tool_call_id,
            "childRunId": child_run_id,
            "flow": tool.flow,
        }
        await sink.emit(ev.FLOW_TRANSFER, transfer)

    result = await current_host(call.step_id).run_child(request, sink, on_start=transferred)
    output = result.output
    return output if isinstance(output, str) else orjson.dumps(output).decode()
