"""How `AnthropicMessagesClient` maps requests to the Messages API and stream events back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from anthropic.types import RawContentBlockStartEvent, RawMessageStartEvent

from noukai_server.providers import (
    AnthropicMessagesClient,
    ChatMessage,
    ModelRequest,
    ProviderBadRequest,
    ToolCall,
    ToolChoice,
    ToolSpec,
)
from noukai_server.providers.anthropic_client import (
    DEFAULT_ANTHROPIC_BASE_URL,
    DEFAULT_MAX_TOKENS,
    _Accumulator,
    build_params,
)
from tests.fakeprovider import FakeProvider, Reply
from tests.providers._support import collect, user

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(fake: FakeProvider) -> AsyncIterator[AnthropicMessagesClient]:
    client = AnthropicMessagesClient(api_key="sk-test", base_url=fake.anthropic_base_url)
    yield client
    await client.aclose()


async def test_the_whole_request_is_mapped(client: AnthropicMessagesClient, fake: FakeProvider) -> None:
    first, second = ToolCall("toolu_1", "add", '{"a": 1}'), ToolCall("toolu_2", "noop", "")
    request = ModelRequest(
        model="claude-haiku-4-5",
        system="Be terse.",
        messages=(
            ChatMessage("user", "add one"),
            ChatMessage("assistant", "Calling.", tool_calls=(first, second)),
            ChatMessage("tool", "2", tool_call_id="toolu_1"),
            ChatMessage("tool", None, tool_call_id="toolu_2"),
            ChatMessage("user", "thanks"),
            ChatMessage("assistant", "You are welcome."),
        ),
        tools=(
            ToolSpec("add", "Adds", {"type": "object", "properties": {"a": {"type": "integer"}}}),
            ToolSpec("noop"),
        ),
        tool_choice="auto",
        temperature=0.1,
        max_tokens=64,
        extra={"top_k": 5},
    )
    await collect(client, request)
    body = fake.requests[0].body
    assert body["system"] == "Be terse."
    assert body["max_tokens"] == 64
    assert body["temperature"] == 0.1
    assert body["top_k"] == 5
    assert body["tool_choice"] == {"type": "auto"}
    assert body["tools"] == [
        {
            "name": "add",
            "input_schema": {"type": "object", "properties": {"a": {"type": "integer"}}},
            "description": "Adds",
        },
        {"name": "noop", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body["messages"] == [
        {"role": "user", "content": "add one"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Calling."},
                {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 1}},
                {"type": "tool_use", "id": "toolu_2", "name": "noop", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "2"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": ""},
            ],
        },
        {"role": "user", "content": "thanks"},
        {"role": "assistant", "content": "You are welcome."},
    ]


def test_max_tokens_defaults_because_anthropic_requires_it() -> None:
    params = build_params(user("hi"))
    assert params["max_tokens"] == DEFAULT_MAX_TOKENS == 1024
    for absent in ("system", "tools", "tool_choice", "temperature", "extra_body"):
        assert absent not in params


def test_tool_results_at_the_end_are_sent_too() -> None:
    call = ToolCall("toolu_1", "add", "{}")
    request = ModelRequest(
        model="m",
        messages=(
            ChatMessage("user", "go"),
            ChatMessage("assistant", tool_calls=(call,)),
            ChatMessage("tool", "1", tool_call_id="toolu_1"),
        ),
    )
    assert build_params(request)["messages"][-1] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "1"}],
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "add"}}, {"type": "tool", "name": "add"}),
        ({"type": "tool", "name": "add"}, {"type": "tool", "name": "add"}),
    ],
)
def test_tool_choice_is_translated(choice: ToolChoice, expected: dict[str, Any]) -> None:
    params = build_params(user("hi", tools=(ToolSpec("add"),), tool_choice=choice))
    assert params["tool_choice"] == expected


def test_tool_choice_is_only_sent_with_tools() -> None:
    assert "tool_choice" not in build_params(user("hi", tool_choice="auto"))


@pytest.mark.parametrize("arguments", ["not json", "[1, 2]"])
def test_tool_arguments_that_are_not_an_object_are_refused(arguments: str) -> None:
    call = ToolCall("toolu_1", "add", arguments)
    request = ModelRequest(model="m", messages=(ChatMessage("assistant", tool_calls=(call,)),))
    with pytest.raises(ProviderBadRequest, match="toolu_1"):
        build_params(request)


def test_a_tool_message_without_its_call_id_is_refused() -> None:
    with pytest.raises(ProviderBadRequest, match="tool_call_id"):
        build_params(ModelRequest(model="m", messages=(ChatMessage("tool", "2"),)))


def test_the_default_base_url_is_explicit_not_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://elsewhere.invalid")
    client = AnthropicMessagesClient(api_key="sk-test")
    assert client.base_url == DEFAULT_ANTHROPIC_BASE_URL
    assert str(client._client.base_url).rstrip("/") == DEFAULT_ANTHROPIC_BASE_URL


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("pause_turn", "pause_turn"),
    ],
)
async def test_stop_reasons_use_the_openai_vocabulary(
    client: AnthropicMessagesClient, fake: FakeProvider, stop_reason: str, finish_reason: str
) -> None:
    fake.script(Reply(chunks=["x"], finish_reason=stop_reason))
    _, response = await collect(client, user("hi"))
    assert response.finish_reason == finish_reason


def test_cached_input_tokens_count_as_prompt_tokens() -> None:
    state = _Accumulator()
    state.feed(
        RawMessageStartEvent.model_validate(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 10,
                        "cache_creation_input_tokens": 100,
                        "cache_read_input_tokens": 1000,
                        "output_tokens": 1,
                    },
                },
            }
        )
    )
    assert state.response().usage.prompt_tokens == 1110


def test_a_tool_use_block_with_its_input_up_front_keeps_it() -> None:
    state = _Accumulator()
    state.feed(
        RawContentBlockStartEvent.model_validate(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "toolu_9", "name": "add", "input": {"a": 2}},
            }
        )
    )
    assert state.response().tool_calls == (ToolCall("toolu_9", "add", '{"a": 2}'),)
