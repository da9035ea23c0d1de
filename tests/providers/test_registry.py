from __future__ import annotations

from decimal import Decimal

import pytest

import noukai_server.providers.openai_client as openai_client_module
from noukai_server.providers import (
    AnthropicMessagesClient,
    EchoModel,
    ModelNotFound,
    ModelRegistry,
    NamedProvider,
    OpenAIChatClient,
    ProviderAuthError,
    ProviderSettings,
    TestModel,
    TextDelta,
)
from tests.fakeprovider import FakeProvider
from tests.providers._support import collect, user

# -- settings ----------------------------------------------------------------------------------


def test_settings_read_the_environment() -> None:
    settings = ProviderSettings.from_env(
        {
            "OPENAI_BASE_URL": "http://vllm:8000/v1",
            "OPENAI_API_KEY": "sk-o",
            "ANTHROPIC_BASE_URL": "http://proxy",
            "ANTHROPIC_API_KEY": "sk-a",
        }
    )
    assert settings.openai_base_url == "http://vllm:8000/v1"
    assert settings.openai_api_key == "sk-o"
    assert settings.anthropic_base_url == "http://proxy"
    assert settings.anthropic_api_key == "sk-a"
    assert settings.request_timeout == 120.0
    assert settings.named == {}
    assert settings.prices == {}


def test_empty_variables_count_as_unset() -> None:
    settings = ProviderSettings.from_env({"OPENAI_API_KEY": "", "ANTHROPIC_BASE_URL": ""})
    assert settings.openai_api_key is None
    assert settings.anthropic_base_url is None


def test_overrides_win_over_the_environment() -> None:
    named = {"local": NamedProvider("openai", "http://localhost:11434/v1", "ollama")}
    settings = ProviderSettings.from_env(
        {"OPENAI_API_KEY": "sk-env"}, openai_api_key="sk-config", named=named, request_timeout=5.0
    )
    assert settings.openai_api_key == "sk-config"
    assert settings.named == named
    assert settings.request_timeout == 5.0


def test_unknown_overrides_are_refused() -> None:
    with pytest.raises(TypeError):
        ProviderSettings.from_env({}, no_such_setting=1)


def test_the_default_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-from-os")
    assert ProviderSettings.from_env().anthropic_api_key == "sk-from-os"


# -- resolution --------------------------------------------------------------------------------


def test_builtin_models_resolve_without_keys() -> None:
    registry = ModelRegistry(ProviderSettings())
    echo = registry.resolve("builtin:echo")
    assert (echo.provider, echo.model) == ("builtin", "echo")
    assert isinstance(echo.client, EchoModel)
    assert isinstance(registry.resolve("builtin:test").client, TestModel)
    assert registry.resolve("builtin:echo").client is echo.client


def test_an_unknown_builtin_model_is_not_found() -> None:
    with pytest.raises(ModelNotFound) as caught:
        ModelRegistry(ProviderSettings()).resolve("builtin:nope")
    assert caught.value.code == "MODEL_NOT_FOUND"
    assert "builtin:echo" in caught.value.message
    assert "builtin:test" in caught.value.message


def test_an_unknown_provider_is_not_found() -> None:
    registry = ModelRegistry(ProviderSettings(named={"local": NamedProvider("openai")}))
    with pytest.raises(ModelNotFound) as caught:
        registry.resolve("mistral:large")
    assert "'mistral'" in caught.value.message
    assert "local" in caught.value.message


@pytest.mark.parametrize("ref", ["gpt-4o", "openai:", ":gpt-4o", ""])
def test_a_malformed_reference_is_not_found(ref: str) -> None:
    with pytest.raises(ModelNotFound, match="provider:model"):
        ModelRegistry(ProviderSettings()).resolve(ref)


def test_one_client_per_provider_made_lazily_and_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[object] = []

    class Counting(OpenAIChatClient):
        def __init__(self, **kwargs: object) -> None:
            super().__init__(**kwargs)  # type: ignore[arg-type]
            made.append(self)

    monkeypatch.setattr(openai_client_module, "OpenAIChatClient", Counting)
    registry = ModelRegistry(ProviderSettings(openai_api_key="sk-o", anthropic_api_key="sk-a"))
    assert made == []
    first = registry.resolve("openai:gpt-4o")
    second = registry.resolve("openai:gpt-4o-mini")
    assert made == [first.client]
    assert second.client is first.client
    assert (second.provider, second.model) == ("openai", "gpt-4o-mini")
    assert isinstance(registry.resolve("anthropic:claude-haiku-4-5").client, AnthropicMessagesClient)


