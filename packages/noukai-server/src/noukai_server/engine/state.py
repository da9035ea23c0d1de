"""What a run carries from step to step, in a form that survives a restart (plain JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    def from_json(cls, data: dict[str, Any]) -> RunInputs:
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
    cost_micro_usd: int = 0
    """Cost in millionths of a dollar, summed as an integer so totals never drift."""
    agent: dict[str, Any] | None = None
    """An agent step waiting for client tool results: `stepId`, `stepIndex`, `attempt`, `pause`
    (the conversation and pending calls) and, once the caller answered, `results`."""

    @property
    def result(self) -> Any:
        return None if self.result_step is None else self.outputs.get(self.result_step)

    def to_json(self) -> dict[str, Any]:
        return {
            "outputs": self.outputs,
            "skipped": self.skipped,
            "resultStep": self.result_step,
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "costMicroUsd": self.cost_micro_usd,
            "agent": self.agent,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> RunState:
        data = data or {}
        return cls(
            outputs=dict(data.get("outputs") or {}),
            skipped=list(data.get("skipped") or []),
            result_step=data.get("resultStep"),
            prompt_tokens=int(data.get("promptTokens", 0)),
            completion_tokens=int(data.get("completionTokens", 0)),
            cost_micro_usd=int(data.get("costMicroUsd", 0)),
            agent=data.get("agent"),
        )
