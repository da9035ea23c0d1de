"""Flows as MCP tools: which tools a key sees, their names and input schemas, and a call run as a
flow with a progress report per completed step. The MCP SDK's server is wired in
`api.mcp_endpoint`; this module knows nothing of it.

A tool's name is `org__project__slug` with every character outside `[A-Za-z0-9_-]` made `_`
(names that models accept as function names), cut at 64 characters; should two flows end with
the same name, the first by org, project and slug keeps it and the others are not listed. Its
input schema is the flow's declared inputs as properties, plus `message` (a string, required
when the flow's templates read it). The result is the flow's result as text (JSON for
non-string results), with `{"result", "executionId"}` as structured content.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Final

from noukai.types import events as ev
from noukai.types.errors import ErrorCode
from noukai_server.engine import RunInputs
from noukai_server.flows import FlowSpec
from noukai_server.runtime.errors import RequestRejected
from noukai_server.runtime.protocols.common import FlowAddress, ProtocolRuns, result_text
from noukai_server.store import ApiKeyRecord

MAX_TOOL_NAME: Final = 64
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]")

Progress = Callable[[float, float, str], Awaitable[None]]
"""`(progress, total, message)`: reports one step of a call."""


def tool_name(org: str, project: str, slug: str) -> str:
    return _UNSAFE.sub("_", f"{org}__{project}__{slug}")[:MAX_TOOL_NAME]


def input_schema(spec: FlowSpec) -> dict[str, Any]:
    """The JSON schema of a call's arguments: `message` and the flow's declared inputs."""
    properties: dict[str, Any] = {
        "message": {"type": "string", "description": "The user message the flow reads as `message`."}
    }
    required = ["message"] if spec.uses_message() else []
    for name, declared in spec.inputs.items():
        schema: dict[str, Any] = {"type": declared.type}
        if declared.description:
            schema["description"] = declared.description
        if declared.has_default:
            schema["default"] = declared.default
        properties[name] = schema
        if declared.is_required:
            required.append(name)
    return {"type": "object", "properties": properties, "required": required}


@dataclass(frozen=True, slots=True)
class FlowTool:
    name: str
    title: str
    description: str
    input_schema: dict[str, Any]
    address: FlowAddress


async def flow_tools(runs: ProtocolRuns, key: ApiKeyRecord) -> list[FlowTool]:
    """The tools of the flows the key may run (a flow that cannot be loaded is left out)."""
    tools: dict[str, FlowTool] = {}
    for flow in await runs.runnable_flows(key):
        address = FlowAddress(flow.org_id, flow.project_slug, flow.slug)
        name = tool_name(flow.org_id, flow.project_slug, flow.slug)
        if name in tools:
            continue
        try:
            target = await runs.target(key, address)
        except RequestRejected:
            continue
        title = flow.name or target.spec.name or flow.slug
        description = f"Run the Noukai flow {address.model_id} ({title}) and answer with its result."
        tools[name] = FlowTool(name, title, description, input_schema(target.spec), address)
    return list(tools.values())


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    text: str
    """The result as text, or why the call failed."""
    is_error: bool
    result: Any = None
    execution_id: str | None = None


def _inputs(arguments: Mapping[str, Any] | None) -> RunInputs:
    parameters = dict(arguments or {})
    message = parameters.pop("message", None)
    if message is not None and not isinstance(message, str):
        raise RequestRejected(ErrorCode.VALIDATION_ERROR, "`message` must be a string")
    return RunInputs(message=message, parameters=parameters)


async def call_flow(
    runs: ProtocolRuns,
    key: ApiKeyRecord,
    tool: FlowTool,
    arguments: Mapping[str, Any] | None,
    progress: Progress,
) -> ToolOutcome:
    """Run the tool's flow to its end. A refused call or a failed run is an error result (the
    model reads why), not a protocol error."""
    try:
        target = await runs.target(key, tool.address)
        segment = await runs.start(target, _inputs(arguments), key=key)
    except RequestRejected as exc:
        return ToolOutcome(f"{exc.code}: {exc.message}", True)
    total = float(len(target.spec.steps))
    done = 0
    async with aclosing(runs.events(segment)) as events:
        async for event in events:
            if event is None:
                continue
            kind = event["eventType"]
            if kind == ev.STEP_COMPLETED:
                done += 1
                state = "skipped" if event.get("skipped") else "completed"
                await progress(float(done), total, f"step {event['stepId']} {state}")
            elif kind == ev.FLOW_COMPLETED:
                result = event["result"]
                return ToolOutcome(result_text(result), False, result, segment.run_id)
            elif kind == ev.RUN_FAILED:
                error = event["error"]
                return ToolOutcome(f"{error['code']}: {error['message']}", True, None, segment.run_id)
            elif kind == ev.RUN_CANCELLED:
                cancelled = f"{ErrorCode.RUN_CANCELLED}: the run was cancelled"
                return ToolOutcome(cancelled, True, None, segment.run_id)
            elif kind == ev.STEP_PAUSED_FOR_TOOL_CALLS:  # no client tools over MCP; never expected
                return ToolOutcome("the flow asked for client tools, which MCP calls cannot answer", True)
    return ToolOutcome(f"{ErrorCode.INTERNAL_ERROR}: the run's events ended early", True)
