"""The `ModelClient` protocol: how the engine talks to any model, and the errors a model can raise.

A provider (credentials + base URL) is kept apart from the model call itself: the engine only sees
a `ModelClient` that turns a `ModelRequest` into a stream of `ModelEvent`s ending in exactly one
`ModelResponse`. Closing the async iterator early (cancellation) must close the underlying HTTP
stream rather than wait for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the model asks for; `arguments` is a JSON *string* (OpenAI shape)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call: name, description and a JSON schema of its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


ToolChoice = Literal["auto", "none", "required"] | dict[str, Any]


@dataclass(frozen=True, slots=True)
class ModelRequest:
    model: str
    """The model name *after* the `provider:` prefix, e.g. `gpt-4o-mini` for `openai:gpt-4o-mini`."""
    messages: tuple[ChatMessage, ...]
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Provider-specific parameters passed through unchanged (e.g. `top_p`)."""
    attempt: int = 1
    """Which attempt of its step this call belongs to (1-based). Never sent to a provider; the
    deterministic test models decide from it, so they behave the same in every process."""


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


# Deltas are made once per streamed token and read once: not `frozen`, whose `__init__` costs
# three times as much. Treat them as immutable all the same.
@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ModelResponse:
    """The last item of every stream: the whole answer, any tool calls, and the usage."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    finish_reason: str | None = None
    model: str | None = None
    """The model the provider reports having used, when it says."""


ModelEvent = TextDelta | ReasoningDelta | ModelResponse


class ModelClient(Protocol):
    """Anything that can stream one model call."""

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Yield text/reasoning deltas as they arrive, then exactly one `ModelResponse`."""
        ...


class ModelError(Exception):
    """A model call failed. `code` is a stable wire error code; `retryable` marks transient faults."""

    code: str = "PROVIDER_ERROR"
    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ProviderAuthError(ModelError):
    """The provider rejected the operator's API key (the operator's mistake, not the caller's)."""

    code = "BYOK_KEY_REJECTED"


class ProviderRateLimited(ModelError):
    code = "PROVIDER_RATE_LIMITED"
    retryable = True


class ProviderTimeout(ModelError):
    code = "PROVIDER_TIMEOUT"
    retryable = True


class ProviderUnavailable(ModelError):
    """5xx or connection failure at the provider."""

    code = "PROVIDER_ERROR"
    retryable = True


class ProviderBadRequest(ModelError):
    """The provider refused the request as malformed (bad model name, bad parameters)."""

    code = "PROVIDER_BAD_REQUEST"


class ModelNotFound(ModelError):
    """The flow names a provider or model this server does not know."""

    code = "MODEL_NOT_FOUND"
