"""`/openai/v1` driven by the official OpenAI SDK, unmodified: models, completions streamed and
not, the answer-step rule, a client tool round trip, and every refusal as the SDK's exception."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageParam

from tests.protocols.conftest import WEATHER, Tenant

TOOLS = [cast(ChatCompletionFunctionToolParam, WEATHER)]
_OPEN: list[OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def client(tenant: Tenant, key: str | None = None) -> OpenAI:
    """The official SDK, unmodified, pointed at `/openai/v1` with a Noukai key (closed after the
    test)."""
    sdk = OpenAI(
        base_url=f"{tenant.server.base_url}/openai/v1",
        api_key=key or tenant.key,
        max_retries=0,
        timeout=30,
    )
    _OPEN.append(sdk)
    return sdk


def user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "system", "content": "ignored"}, {"role": "user", "content": text}]


def test_models_are_the_flows_the_key_may_run(tenant: Tenant) -> None:
    ids = {model.id for model in client(tenant).models.list()}
    assert {tenant.model(s) for s in ("echo", "chain", "agent", "greet", "broken", "limited")} <= ids
    assert all(i.startswith("proto/") for i in ids)  # not dev/main's flows
    model = client(tenant).models.retrieve(tenant.model("echo"))
    assert model.id == tenant.model("echo") and model.owned_by == "proto" and model.created > 0
    assert client(tenant).models.retrieve(tenant.model("echo") + "/v1").id == tenant.model("echo") + "/v1"


def test_a_project_key_sees_its_project_only(tenant: Tenant) -> None:
    key = tenant.server.create_key("proto", "elsewhere")
    assert list(client(tenant, key).models.list()) == []
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(tenant, key).chat.completions.create(model=tenant.model("echo"), messages=user("hi"))
    assert caught.value.code == "FORBIDDEN"


def test_a_completion(tenant: Tenant) -> None:
    answer = client(tenant).chat.completions.create(model=tenant.model("echo"), messages=user("hello there"))
    assert answer.object == "chat.completion" and answer.model == tenant.model("echo")
    choice = answer.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant" and choice.message.content == "hello there"
    assert answer.usage is not None and answer.usage.completion_tokens == 2
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_a_streamed_completion_with_usage(tenant: Tenant) -> None:
    stream = client(tenant).chat.completions.create(
        model=tenant.model("echo"),
        messages=user("one two three"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) == 3 and "".join(deltas) == "one two three"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert len({c.id for c in chunks}) == 1


def test_only_the_answer_step_streams(tenant: Tenant) -> None:
    stream = client(tenant).chat.completions.create(
        model=tenant.model("chain"), messages=user("hi"), stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "then first hi"
    assert all(c.usage is None for c in chunks)  # no usage chunk unless asked for
    whole = client(tenant).chat.completions.create(model=tenant.model("chain"), messages=user("hi"))
    assert whole.choices[0].message.content == text


def test_a_template_answer_comes_whole_and_parameters_are_the_inputs(tenant: Tenant) -> None:
    extra = {"parameters": {"name": "Ada"}}
    whole = client(tenant).chat.completions.create(
        model=tenant.model("greet"), messages=user("-"), extra_body=extra
    )
    assert json.loads(whole.choices[0].message.content or "") == {"greeting": "Hello, Ada!", "excited": False}
    stream = client(tenant).chat.completions.create(
        model=tenant.model("greet"), messages=user("-"), extra_body=extra, stream=True
    )
    deltas = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert deltas == [whole.choices[0].message.content]


def _round_trip(tenant: Tenant, *, stream: bool) -> None:
    sdk = client(tenant)
    messages: list[Any] = [{"role": "user", "content": "weather in Paris?"}]

    def ask() -> tuple[str | None, list[dict[str, Any]], str]:
        if not stream:
            answer = sdk.chat.completions.create(model=tenant.model("agent"), messages=messages, tools=TOOLS)
            message = answer.choices[0].message
            found = [c.model_dump() for c in message.tool_calls or []]
            return message.content, found, answer.choices[0].finish_reason
        text, pieces, finish = "", dict[int, dict[str, Any]](), ""
        chunks = sdk.chat.completions.create(
            model=tenant.model("agent"), messages=messages, tools=TOOLS, stream=True
        )
        for part in chunks:
            if not part.choices:
                continue
            delta = part.choices[0].delta
            text += delta.content or ""
            for call in delta.tool_calls or []:
                entry = pieces.setdefault(call.index, {"type": "function", "function": {"arguments": ""}})
                entry["id"] = call.id or entry.get("id")
                if call.function is not None:
                    entry["function"]["name"] = call.function.name or entry["function"].get("name")
                    entry["function"]["arguments"] += call.function.arguments or ""
            finish = part.choices[0].finish_reason or finish
        return text or None, [pieces[i] for i in sorted(pieces)], finish

    content, calls, finish = ask()
    assert finish == "tool_calls" and not content
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    assert calls[0]["id"].startswith("call_nk_")
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "a"}
    messages.append({"role": "assistant", "content": None, "tool_calls": calls})
    messages.append({"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"})
    content, calls, finish = ask()
    assert finish == "stop" and calls == []
    assert content == "tool results: get_weather=sunny"


def test_a_client_tool_round_trip(tenant: Tenant) -> None:
    _round_trip(tenant, stream=False)


def test_a_streamed_client_tool_round_trip(tenant: Tenant) -> None:
    _round_trip(tenant, stream=True)


def test_a_paused_run_is_resumed_once(tenant: Tenant) -> None:
    sdk = client(tenant)
    messages: list[Any] = [{"role": "user", "content": "weather?"}]
    first = sdk.chat.completions.create(model=tenant.model("agent"), messages=messages, tools=TOOLS)
    calls = [c.model_dump() for c in first.choices[0].message.tool_calls or []]
    messages += [
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "rain"},
    ]
    assert (
        sdk.chat.completions.create(model=tenant.model("agent"), messages=messages).choices[0].finish_reason
        == "stop"
    )
    with pytest.raises(openai.BadRequestError) as caught:  # the run is no longer waiting
        sdk.chat.completions.create(model=tenant.model("agent"), messages=messages)
    assert caught.value.code == "EXECUTION_ID_INVALID"


# --- refusals --------------------------------------------------------------------------------------


def test_a_bad_key_is_an_authentication_error(tenant: Tenant) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client(tenant, "nk_wrong").models.list()
    assert caught.value.code == "UNAUTHENTICATED"
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "authentication_error"
    raw = httpx.post(f"{tenant.server.base_url}/openai/v1/chat/completions", json={})
    assert raw.status_code == 401 and set(raw.json()["error"]) == {"message", "type", "code", "param"}


@pytest.mark.parametrize(
    "model", ["proto/chat/nothing", "proto/chat/echo/v7", "not-a-flow", "proto/chat/echo/x"]
)
def test_an_unknown_model_is_not_found(tenant: Tenant, model: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(tenant).chat.completions.create(model=model, messages=user("hi"))
    assert caught.value.code == "FLOW_NOT_FOUND"
    with pytest.raises(openai.NotFoundError):
        client(tenant).models.retrieve(model)


def test_another_orgs_model_is_forbidden(tenant: Tenant) -> None:
    with pytest.raises(openai.PermissionDeniedError):
        client(tenant).chat.completions.create(model="dev/main/echo", messages=user("hi"))


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"model": "proto/chat/echo", "messages": []}, "VALIDATION_ERROR", "messages"),
        ({"model": "proto/chat/echo", "messages": [{"role": "wizard", "content": "x"}]}, "VALIDATION_ERROR",
         "messages[0].role"),
        ({"model": "proto/chat/echo", "messages": [{"role": "tool", "content": "x"}]}, "VALIDATION_ERROR",
         "messages[0].tool_call_id"),
        ({"model": "proto/chat/echo", "messages": [{"role": "user", "content": 3}]}, "VALIDATION_ERROR",
         "messages[0].content"),
        ({"model": "proto/chat/echo", "messages": [{"role": "system", "content": "x"}]}, "MISSING_MESSAGE",
         None),
        ({"model": "proto/chat/echo", "messages": [{"role": "user", "content": "x"}], "tools": [WEATHER]},
         "TOOLS_NOT_ENABLED", None),
        ({"model": "proto/chat/agent", "messages": [{"role": "user", "content": "x"}],
          "tools": [{"type": "function", "function": {"name": "bad name"}}]}, "TOOL_NAME_INVALID", None),
        ({"model": "proto/chat/greet", "messages": [{"role": "user", "content": "x"}]}, "VALIDATION_ERROR",
         None),
        ({"model": "proto/chat/agent",
          "messages": [{"role": "tool", "tool_call_id": "call_1", "content": "x"}]},
         "EXECUTION_ID_INVALID", None),
        ({"model": "proto/chat/agent", "messages": [
            {"role": "tool", "tool_call_id": "call_nk_" + "0" * 32 + "_3_call_0", "content": "x"}]},
         "RUN_NOT_FOUND", None),
    ],
)  # fmt: skip
def test_bad_requests_are_bad_request_errors(
    tenant: Tenant, body: dict[str, Any], code: str, param: str | None
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client(tenant).chat.completions.create(**body)
    error = caught.value
    expected = openai.NotFoundError if code == "RUN_NOT_FOUND" else openai.BadRequestError
    assert type(error) is expected, error
    assert error.code == code
    assert isinstance(error.body, dict) and error.body["param"] == param


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"{nope", "INVALID_JSON"),
        (b"", "INVALID_JSON"),
        (b'{"model": "proto/chat/echo"}', "VALIDATION_ERROR"),
    ],
)
def test_a_body_that_is_not_a_request(tenant: Tenant, content: bytes, code: str) -> None:
    raw = httpx.post(
        f"{tenant.server.base_url}/openai/v1/chat/completions",
        content=content,
        headers={"Authorization": f"Bearer {tenant.key}", "Content-Type": "application/json"},
    )
    assert raw.status_code == 400
    assert raw.json()["error"]["code"] == code
    assert raw.json()["error"]["type"] == "invalid_request_error"


def test_a_failed_run_is_a_server_error(tenant: Tenant) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client(tenant).chat.completions.create(model=tenant.model("broken"), messages=user("hi"))
    assert caught.value.code == "TEMPLATE_ERROR" and "failed" in caught.value.message


def test_a_failed_streamed_run_ends_with_an_error(tenant: Tenant) -> None:
    stream = client(tenant).chat.completions.create(
        model=tenant.model("broken"), messages=user("hi"), stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        list(stream)
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "TEMPLATE_ERROR"


def test_a_rate_limited_provider_is_a_rate_limit_error(tenant: Tenant) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client(tenant).chat.completions.create(model=tenant.model("limited"), messages=user("hi"))
    assert caught.value.code == "PROVIDER_RATE_LIMITED"


def test_a_server_side_thread_keeps_the_history(tenant: Tenant) -> None:
    headers = {"Authorization": f"Bearer {tenant.key}"}
    created = httpx.post(f"{tenant.server.api_url}/threads", json={"project": "chat"}, headers=headers)
    assert created.status_code == 201, created.text
    thread_id = created.json()["threadId"]
    sdk = client(tenant)
    first = sdk.chat.completions.create(
        model=tenant.model("echo"), messages=user("one"), extra_headers={"X-Noukai-Thread-Id": thread_id}
    )
    assert first.choices[0].message.content == "one"
    # A chat UI sends the whole conversation again; only its last user message is the new turn.
    conversation: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "one"},
        {"role": "user", "content": "two"},
    ]
    second = sdk.chat.completions.create(
        model=tenant.model("echo"), messages=conversation, extra_headers={"X-Noukai-Thread-Id": thread_id}
    )
    assert second.choices[0].message.content == "two"
    page = httpx.get(f"{tenant.server.api_url}/threads/{thread_id}/messages", headers=headers).json()
    turns = [(m["role"], m["message"]["content"]) for m in page["messages"]]
    assert turns == [("user", "one"), ("assistant", "one"), ("user", "two"), ("assistant", "two")]


def test_an_unknown_thread_is_not_found(tenant: Tenant) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(tenant).chat.completions.create(
            model=tenant.model("echo"),
            messages=user("x"),
            extra_headers={"X-Noukai-Thread-Id": "00000000-0000-0000-0000-000000000000"},
        )
    assert caught.value.code == "THREAD_NOT_FOUND"


def test_every_answer_names_its_run(tenant: Tenant) -> None:
    raw = client(tenant).chat.completions.with_raw_response.create(
        model=tenant.model("echo"), messages=user("hi")
    )
    run_id = raw.headers["x-noukai-execution-id"]
    headers = {"Authorization": f"Bearer {tenant.key}"}
    run = httpx.get(f"{tenant.server.api_url}/runs/{run_id}", headers=headers).json()
    assert run["status"] == "completed" and run["result"] == "hi"


def test_a_cancelled_streamed_run_ends_with_a_conflict(tenant: Tenant) -> None:
    sdk = client(tenant)
    with sdk.chat.completions.with_streaming_response.create(
        model=tenant.model("slow"), messages=user("one two three four five six"), stream=True
    ) as response:
        run_id = response.headers["x-noukai-execution-id"]
        chunks = response.parse()
        first = next(iter(chunks))
        assert first.choices[0].delta.role == "assistant"
        headers = {"Authorization": f"Bearer {tenant.key}"}
        httpx.post(f"{tenant.server.api_url}/runs/{run_id}/cancel", headers=headers).raise_for_status()
        with pytest.raises(openai.APIError) as caught:
            list(chunks)
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "RUN_CANCELLED"


def test_a_body_over_4_mib_is_too_large(tenant: Tenant) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client(tenant).chat.completions.create(
            model=tenant.model("echo"), messages=user("x" * (4 * 1024 * 1024))
        )
    assert caught.value.status_code == 413 and caught.value.code == "BODY_TOO_LARGE"


def test_tool_results_must_answer_the_pause_of_one_run(tenant: Tenant) -> None:
    sdk = client(tenant)
    question: list[Any] = [{"role": "user", "content": "weather?"}]
    ids = []
    for _ in range(2):
        paused = sdk.chat.completions.create(model=tenant.model("agent"), messages=question, tools=TOOLS)
        ids.append((paused.choices[0].message.tool_calls or [])[0].id)
    two_runs = [*question, *({"role": "tool", "tool_call_id": i, "content": "x"} for i in ids)]
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model=tenant.model("agent"), messages=two_runs)
    assert caught.value.code == "TOOL_RESULTS_MISMATCH"
    run_hex, seq, call = ids[0].removeprefix("call_nk_").split("_", 2)
    later = f"call_nk_{run_hex}_{int(seq) + 1000}_{call}"  # a call the run has not made
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model=tenant.model("agent"),
            messages=[*question, {"role": "tool", "tool_call_id": later, "content": "x"}],
        )
    assert caught.value.code == "EXECUTION_ID_INVALID"
    with pytest.raises(openai.BadRequestError) as caught:  # another flow's run
        sdk.chat.completions.create(
            model=tenant.model("echo"),
            messages=[*question, {"role": "tool", "tool_call_id": ids[1], "content": "x"}],
        )
    assert caught.value.code == "EXECUTION_ID_INVALID"
