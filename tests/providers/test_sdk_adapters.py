"""Both SDK adapters end to end: the real openai / anthropic SDKs over HTTP against FakeProvider."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Literal

import anyio
import pytest

from noukai_server.providers import (
    AnthropicMessagesClient,
    ModelClient,
    ModelError,
    ModelEvent,
    OpenAIChatClient,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)
from tests.fakeprovider import FakeProvider, FakeToolCall, Reply
from tests.providers._support import closed_port, collect, consume, user

pytestmark = pytest.mark.anyio

Kind = Literal["openai", "anthropic"]
AdapterClient = OpenAIChatClient | AnthropicMessagesClient


HANG_GUARD = 30.0
"""Seconds to wait for what should come at once: a guard against hangs, not a measure."""


def make_client(
    kind: Kind, fake: FakeProvider, *, api_key: str = "sk-test", timeout: float = 10.0
) -> AdapterClient:
    if kind == "openai":
        return OpenAIChatClient(api_key=api_key, base_url=fake.openai_base_url, timeout=timeout)
    return AnthropicMessagesClient(api_key=api_key, base_url=fake.anthropic_base_url, timeout=timeout)


@pytest.fixture(params=["openai", "anthropic"])
def kind(request: pytest.FixtureRequest) -> Kind:
    kind: Kind = request.param
    return kind


@pytest.fixture
async def client(kind: Kind, fake: FakeProvider) -> AsyncIterator[AdapterClient]:
    client = make_client(kind, fake)
    yield client
    await client.aclose()


async def test_streamed_chunks_arrive_as_separate_deltas(client: ModelClient, fake: FakeProvider) -> None:
    fake.script(Reply(chunks=["Hel", "lo, ", "world", "!"]))
    deltas, response = await collect(client, user("hi"))
    assert deltas == [TextDelta("Hel"), TextDelta("lo, "), TextDelta("world"), TextDelta("!")]
    assert response.text == "Hello, world!"
    assert response.finish_reason == "stop"
    assert response.model == "fake-model"
    assert response.tool_calls == ()


async def test_usage_comes_from_the_provider(client: ModelClient, fake: FakeProvider) -> None:
    fake.script(Reply(chunks=["ok"], usage=(11, 7)))
    _, response = await collect(client, user("hi"))
    assert response.usage == Usage(prompt_tokens=11, completion_tokens=7)


async def test_the_request_carries_the_key_and_streams(client: ModelClient, fake: FakeProvider) -> None:
    await collect(client, user("hello there"))
    [received] = fake.requests
    assert received.headers["authorization"] == "Bearer sk-test"
    assert received.body["stream"] is True
    assert received.body["model"] == "fake-model"


async def test_streamed_tool_calls_are_accumulated(client: ModelClient, fake: FakeProvider) -> None:
    fake.script(
        Reply(
            tool_calls=[
                FakeToolCall("get_weather", {"city": "Paris", "days": 2}, id="call_a"),
                FakeToolCall("add", {"a": 1, "b": 2}, id="call_b"),
            ]
        )
    )
    deltas, response = await collect(client, user("go", tools=(ToolSpec("get_weather"), ToolSpec("add"))))
    assert deltas == []
    assert [(c.id, c.name) for c in response.tool_calls] == [("call_a", "get_weather"), ("call_b", "add")]
    assert json.loads(response.tool_calls[0].arguments) == {"city": "Paris", "days": 2}
    assert json.loads(response.tool_calls[1].arguments) == {"a": 1, "b": 2}
    assert response.finish_reason == "tool_calls"


async def test_text_and_tool_calls_together(client: ModelClient, fake: FakeProvider) -> None:
    fake.script(Reply(chunks=["Let me ", "check."], tool_calls=[FakeToolCall("lookup", {}, id="c1")]))
    deltas, response = await collect(client, user("go", tools=(ToolSpec("lookup"),)))
    assert [d for d in deltas if isinstance(d, TextDelta)] == [TextDelta("Let me "), TextDelta("check.")]
    assert response.text == "Let me check."
    assert response.tool_calls == (ToolCall("c1", "lookup", "{}"),)


async def test_reasoning_arrives_as_reasoning_deltas(client: ModelClient, fake: FakeProvider) -> None:
    fake.script(Reply(reasoning=["Thinking ", "hard."], chunks=["42"]))
    deltas, response = await collect(client, user("meaning?"))
    assert deltas == [ReasoningDelta("Thinking "), ReasoningDelta("hard."), TextDelta("42")]
    assert response.text == "42"


async def test_consecutive_calls_reuse_the_client(client: ModelClient, fake: FakeProvider) -> None:
    for word in ("one", "two", "three"):
        _, response = await collect(client, user(word))
        assert response.text == word


# -- errors ------------------------------------------------------------------------------------


async def test_a_rejected_key_is_a_byok_error_that_does_not_leak_the_key(
    kind: Kind, fake: FakeProvider
) -> None:
    secret = "sk-live-very-secret-0123456789"
    client = make_client(kind, fake, api_key=secret)
    try:
        with pytest.raises(ProviderAuthError) as caught:
            await collect(client, user("hi"))
    finally:
        await client.aclose()
    error = caught.value
    assert error.code == "BYOK_KEY_REJECTED"
    assert error.status == 401
    assert not error.retryable
    assert secret not in str(error)
    assert secret not in repr(error)
    # The SDK's exception (whose text can quote the key) is not chained into logged tracebacks.
    assert error.__cause__ is None
    assert error.__suppress_context__


@pytest.mark.parametrize(
    ("status", "error_class", "retryable"),
    [
        (401, ProviderAuthError, False),
        (403, ProviderAuthError, False),
        (429, ProviderRateLimited, True),
        (500, ProviderUnavailable, True),
        (503, ProviderUnavailable, True),
        (529, ProviderUnavailable, True),
        (400, ProviderBadRequest, False),
        (404, ProviderBadRequest, False),
        (422, ProviderBadRequest, False),
        (408, ProviderTimeout, True),
    ],
)
async def test_http_errors_map_to_model_errors(
    client: ModelClient, fake: FakeProvider, status: int, error_class: type[ModelError], retryable: bool
) -> None:
    fake.script(Reply(status=status, error_message="model 'nope' does not exist"))
    with pytest.raises(error_class) as caught:
        await collect(client, user("hi"))
    assert type(caught.value) is error_class
    assert caught.value.status == status
    assert caught.value.retryable is retryable
    assert str(status) in caught.value.message
    if error_class is not ProviderAuthError:
        assert "model 'nope' does not exist" in caught.value.message
        assert "req_fake" in caught.value.message  # the provider's request id, for support tickets
    assert len(fake.requests) == 1, "the SDK must not retry: retries are the engine's decision"


async def test_error_codes_are_the_wire_codes(client: ModelClient, fake: FakeProvider) -> None:
    expected = {429: "PROVIDER_RATE_LIMITED", 500: "PROVIDER_ERROR", 400: "PROVIDER_BAD_REQUEST"}
    for status, code in expected.items():
        fake.script(Reply(status=status))
        with pytest.raises(ModelError) as caught:
            await collect(client, user("hi"))
        assert caught.value.code == code


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (529, ProviderUnavailable),
        (500, ProviderUnavailable),
        (429, ProviderRateLimited),
        (400, ProviderBadRequest),
        (401, ProviderAuthError),
    ],
)
async def test_errors_inside_the_stream_are_mapped_too(
    client: ModelClient, fake: FakeProvider, status: int, error_class: type[ModelError]
) -> None:
    fake.script(Reply(chunks=["partial ", "answer"], stream_error=status, error_message="went wrong"))
    received: list[ModelEvent] = []
    with pytest.raises(error_class) as caught:
        await consume(client.stream(user("hi")), received)
    assert received == [TextDelta("partial "), TextDelta("answer")]
    assert type(caught.value) is error_class
    assert "mid-stream" in caught.value.message


async def test_connection_refused_is_unavailable(kind: Kind, fake: FakeProvider) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}"
    client: AdapterClient
    if kind == "openai":
        client = OpenAIChatClient(api_key="sk-test", base_url=f"{url}/v1")
    else:
        client = AnthropicMessagesClient(api_key="sk-test", base_url=url)
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            await collect(client, user("hi"))
    finally:
        await client.aclose()
    assert caught.value.retryable
    assert str(port) in caught.value.message


async def test_a_stalled_stream_times_out(kind: Kind, fake: FakeProvider) -> None:
    client = make_client(kind, fake, timeout=0.3)
    fake.script(Reply(chunks=["slow ", "answer"], delay=60))  # 2 minutes if nothing times out
    try:
        # The guard only stops a hang: a read timeout that never fired ends in TimeoutError here.
        with anyio.fail_after(HANG_GUARD), pytest.raises(ProviderTimeout) as caught:
            await collect(client, user("hi"))
    finally:
        await client.aclose()
    assert caught.value.retryable
    assert "0.3s" in caught.value.message


async def test_a_dropped_connection_mid_stream_is_unavailable(
    client: ModelClient, fake: FakeProvider
) -> None:
    fake.script(Reply(chunks=["cut ", "off"], disconnect=True))
    received: list[ModelEvent] = []
    with pytest.raises(ProviderUnavailable):
        await consume(client.stream(user("hi")), received)
    assert received == [TextDelta("cut "), TextDelta("off")]


async def test_a_malformed_stream_is_unavailable(kind: Kind, client: ModelClient, fake: FakeProvider) -> None:
    raw = b"data: {not json\n\n" if kind == "openai" else b"event: message_start\ndata: {not json\n\n"
    fake.script(Reply(raw=raw))
    with pytest.raises(ProviderUnavailable, match="not valid JSON"):
        await collect(client, user("hi"))


# -- early close and cancellation ---------------------------------------------------------------


async def test_closing_the_stream_early_closes_the_http_stream(
    client: AdapterClient, fake: FakeProvider
) -> None:
    fake.script(Reply(chunks=["word "] * 100, delay=1))  # 100 s if drained
    # Draining instead of closing would trip the guard (TimeoutError).
    with anyio.fail_after(HANG_GUARD):
        async with aclosing(client.stream(user("hi"))) as stream:
            async for event in stream:
                assert event == TextDelta("word ")
                break
    # Only a stream that ended early sets this: a drained one finished normally.
    assert fake.requests[-1].aborted.wait(HANG_GUARD), "the fake never saw the client go away"


async def test_cancelling_the_consumer_closes_the_http_stream(
    client: ModelClient, fake: FakeProvider
) -> None:
    fake.script(Reply(chunks=["word "] * 100, delay=1))  # 100 s if drained
    received: list[object] = []
    with anyio.fail_after(HANG_GUARD), anyio.CancelScope() as scope:
        async for event in client.stream(user("hi")):
            received.append(event)
            scope.cancel()  # lands while the stream awaits the next chunk (a second away)
    assert scope.cancelled_caught
    assert received == [TextDelta("word ")]  # a stream that went on past the cancel gives more
    assert fake.requests[-1].aborted.wait(HANG_GUARD)


# -- requests refused before any I/O ------------------------------------------------------------


@pytest.mark.parametrize("key", ["model", "messages", "stream"])
async def test_extra_may_not_override_the_request_itself(
    client: ModelClient, fake: FakeProvider, key: str
) -> None:
    with pytest.raises(ProviderBadRequest, match=key):
        await collect(client, user("hi", extra={key: "x"}))
    assert fake.requests == []
