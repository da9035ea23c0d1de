"""The `agent` step: a tool loop.

Each iteration asks the model with every tool it may use: the server-side tools the step names
(run here, their results fed back at once) and the client-side tools sent with the request. A
call to a client tool pauses the step: the conversation so far and the pending calls become an
`AgentPause` (`AgentLoopState.to_json()`), which the runtime stores durably; when the caller sends
results, the loop resumes from exactly that conversation. A step that keeps calling tools past
`max_iterations` fails with `TOOL_ITERATION_LIMIT`.

Conversations are kept in the OpenAI message shape (role, content, tool_calls, tool_call_id)
because that is what the wire's `toolCallMessages` carries and what clients append results to.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from noukai.types import events as ev
from noukai.types.errors import ErrorCode
from noukai.types.events import (
    ConversationMessage,
    ToolCallCompletedFields,
    ToolCallRequest,
    ToolCallStartedFields,
)
from noukai_server.engine.outcome import StepFailure
from noukai_server.engine.sink import EventSink
from noukai_server.engine.state import AgentPause, ToolResult, cost_from_json, cost_to_json
from noukai_server.engine.subflow import FlowTool, FlowToolCall, run_flow_tool
from noukai_server.engine.tool_source import BoundTool, ToolSource, ToolUnavailable, UnknownTool, resolve_all
from noukai_server.engine.tools import ToolError
from noukai_server.providers import ChatMessage, ModelRequest, ModelResponse, ToolCall, ToolSpec
from noukai_server.telemetry import tracing

ModelCall = Callable[[ModelRequest], Awaitable[tuple[ModelResponse, Decimal]]]
"""Streams one model call through the sink and returns the answer and its cost."""


@dataclass(slots=True)
class AgentLoopState:
    """Where an agent step's loop is: its conversation, the client-side calls it waits for (when it
    paused) and its totals. Stored, while the step waits, as an `AgentPause` (plain JSON)."""

    messages: list[ConversationMessage]
    pending: list[ToolCallRequest]
    iterations: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = field(default_factory=Decimal)
    """Exact, unrounded: the step's cost is rounded once, when its `costUsd` is written."""
    paused_at: float | None = None
    """Wall-clock time of the pause: a client tool's duration is how long the caller took."""

    def to_json(self) -> AgentPause:
        return {
            "pausedAt": self.paused_at,
            "messages": self.messages,
            "pending": self.pending,
            "iterations": self.iterations,
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "costUsd": cost_to_json(self.cost_usd),
        }

    @classmethod
    def from_json(cls, data: AgentPause) -> AgentLoopState:
        return cls(
            messages=list(data["messages"]),
            pending=list(data["pending"]),
            iterations=int(data["iterations"]),
            prompt_tokens=int(data.get("promptTokens", 0)),
            completion_tokens=int(data.get("completionTokens", 0)),
            cost_usd=cost_from_json(data),
            paused_at=data.get("pausedAt"),
        )


@dataclass(slots=True)
class AgentResult:
    text: str
    iterations: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    model: str | None


@dataclass(slots=True)
class AgentCall:
    step_id: str
    step_index: int
    model: str
    system: str | None
    prompt: str
    server_tools: Sequence[str]
    """The step's `tools:` references (`add`, `mcp:files`), resolved through the loop's source."""
    client_tools: Sequence[ToolSpec]
    tool_choice: Any
    max_iterations: int
    temperature: float | None = None
    max_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    flow_tools: Mapping[str, FlowTool] = field(default_factory=dict)
    """The step's `flow:` tools by the name the model calls: each call runs the flow as a child
    run (`engine/subflow.py`)."""
    attempt: int = 1
    loop_index: int | None = None


