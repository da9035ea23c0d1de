"""From a flow's `provider:model` string to a `ModelClient`, configured once per server.

A provider is credentials plus a base URL; the registry makes one SDK client per provider, lazily
and then reused, so every step shares its connection pool. Missing credentials are not a startup
error: a server that only runs `builtin:` models needs no keys, so the error comes when a step
actually calls the provider, and says which setting to fill in.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Final, Literal

from noukai_server.providers.base import (
    ModelClient,
    ModelEvent,
    ModelNotFound,
    ModelRequest,
    ProviderAuthError,
)
from noukai_server.providers.builtin import EchoModel, FlakyModel, TestModel
from noukai_server.providers.pricing import PriceTable

__all__ = ["ModelRegistry", "NamedProvider", "ProviderSettings", "ResolvedModel"]

_BUILTIN_MODELS: Mapping[str, Callable[[], ModelClient]] = {
    "echo": EchoModel,
    "test": TestModel,
    "flaky": FlakyModel,
}
BUILT_IN_PROVIDERS: Final = ("builtin", "openai", "anthropic")
"""The providers every server has (named providers come from its settings)."""
_RESERVED_NAMES = frozenset(BUILT_IN_PROVIDERS)


@dataclass(frozen=True, slots=True)
class NamedProvider:
    """An extra endpoint from the server config, e.g. `ollama` -> an OpenAI-compatible base URL."""

    kind: Literal["openai", "anthropic"]
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never in a log line or a traceback
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # may carry a token
    """Extra HTTP headers sent with every request (e.g. a gateway's routing header)."""
    timeout_seconds: float | None = None
    """This endpoint's request timeout; None: `ProviderSettings.request_timeout`."""
    key_hint: str | None = None
    """Where the operator sets the key, for the missing-key message (the config file says)."""


def _env(environ: Mapping[str, str], name: str) -> str | None:
    # An exported-but-empty variable means "not set", not "the key is the empty string".
    return environ.get(name) or None


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    openai_base_url: str | None = None
    openai_api_key: str | None = field(default=None, repr=False)  # keys never reach a repr
    anthropic_base_url: str | None = None
    anthropic_api_key: str | None = field(default=None, repr=False)
    named: Mapping[str, NamedProvider] = field(default_factory=dict)
    request_timeout: float = 120.0
    prices: Mapping[str, tuple[Decimal, Decimal]] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> ProviderSettings:
        """Settings from OPENAI_BASE_URL, OPENAI_API_KEY, ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY.

        `overrides` replace any field (server config wins over the environment).
        """
        settings = cls(
            openai_base_url=_env(environ, "OPENAI_BASE_URL"),
            openai_api_key=_env(environ, "OPENAI_API_KEY"),
            anthropic_base_url=_env(environ, "ANTHROPIC_BASE_URL"),
            anthropic_api_key=_env(environ, "ANTHROPIC_API_KEY"),
        )
        return replace(settings, **overrides)


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    provider: str
    """The part before the colon: `openai`, `builtin`, or a named provider."""
    model: str
    """The part after it, which goes into `ModelRequest.model`."""
    client: ModelClient


class _MissingKeyClient:
    """Stands in for a provider without an API key and fails each call with a fix-it message."""

    def __init__(self, message: str) -> None:
        self._message = message

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelEvent, None]:
        raise ProviderAuthError(self._message)
        yield  # pragma: no cover  # makes this an async generator, like every other client


@dataclass(frozen=True, slots=True)
class _Endpoint:
    kind: Literal["openai", "anthropic"]
    base_url: str | None
    api_key: str | None
    key_hint: str
    """Where the operator sets the key, for the missing-key message."""
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float | None = None


class ModelRegistry:
    """Resolves `provider:model` references; owns (and closes) one client per provider."""

    def __init__(self, settings: ProviderSettings) -> None:
        clash = _RESERVED_NAMES.intersection(settings.named)
        if clash:
            raise ValueError(f"named providers may not be called {', '.join(sorted(clash))}")
        self.settings = settings
        self.price_table = PriceTable(settings.prices)
        self._clients: dict[str, ModelClient] = {}
        self._closers: list[Callable[[], Awaitable[None]]] = []

    def providers(self) -> list[str]:
        """The providers a `model` reference may name here: the built-in ones, then the named."""
        return [*BUILT_IN_PROVIDERS, *sorted(self.settings.named)]

    def _endpoint(self, provider: str) -> _Endpoint | None:
        s = self.settings
        if provider == "openai":
            return _Endpoint(
                "openai", s.openai_base_url, s.openai_api_key, "the OPENAI_API_KEY environment variable"
            )
        if provider == "anthropic":
            return _Endpoint(
                "anthropic",
                s.anthropic_base_url,
                s.anthropic_api_key,
                "the ANTHROPIC_API_KEY environment variable",
            )
        named = s.named.get(provider)
        if named is None:
            return None
        return _Endpoint(
            named.kind,
            named.base_url,
            named.api_key,
            named.key_hint or f"api_key of provider {provider!r} in the server config",
            named.headers,
            named.timeout_seconds,
        )

    def _make_client(self, provider: str, endpoint: _Endpoint) -> ModelClient:
        if not endpoint.api_key:
            return _MissingKeyClient(
                f"no API key is configured for provider {provider!r}: set {endpoint.key_hint}"
            )
        timeout = endpoint.timeout_seconds or self.settings.request_timeout
        headers = dict(endpoint.headers)
        # Imported here so that a server running only builtin models never imports either SDK.
        if endpoint.kind == "openai":
            from noukai_server.providers.openai_client import OpenAIChatClient

            openai_client = OpenAIChatClient(
                api_key=endpoint.api_key,
                base_url=endpoint.base_url,
                timeout=timeout,
                provider=provider,
                headers=headers,
            )
            self._closers.append(openai_client.aclose)
            return openai_client
        from noukai_server.providers.anthropic_client import AnthropicMessagesClient

        anthropic_client = AnthropicMessagesClient(
            api_key=endpoint.api_key,
            base_url=endpoint.base_url,
            timeout=timeout,
            provider=provider,
            headers=headers,
        )
        self._closers.append(anthropic_client.aclose)
        return anthropic_client

    def resolve(self, model_ref: str) -> ResolvedModel:
        """The client and model name for `model_ref`; `ModelNotFound` when the server does not know it."""
        provider, sep, model = model_ref.partition(":")
        if not sep or not provider or not model:
            raise ModelNotFound(f"model {model_ref!r} is not of the form provider:model, e.g. builtin:echo")
        if provider == "builtin":
            factory = _BUILTIN_MODELS.get(model)
            if factory is None:
                known = ", ".join(f"builtin:{name}" for name in _BUILTIN_MODELS)
                raise ModelNotFound(f"unknown builtin model {model_ref!r}; the builtin models are {known}")
            return ResolvedModel(provider, model, self._cached(model_ref, factory))
        endpoint = self._endpoint(provider)
        if endpoint is None:
            known = ", ".join(["builtin", "openai", "anthropic", *sorted(self.settings.named)])
            raise ModelNotFound(f"unknown provider {provider!r} in {model_ref!r}; known providers: {known}")
        return ResolvedModel(
            provider, model, self._cached(provider, lambda: self._make_client(provider, endpoint))
        )

    def _cached(self, key: str, factory: Callable[[], ModelClient]) -> ModelClient:
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = factory()
        return client

    async def aclose(self) -> None:
        """Close every SDK client (their connection pools); the registry can be used again after."""
        closers, self._closers = self._closers, []
        self._clients.clear()
        for close in closers:
            await close()
