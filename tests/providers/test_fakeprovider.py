"""The fake provider itself: other suites rely on it, so its behaviour is pinned here."""

from __future__ import annotations

import time

import anthropic
import httpx2
import openai
import pytest

from tests.fakeprovider import FakeProvider, FakeToolCall, Reply


def test_unscripted_requests_echo_the_last_user_message(fake: FakeProvider) -> None:
    client = openai.OpenAI(api_key="sk-test", base_url=fake.openai_base_url, max_retries=0)
    completion = client.chat.completions.create(
        model="m",
        messages=[
            {"role": "user", "content": "first"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
        ],
    )
    assert completion.choices[0].message.content == "second"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 2


def test_non_streaming_openai_replies(fake: FakeProvider) -> None:
    fake.script(Reply(chunks=["a", "b"], tool_calls=[FakeToolCall("add", {"a": 1}, id="c1")], usage=(5, 6)))
    client = openai.OpenAI(api_key="sk-test", base_url=fake.openai_base_url, max_retries=0)
    completion = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    message = completion.choices[0].message
    assert message.content == "ab"
    assert message.tool_calls is not None
    assert message.tool_calls[0].id == "c1"
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 6)


def test_non_streaming_anthropic_replies(fake: FakeProvider) -> None:
    fake.script(Reply(chunks=["hi"], tool_calls=[FakeToolCall("add", {"a": 1})]))
    client = anthropic.Anthropic(api_key="sk-test", base_url=fake.anthropic_base_url, max_retries=0)
    message = client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.stop_reason == "tool_use"


def test_replies_are_used_in_order_and_strings_are_text(fake: FakeProvider) -> None:
    fake.script("one two", Reply(chunks=["three"]))
    assert fake.pending == 2
    client = openai.OpenAI(api_key="sk-test", base_url=fake.openai_base_url, max_retries=0)
    texts = [
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        .choices[0]
        .message.content
        for _ in range(3)
    ]
    assert texts == ["one two", "three", "x"]
    assert fake.pending == 0


def test_requests_are_recorded(fake: FakeProvider) -> None:
    client = anthropic.Anthropic(api_key="sk-test", base_url=fake.anthropic_base_url, max_retries=0)
    client.messages.create(
        model="m", max_tokens=10, system="sys", messages=[{"role": "user", "content": "x"}]
    )
    [received] = fake.requests
    assert received.api == "anthropic"
    assert received.path == "/v1/messages"
    assert received.body["system"] == "sys"
    assert "anthropic-version" in received.headers
    assert not received.aborted.is_set()


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        (
            "/v1/chat/completions",
            {"authorization": "Bearer sk-bad"},
            {
                "error": {
                    "message": "Incorrect API key provided: sk-bad.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            },
        ),
        (
            "/v1/messages",
            {"x-api-key": "sk-bad"},
            {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}},
        ),
    ],
)
def test_a_wrong_key_gets_a_provider_shaped_401(
    fake: FakeProvider, path: str, headers: dict[str, str], expected: object
) -> None:
    response = httpx2.post(fake.url + path, json={"model": "m", "messages": []}, headers=headers)
    assert response.status_code == 401
    assert response.json() == expected


def test_anthropic_accepts_x_api_key(fake: FakeProvider) -> None:
    response = httpx2.post(
        fake.url + "/v1/messages", json={"model": "m", "messages": []}, headers={"x-api-key": "sk-test"}
    )
    assert response.status_code == 200


def test_a_body_that_is_not_json_is_a_400(fake: FakeProvider) -> None:
    response = httpx2.post(
        fake.openai_base_url + "/chat/completions",
        content=b"{oops",
        headers={"authorization": "Bearer sk-test"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_scripted_error_statuses_use_each_provider_shape(fake: FakeProvider) -> None:
    fake.script(Reply(status=529, error_message="busy"), Reply(status=500, error_message="boom"))
    anthropic_error = httpx2.post(fake.url + "/v1/messages", json={}, headers={"x-api-key": "sk-test"})
    openai_error = httpx2.post(
        fake.openai_base_url + "/chat/completions", json={}, headers={"authorization": "Bearer sk-test"}
    )
    assert anthropic_error.status_code == 529
    assert anthropic_error.json()["error"] == {"type": "overloaded_error", "message": "busy"}
    assert anthropic_error.headers["request-id"].startswith("req_fake")
    assert openai_error.status_code == 500
    assert openai_error.json()["error"]["type"] == "server_error"
    assert openai_error.headers["x-request-id"].startswith("req_fake")


def test_streams_are_server_sent_events(fake: FakeProvider) -> None:
    response = httpx2.post(
        fake.openai_base_url + "/chat/completions",
        json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "a b"}]},
        headers={"authorization": "Bearer sk-test"},
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("data: [DONE]\n\n")
    assert '"usage"' not in response.text  # only with stream_options.include_usage


def test_a_keyless_fake_starts_and_stops_fast_even_mid_stream() -> None:
    started = time.monotonic()
    with FakeProvider(api_key=None) as fake:
        fake.script(Reply(chunks=["x"] * 50, delay=2))  # 100 s of streaming if waited for
        with httpx2.stream(
            "POST",
            fake.url + "/v1/messages",
            json={"stream": True, "messages": []},
            headers={"x-api-key": "anything"},
        ) as response:
            assert response.status_code == 200
        thread = fake._thread
        assert thread is not None
        fake.stop()
        # stop() gives the server 10 s to go: without force_exit it would still be serving the
        # scripted stream, and its thread would be alive here.
        assert not thread.is_alive()
        fake.stop()  # idempotent
    # A hang guard only: waiting the stream out would take 100 s.
    assert time.monotonic() - started < 30
