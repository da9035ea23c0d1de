"""How `OpenAIChatClient` maps requests to Chat Completions, and OpenAI-compatible quirks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from noukai_server.providers import (
    ChatMessage,
    ModelRequest,
    OpenAIChatClient,
    ProviderBadRequest,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolSpec,
)
from noukai_server.providers.openai_client import DEFAULT_OPENAI_BASE_URL, build_params
from tests.fakeprovider import FakeProvider, Reply
from tests.providers._support import collect, user

pytestmark = pytest.mark.anyio

CALL = ToolCall("call_1", "add", '{"a": 1}')
CONVERSATION = ModelRequest(
    model="gpt-4o-mini",
    system="Be terse.",
    messages=(
        ChatMessage("user", "add one", name="ann"),
        ChatMessage("assistant", tool_calls=(CALL,)),
        ChatMessage("tool", "2", tool_call_id="call_1"),
        ChatMessage("assistant", "It is 2."),
    ),
    tools=(
        ToolSpec("add", "Adds", {"type": "object", "properties": {"a": {"type": "integer"}}}),
        ToolSpec("noop"),
    ),
    tool_choice="required",
    temperature=0.2,
    max_tokens=50,
    extra={"top_p": 0.5, "seed": 7},
)


@pytest.fixture
async def client(fake: FakeProvider) -> AsyncIterator[OpenAIChatClient]:
    client = OpenAIChatClient(api_key="sk-test", base_url=fake.openai_base_url)
    yield client
    await client.aclose()


async def test_the_whole_request_is_mapped(client: OpenAIChatClient, fake: FakeProvider) -> None:
    await collect(client, CONVERSATION)
    body = fake.requests[0].body
    assert body["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "add one", "name": "ann"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "2"},
        {"role": "assistant", "content": "It is 2."},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "add",
                "description": "Adds",
                "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}},
            },
        },
        {
            "type": "function",
            "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}},
        },
    ]
    assert body["tool_choice"] == "required"
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 50
    assert body["top_p"] == 0.5
    assert body["seed"] == 7
    assert body["stream_options"] == {"include_usage": True}


def test_optional_fields_are_left_out() -> None:
    params = build_params(user("hi", tool_choice="auto"))
    assert params["messages"] == [{"role": "user", "content": "hi"}]
    for absent in ("tools", "tool_choice", "temperature", "max_tokens", "extra_body"):
        assert absent not in params


def test_a_named_assistant_keeps_its_name() -> None:
    params = build_params(ModelRequest(model="m", messages=(ChatMessage("assistant", "hi", name="bot"),)))
    assert params["messages"] == [{"role": "assistant", "content": "hi", "name": "bot"}]


def test_an_empty_assistant_message_has_empty_content_not_null() -> None:
    params = build_params(ModelRequest(model="m", messages=(ChatMessage("assistant"),)))
    assert params["messages"] == [{"role": "assistant", "content": ""}]


def test_a_tool_message_without_its_call_id_is_refused() -> None:
    with pytest.raises(ProviderBadRequest, match="tool_call_id"):
        build_params(ModelRequest(model="m", messages=(ChatMessage("tool", "2"),)))


def test_the_default_base_url_is_explicit_not_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The settings decide the URL; the SDK must not silently pick up OPENAI_BASE_URL itself.
    monkeypatch.setenv("OPENAI_BASE_URL", "http://elsewhere.invalid/v1")
    client = OpenAIChatClient(api_key="sk-test")
    assert client.base_url == DEFAULT_OPENAI_BASE_URL
    assert str(client._client.base_url).rstrip("/") == DEFAULT_OPENAI_BASE_URL


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_both_reasoning_field_names_are_understood(
    client: OpenAIChatClient, fake: FakeProvider, field: str
) -> None:
    fake.script(Reply(reasoning=["hmm"], chunks=["yes"], reasoning_field=field))
    deltas, _ = await collect(client, user("?"))
    assert deltas == [ReasoningDelta("hmm"), TextDelta("yes")]


def _chunk(delta: str, finish: str = "null") -> bytes:
    return (
        b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"local",'
        b'"choices":[{"index":0,"delta":'
        + delta.encode()
        + b',"finish_reason":'
        + finish.encode()
        + b"}]}\n\n"
    )


async def test_compatible_servers_without_call_ids_or_arguments_still_give_usable_calls(
    client: OpenAIChatClient, fake: FakeProvider
) -> None:
    # Some OpenAI-compatible servers omit tool call ids, send "" for no arguments, repeat the
    # name on every fragment, send other choices (n > 1), and never send usage.
    raw = b"".join(
        [
            _chunk('{"tool_calls":[{"index":0,"function":{"name":"ping","arguments":""}}]}'),
            _chunk('{"tool_calls":[{"index":1,"function":{"name":"add","arguments":"{\\"a\\""}}]}'),
            _chunk('{"tool_calls":[{"index":1,"function":{"name":"add","arguments":": 1}"}}]}'),
            b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"local",'
            b'"choices":[{"index":1,"delta":{"content":"other choice"},"finish_reason":null}]}\n\n',
            _chunk("{}", '"tool_calls"'),
            b"data: [DONE]\n\n",
        ]
    )
    fake.script(Reply(raw=raw))
    deltas, response = await collect(client, user("go"))
    assert deltas == []
    assert response.tool_calls == (ToolCall("call_0", "ping", "{}"), ToolCall("call_1", "add", '{"a": 1}'))
    assert response.usage.total_tokens == 0
    assert response.model == "local"
    assert response.finish_reason == "tool_calls"