class AgentLoop:
    def __init__(self, tools: ToolSource) -> None:
        self._tools = tools

    async def run(
        self,
        call: AgentCall,
        sink: EventSink,
        model_call: ModelCall,
        *,
        resume: AgentLoopState | None = None,
        results: Sequence[Mapping[str, Any]] = (),
    ) -> AgentResult | AgentLoopState:
        # Resolved on every run and resume: an MCP server may have restarted in between.
        server_tools = await self._resolve(call)
        if resume is None:
            state = AgentLoopState(
                messages=[{"role": "user", "content": call.prompt}], pending=[], iterations=0
            )
        else:
            state = resume
            await self._accept_results(call, state, results, sink)
        flow_specs = [tool.spec for name, tool in call.flow_tools.items() if name not in server_tools]
        specs = [tool.spec for tool in server_tools.values()] + flow_specs + list(call.client_tools)
        client_names = {tool.name for tool in call.client_tools}
        model_name = None
        while True:
            if state.iterations >= call.max_iterations:
                raise StepFailure(
                    ErrorCode.TOOL_ITERATION_LIMIT,
                    f"step '{call.step_id}' called tools {state.iterations} times, its limit "
                    f"(max_iterations: {call.max_iterations})",
                )
            request = ModelRequest(
                model=call.model,
                messages=tuple(_chat(m) for m in state.messages),
                system=call.system,
                temperature=call.temperature,
                max_tokens=call.max_tokens,
                tools=tuple(specs),
                tool_choice=call.tool_choice if specs else None,
                extra=call.extra,
            )
            response, cost = await model_call(request)
            state.iterations += 1
            state.prompt_tokens += response.usage.prompt_tokens
            state.completion_tokens += response.usage.completion_tokens
            state.cost_usd += cost
            model_name = response.model or model_name
            if not response.tool_calls:
                return AgentResult(
                    response.text,
                    state.iterations,
                    state.prompt_tokens,
                    state.completion_tokens,
                    state.cost_usd,
                    model_name,
                )
            state.messages.append(
                {
                    "role": "assistant",
                    "content": response.text or None,
                    "tool_calls": [_openai_call(c) for c in response.tool_calls],
                }
            )
            for tool_call in response.tool_calls:
                started: ToolCallStartedFields = {
                    "stepId": call.step_id,
                    "stepIndex": call.step_index,
                    "toolCallId": tool_call.id,
                    "name": tool_call.name,
                    "arguments": tool_call.arguments,
                    "side": "client" if tool_call.name in client_names else "server",
                }
                await sink.emit(ev.TOOL_CALL_STARTED, started)
            pending = [c for c in response.tool_calls if c.name in client_names]
            for tool_call in response.tool_calls:
                if tool_call.name not in client_names:
                    await self._run_server_tool(call, server_tools, tool_call, state, sink)
            if pending:
                state.pending = [_openai_call(c) for c in pending]
                state.paused_at = time.time()
                return state

    async def _resolve(self, call: AgentCall) -> dict[str, BoundTool]:
        try:
            return await resolve_all(self._tools, call.server_tools)
        except UnknownTool as exc:
            raise StepFailure(ErrorCode.INVALID_TREE, f"step '{call.step_id}': {exc}") from exc
        except ToolUnavailable as exc:
            # The flow is fine; what serves its tools is not (an MCP server that does not start).
            raise StepFailure(
                ErrorCode.INTERNAL_ERROR, f"step '{call.step_id}': {exc}", retryable=True
            ) from exc

    async def _run_server_tool(
        self,
        call: AgentCall,
        server_tools: Mapping[str, BoundTool],
        tool_call: ToolCall,
        state: AgentLoopState,
        sink: EventSink,
    ) -> None:
        started = time.perf_counter()
        payload: ToolCallCompletedFields = {
            "stepId": call.step_id,
            "stepIndex": call.step_index,
            "toolCallId": tool_call.id,
            "name": tool_call.name,
            "side": "server",
        }
        tool = server_tools.get(tool_call.name)
        flow = call.flow_tools.get(tool_call.name)
        if tool is None and flow is not None:
            ran = FlowToolCall(
                step_id=call.step_id,
                step_index=call.step_index,
                attempt=call.attempt,
                tool_call_id=tool_call.id,
                arguments=tool_call.arguments,
                loop_index=call.loop_index,
            )
            try:
                content = await run_flow_tool(flow, ran, sink)
                payload["result"] = content
            except StepFailure as exc:  # the model reads why the flow failed, and may recover
                payload["error"] = f"{exc.code}: {exc.message}"
                content = f"error: {payload['error']}"
        elif tool is None:
            content = f"error: there is no tool named {tool_call.name!r}"
            payload["error"] = content
        else:
            try:
                with tracing.tool_call(tool_call.name, tool_call.id, tool_call.arguments) as traced:
                    content = await tool.call(tool_call.arguments)
                    traced.result(content)
                payload["result"] = content
            except ToolError as exc:
                content = f"error: {exc}"
                payload["error"] = str(exc)
        payload["durationMs"] = int((time.perf_counter() - started) * 1000)
        await sink.emit(ev.TOOL_CALL_COMPLETED, payload)
        state.messages.append({"role": "tool", "tool_call_id": tool_call.id, "content": content})

    async def _accept_results(
        self,
        call: AgentCall,
        state: AgentLoopState,
        results: Sequence[Mapping[str, Any]],
        sink: EventSink,
    ) -> None:
        by_id = {str(r["tool_call_id"]): str(r["content"]) for r in results}
        waited = None if state.paused_at is None else max(0.0, time.time() - state.paused_at)
        for pending in state.pending:
            content = by_id[pending["id"]]
            payload: ToolCallCompletedFields = {
                "stepId": call.step_id,
                "stepIndex": call.step_index,
                "toolCallId": pending["id"],
                "name": pending["function"]["name"],
                "result": content,
                "side": "client",
            }
            if waited is not None:
                payload["durationMs"] = int(waited * 1000)
            arguments = pending["function"].get("arguments") or "{}"
            tracing.client_tool_result(payload["name"], pending["id"], state.paused_at, arguments, content)
            await sink.emit(ev.TOOL_CALL_COMPLETED, payload)
            state.messages.append({"role": "tool", "tool_call_id": pending["id"], "content": content})
        state.pending = []
        state.paused_at = None


def normalise_tool_results(
    messages: Sequence[Mapping[str, Any]], pending_ids: Sequence[str]
) -> list[ToolResult]:
    """Pick the results of the pending calls out of the messages a client sent back, accepting all
    three shapes in use: `{role?, tool_call_id | toolCallId, content | output}` (contract 4.3).
    Raises ValueError naming what is missing or unexpected."""
    found: dict[str, str] = {}
    for message in messages:
        call_id = message.get("tool_call_id", message.get("toolCallId"))
        role = message.get("role", "tool")
        if role != "tool" or call_id is None:
            continue
        raw = message.get("content", message.get("output"))
        content = raw if isinstance(raw, str) else _json_text(raw)
        found[str(call_id)] = content
    missing = [i for i in pending_ids if i not in found]
    if missing:
        raise ValueError(f"no result for tool call(s) {', '.join(missing)}")
    return [{"tool_call_id": i, "content": found[i]} for i in pending_ids]


def _json_text(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _openai_call(call: ToolCall) -> ToolCallRequest:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def _chat(message: ConversationMessage) -> ChatMessage:
    calls = tuple(
        ToolCall(c["id"], c["function"]["name"], c["function"].get("arguments") or "{}")
        for c in (message.get("tool_calls") or ())
    )
    content = message.get("content")
    return ChatMessage(
        role=message["role"],
        content=content if content is None else str(content),
        tool_calls=calls,
        tool_call_id=message.get("tool_call_id"),
    )