def test_model_names_may_contain_colons() -> None:
    resolved = ModelRegistry(
        ProviderSettings(named={"ollama": NamedProvider("openai", "http://x/v1", "k")})
    ).resolve("ollama:llama3:8b")
    assert (resolved.provider, resolved.model) == ("ollama", "llama3:8b")


@pytest.mark.parametrize("name", ["builtin", "openai", "anthropic"])
def test_named_providers_may_not_shadow_the_standard_ones(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ModelRegistry(ProviderSettings(named={name: NamedProvider("openai")}))


# -- missing keys ------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("ref", "hint"),
    [
        ("openai:gpt-4o", "OPENAI_API_KEY"),
        ("anthropic:claude-haiku-4-5", "ANTHROPIC_API_KEY"),
        ("local:llama3", "api_key of provider 'local' in the server config"),
    ],
)
async def test_a_missing_key_fails_the_call_not_the_server(ref: str, hint: str) -> None:
    registry = ModelRegistry(
        ProviderSettings(named={"local": NamedProvider("openai", "http://localhost:1/v1")})
    )
    resolved = registry.resolve(ref)  # resolving works: only calling needs the key
    with pytest.raises(ProviderAuthError) as caught:
        await collect(resolved.client, user("hi"))
    assert caught.value.code == "BYOK_KEY_REJECTED"
    assert hint in caught.value.message
    await registry.aclose()


# -- end to end through the registry -------------------------------------------------------------


@pytest.mark.anyio
async def test_configured_base_urls_and_keys_are_used(fake: FakeProvider) -> None:
    registry = ModelRegistry(
        ProviderSettings(
            openai_base_url=fake.openai_base_url,
            openai_api_key="sk-test",
            anthropic_base_url=fake.anthropic_base_url,
            anthropic_api_key="sk-test",
        )
    )
    for ref in ("openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"):
        resolved = registry.resolve(ref)
        deltas, response = await collect(resolved.client, user("hello registry", model=resolved.model))
        assert deltas == [TextDelta("hello "), TextDelta("registry")]
        assert response.model == resolved.model
    assert [r.api for r in fake.requests] == ["openai", "anthropic"]
    await registry.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_named_providers_reach_their_endpoint(fake: FakeProvider, kind: str) -> None:
    url = fake.openai_base_url if kind == "openai" else fake.anthropic_base_url
    registry = ModelRegistry(ProviderSettings(named={"mine": NamedProvider(kind, url, "sk-test")}))  # type: ignore[arg-type]
    resolved = registry.resolve("mine:some-model")
    assert resolved.provider == "mine"
    _, response = await collect(resolved.client, user("named"))
    assert response.text == "named"
    assert fake.requests[0].api == kind
    await registry.aclose()


@pytest.mark.anyio
async def test_errors_name_the_named_provider(fake: FakeProvider) -> None:
    registry = ModelRegistry(
        ProviderSettings(named={"mine": NamedProvider("openai", fake.openai_base_url, "sk-wrong")})
    )
    with pytest.raises(ProviderAuthError, match="mine rejected"):
        await collect(registry.resolve("mine:m").client, user("hi"))
    await registry.aclose()


@pytest.mark.anyio
async def test_aclose_closes_every_client_and_later_calls_get_fresh_ones() -> None:
    registry = ModelRegistry(ProviderSettings(openai_api_key="sk-o", anthropic_api_key="sk-a"))
    openai_client = registry.resolve("openai:m").client
    anthropic_client = registry.resolve("anthropic:m").client
    assert isinstance(openai_client, OpenAIChatClient)
    assert isinstance(anthropic_client, AnthropicMessagesClient)
    await registry.aclose()
    assert openai_client._client.is_closed()
    assert anthropic_client._client.is_closed()
    assert registry.resolve("openai:m").client is not openai_client
    await registry.aclose()


def test_the_price_table_uses_configured_prices() -> None:
    registry = ModelRegistry(ProviderSettings(prices={"local:llama3": (Decimal(1), Decimal(2))}))
    assert registry.price_table.price("local", "llama3") == (Decimal(1), Decimal(2))
    assert registry.price_table.price("openai", "gpt-4o") is not None
