"""Model access for the engine: OpenAI-compatible and Anthropic endpoints, and builtin test models.

The engine only uses `ModelRegistry.resolve("provider:model").client.stream(request)`; everything
else here is how that client is made. Error tree (`ModelError.code` is the wire's error code)::

    ModelError                      PROVIDER_ERROR
    ├── ProviderAuthError           BYOK_KEY_REJECTED      the operator's key is missing or refused
    ├── ProviderRateLimited         PROVIDER_RATE_LIMITED  retryable
    ├── ProviderTimeout             PROVIDER_TIMEOUT       retryable
    ├── ProviderUnavailable         PROVIDER_ERROR         5xx or unreachable; retryable
    ├── ProviderBadRequest          PROVIDER_BAD_REQUEST   the request was refused as malformed
    └── ModelNotFound               MODEL_NOT_FOUND        unknown provider or builtin model

The two SDK adapters are imported on first use, so that importing this package (or running only
builtin models) does not pay for importing the openai and anthropic SDKs.
"""

from typing import TYPE_CHECKING, Any

from noukai_server.providers.base import (
    ChatMessage,
    ModelClient,
    ModelError,
    ModelEvent,
    ModelNotFound,
    ModelRequest,
    ModelResponse,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    ReasoningDelta,
    Role,
    TextDelta,
    ToolCall,
    ToolChoice,
    ToolSpec,
    Usage,
)
from noukai_server.providers.builtin import EchoModel, FlakyModel, TestModel
from noukai_server.providers.pricing import DEFAULT_PRICES, Price, PriceTable, format_cost
from noukai_server.providers.registry import ModelRegistry, NamedProvider, ProviderSettings, ResolvedModel

if TYPE_CHECKING:
    from noukai_server.providers.anthropic_client import AnthropicMessagesClient
    from noukai_server.providers.openai_client import OpenAIChatClient

__all__ = [
    "DEFAULT_PRICES",
    "AnthropicMessagesClient",
    "ChatMessage",
    "EchoModel",
    "FlakyModel",
    "ModelClient",
    "ModelError",
    "ModelEvent",
    "ModelNotFound",
    "ModelRegistry",
    "ModelRequest",
    "ModelResponse",
    "NamedProvider",
    "OpenAIChatClient",
    "Price",
    "PriceTable",
    "ProviderAuthError",
    "ProviderBadRequest",
    "ProviderRateLimited",
    "ProviderSettings",
    "ProviderTimeout",
    "ProviderUnavailable",
    "ReasoningDelta",
    "ResolvedModel",
    "Role",
    "TestModel",
    "TextDelta",
    "ToolCall",
    "ToolChoice",
    "ToolSpec",
    "Usage",
    "format_cost",
]


def __getattr__(name: str) -> Any:
    if name == "OpenAIChatClient":
        from noukai_server.providers.openai_client import OpenAIChatClient

        return OpenAIChatClient
    if name == "AnthropicMessagesClient":
        from noukai_server.providers.anthropic_client import AnthropicMessagesClient

        return AnthropicMessagesClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
