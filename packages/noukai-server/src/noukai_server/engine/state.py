"""What a run carries from step to step, in a form that survives a restart (plain JSON).

The JSON layout is what the store keeps in a run's `state`: a change here must still load the rows
written before it. An agent step waiting for client tool results keeps its loop under `agent`, typed
as `AgentState`; readers of a stored run's state go through `agent_state` (or `paused_agent`),
never by indexing the raw dict.
"""

# No `from __future__ import annotations`: the TypedDicts below keep their `NotRequired` keys
# optional at run time only when their annotations are evaluated (Python 3.11).
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NotRequired, TypedDict, cast

from noukai.types.events import ConversationMessage, ToolCallRequest


class AgentPause(TypedDict):
    """An agent step's tool loop, stored while it waits for the caller's client tool results."""

    pausedAt: NotRequired[float | None]
    """Wall-clock time (epoch seconds) of the pause: a client tool's duration is how long the
    caller took; None or absent when unknown."""
    messages: list[ConversationMessage]
    """The step's conversation so far, ending with the assistant message that calls the tools."""
    pending: list[ToolCallRequest]
    """The client-side calls waiting for a result."""
    iterations: int
    """Model calls the step has made so far."""
    promptTokens: NotRequired[int]
    """Prompt tokens of those calls (0 when absent)."""
    completionTokens: NotRequired[int]
    """Completion tokens of those calls (0 when absent)."""
    costUsd: NotRequired[str]
    """Their exact cost in dollars, as a plain decimal string (`cost_from_json`)."""
    costMicroUsd: NotRequired[int]
    """Their cost in whole millionths of a dollar, as rows written before `costUsd` keep it."""


class ToolResult(TypedDict):
    """One client tool result the caller sent back, normalised."""

    tool_call_id: str
    """The pending call it answers."""
    content: str
    """The result as text for the model."""


class AgentState(TypedDict):
    """`RunState.agent`: the agent step that paused for client tool results, and its loop."""

    stepId: str
    """The paused step's id."""
    stepIndex: int
    """Its position in the flow (the run's cursor while it waits)."""
    attempt: int
    """The step's attempt; the resumed step continues it."""
    pause: AgentPause
    """The loop to continue from."""
    results: NotRequired[list[ToolResult]]
    """The caller's results, once it answered (the run is then queued to resume the step)."""


def agent_state(run_state: Mapping[str, Any] | None) -> AgentState | None:
    """The agent step paused for client tool results (answered or not yet) in a stored run's
    `state` JSON, or None."""
    agent = (run_state or {}).get("agent")
    return cast(AgentState, agent) if isinstance(agent, dict) and agent else None


def paused_agent(run_state: Mapping[str, Any] | None) -> AgentState:
    """The agent step a run waits in; raises `LookupError` when it waits in none."""
    agent = agent_state(run_state)
    if agent is None:
        raise LookupError("the run is not paused at an agent step")
    return agent


def awaits_tool_results(agent: AgentState | None) -> bool:
    """An agent step is paused and the caller has not sent its tool results yet."""
    return agent is not None and agent.get("results") is None


def cost_to_json(cost: Decimal) -> str:
    """An exact cost as stored: a plain decimal string, never rounded (`"0.0000048"`)."""
    return format(cost, "f")


def cost_from_json(data: Mapping[str, Any]) -> Decimal:
    """The exact cost stored in `data` (a run's state or an agent pause): its `costUsd`, or for a
    row written before that key, its `costMicroUsd` (whole millionths); 0 when neither is there."""
    exact = data.get("costUsd")
    if isinstance(exact, str):
        return Decimal(exact)
    return Decimal(int(data.get("costMicroUsd", 0))) / 1_000_000


@dataclass(slots=True)
class RunInputs:
    message: str | None = None
    messages: list[dict[str, Any]] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    attachments: list[dict[str, Any]] | None = None
    block_overrides: dict[str, dict[str, Any]] | None = None
    trace: bool = False
    tools: list[dict[str, Any]] | None = None
    """Client-side tools (OpenAI function format): calling one pauses the run for the caller."""
    tool_choice: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "messages": self.messages,
            "parameters": self.parameters,
            "attachments": self.attachments,
            "blockOverrides": self.block_overrides,
            "trace": self.trace,
            "tools": self.tools,
            "toolChoice": self.tool_choice,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunInputs":
        return cls(
            message=data.get("message"),
            messages=data.get("messages"),
            parameters=dict(data.get("parameters") or {}),
            attachments=data.get("attachments"),
            block_overrides=data.get("blockOverrides"),
            trace=bool(data.get("trace", False)),
            tools=data.get("tools"),
            tool_choice=data.get("toolChoice"),
        )


@dataclass(slots=True)
class RunState:
    """Outputs of the steps run so far; `result_step` is the last step that actually executed."""

    outputs: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    result_step: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = field(default_factory=Decimal)
    """Exact cost in dollars: step costs are summed unrounded, and only the wire's string
    (`format_cost`) rounds, so a total is rounded once, by the same rule as each step's cost."""
    agent: AgentState | None = None
    """An agent step waiting for client tool results (see `AgentState`)."""
    guarded_inputs: dict[str, Any] = field(default_factory=dict)
    """Inputs an input guard replaced (`message` or `parameters.<name>` -> the value used), kept
    so that a run resumed later (a pause, another worker) reads them too; stored only when set."""

    @property
    def result(self) -> Any:
        return None if self.result_step is None else self.outputs.get(self.result_step)

    def to_json(self) -> dict[str, Any]:
        data = {
            "outputs": self.outputs,
            "skipped": self.skipped,
            "resultStep": self.result_step,
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "costUsd": cost_to_json(self.cost_usd),
            "agent": self.agent,
        }
        if self.guarded_inputs:
            data["guardedInputs"] = self.guarded_inputs
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "RunState":
        data = data or {}
        return cls(
            outputs=dict(data.get("outputs") or {}),
            skipped=list(data.get("skipped") or []),
            result_step=data.get("resultStep"),
            prompt_tokens=int(data.get("promptTokens", 0)),
            completion_tokens=int(data.get("completionTokens", 0)),
            cost_usd=cost_from_json(data),
            agent=agent_state(data),
            guarded_inputs=dict(data.get("guardedInputs") or {}),
        )
