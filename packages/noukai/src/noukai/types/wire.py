"""Request and response bodies of the HTTP wire contract (camelCase on the wire, snake_case in Python).

These models are shared by the server and the SDK. Unknown fields are ignored so that newer clients
and servers stay compatible with older ones.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

API_PREFIX: Final = "/api/v1"
"""Every endpoint of the HTTP API is under this path."""


class WireModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=False)


class ErrorBody(WireModel):
    code: str
    message: str


class ErrorEnvelope(WireModel):
    detail: ErrorBody


class ExecuteRequest(WireModel):
    """Body of `POST .../execute` (fresh call or tool resume) and `POST .../jobs`."""

    message: str | None = None
    messages: list[dict[str, Any]] | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    block_overrides: dict[str, dict[str, Any]] | None = None
    attachments: list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    iterations_used: int = 0
    accumulated_outputs: dict[str, Any] = Field(default_factory=dict)
    trace: bool = False
    execution_id: str | None = None
    paused_at_step: str | None = None
    tool_call_messages: list[dict[str, Any]] | None = None


class StepRequest(WireModel):
    """Body of `POST .../step` (the paced step protocol)."""

    execution_id: str | None = None
    step_index: int = 0
    accumulated_outputs: dict[str, Any] = Field(default_factory=dict)
    message: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    attachments: list[dict[str, Any]] | None = None
    input_overrides: dict[str, Any] = Field(default_factory=dict)
    block_overrides: dict[str, dict[str, Any]] | None = None
    run_remaining: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    tool_call_messages: list[dict[str, Any]] | None = None
    iterations_used: int = 0
    trace: bool = False


class ExecuteResult(WireModel):
    status: Literal["completed", "failed"]
    result: Any = None
    execution_id: str | None = None
    flow_id: str
    block_count: int


class TokenUsage(WireModel):
    prompt: int = 0
    completion: int = 0
    total: int = 0
