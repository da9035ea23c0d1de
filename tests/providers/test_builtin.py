from __future__ import annotations

import json
import math
import time

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from noukai_server.providers import (
    ChatMessage,
    EchoModel,
    ModelRequest,
    ModelResponse,
    ProviderBadRequest,
    TestModel,
    TextDelta,
    ToolCall,
    ToolSpec,
)
from noukai_server.providers._words import count_words, word_chunks
from noukai_server.providers.builtin import NO_TOOLS_REPLY
from tests.providers._support import collect, user

# -- word chunks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "chunks"),
    [
        ("", []),
        ("hello", ["hello"]),
        ("hello world", ["hello ", "world"]),
        ("  lead  and trail \n", ["  lead  ", "and ", "trail \n"]),
        ("   ", ["   "]),
        ("\n\t", ["\n\t"]),
    ],
)
def test_word_chunks_keep_every_character(text: str, chunks: list[str]) -> None:
    assert word_chunks(text) == chunks


@given(st.text())
def test_word_chunks_join_back_to_the_text(text: str) -> None:
    assert "".join(word_chunks(text)) == text


def test_count_words_counts_at_least_one_for_any_text() -> None:
    assert count_words("a b", None, "c") == 3
    assert count_words(None, "") == 0
    assert count_words("  ") == 1


# -- builtin:echo ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_echo_streams_the_prompt_back_exactly(prompt: str) -> None:
    deltas, response = anyio.run(collect, EchoModel(), user(prompt))
    assert all(isinstance(delta, TextDelta) for delta in deltas)
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == prompt
    assert response.text == prompt
    assert response.usage.completion_tokens == len(deltas)


@pytest.mark.anyio
async def test_echo_streams_word_by_word_and_reports_usage() -> None:
    request = ModelRequest(
        model="echo",
        system="Be brief.",
        messages=(
            ChatMessage("user", "first question"),
            ChatMessage("assistant", "an answer"),
            ChatMessage("user", " say it back "),
        ),
    )
    deltas, response = await collect(EchoModel(), request)
    assert deltas == [TextDelta(" say "), TextDelta("it "), TextDelta("back ")]
    assert response.text == " say it back "
    assert response.usage.prompt_tokens == 2 + 2 + 2 + 3
    assert response.usage.completion_tokens == 3
    assert response.finish_reason == "stop"
    assert response.model == "echo"


@pytest.mark.anyio
@pytest.mark.parametrize("messages", [(ChatMessage("user", ""),), ()])
async def test_echo_of_nothing_is_an_empty_answer(messages: tuple[ChatMessage, ...]) -> None:
    deltas, response = await collect(EchoModel(), ModelRequest(model="echo", messages=messages))
    assert deltas == []
    assert response.text == ""
    assert response.usage.completion_tokens == 0


@pytest.mark.anyio
async def test_echo_waits_token_delay_between_chunks() -> None:
    started = time.monotonic()
    deltas, _ = await collect(EchoModel(), user("one two three", extra={"token_delay_ms": 50}))
    assert len(deltas) == 3
    assert time.monotonic() - started >= 0.09


@pytest.mark.anyio
async def test_cancelling_a_slow_echo_interrupts_the_delay() -> None:
    received: list[object] = []
    started = time.monotonic()
    with anyio.move_on_after(0.2) as scope:
        async for event in EchoModel().stream(user("one two three", extra={"token_delay_ms": 60_000})):
            received.append(event)
    assert scope.cancelled_caught
    assert received == [TextDelta("one ")]
    # Sitting out the delay would take 60 s: half of that is a margin no busy machine needs.
    assert time.monotonic() - started < 30


@pytest.mark.anyio
@pytest.mark.parametrize("bad", ["fast", -1, True, math.nan, math.inf, None])
async def test_a_bad_token_delay_is_a_bad_request(bad: object) -> None:
    with pytest.raises(ProviderBadRequest, match="token_delay_ms"):
        await collect(EchoModel(), user("hi", extra={"token_delay_ms": bad}))


# -- builtin:test ------------------------------------------------------------------------------

WEATHER = ToolSpec(
    "get_weather",
    "The weather in a city",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "default": 3},
        },
        "required": ["city"],
    },
)
ADD = ToolSpec(
    "add", parameters={"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "integer"}}}
)


@pytest.mark.anyio
async def test_test_model_calls_every_tool_once_then_answers_with_the_results() -> None:
    model = TestModel()
    first = user("what now?", tools=(WEATHER, ADD))
    deltas, response = await collect(model, first)

    assert deltas == []
    assert response.finish_reason == "tool_calls"
    assert response.text == ""
    assert [call.id for call in response.tool_calls] == ["call_0_get_weather", "call_1_add"]
    assert json.loads(response.tool_calls[0].arguments) == {"city": "a", "unit": "celsius", "days": 3}
    assert json.loads(response.tool_calls[1].arguments) == {"a": 0.0, "b": 0}
    assert response.usage.completion_tokens == 2

    second = ModelRequest(
        model="test",
        tools=(WEATHER, ADD),
        messages=(
            *first.messages,
            ChatMessage("assistant", tool_calls=response.tool_calls),
            ChatMessage("tool", "sunny", tool_call_id="call_0_get_weather"),
            ChatMessage("tool", "3", tool_call_id="call_1_add"),
        ),
    )
    deltas, answer = await collect(model, second)
    assert answer.text == "tool results: get_weather=sunny; add=3"
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == answer.text
    assert len(deltas) > 1
    assert answer.finish_reason == "stop"
    assert answer.tool_calls == ()
    assert answer.usage.completion_tokens == len(deltas)


@pytest.mark.anyio
async def test_test_model_is_deterministic() -> None:
    request = user("again", tools=(WEATHER,))
    assert await collect(TestModel(), request) == await collect(TestModel(), request)


@pytest.mark.anyio
async def test_test_model_without_tools_answers_a_fixed_text() -> None:
    deltas, response = await collect(TestModel(), user("hello"))
    assert response.text == NO_TOOLS_REPLY
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == NO_TOOLS_REPLY
    assert response.finish_reason == "stop"


@pytest.mark.anyio
async def test_tool_choice_none_answers_without_calling() -> None:
    _, response = await collect(TestModel(), user("hello", tools=(WEATHER,), tool_choice="none"))
    assert response.tool_calls == ()
    assert response.text == NO_TOOLS_REPLY


@pytest.mark.anyio
@pytest.mark.parametrize(
    "choice",
    [{"type": "function", "function": {"name": "add"}}, {"type": "tool", "name": "add"}],
)
async def test_a_forced_tool_choice_calls_only_that_tool(choice: dict[str, object]) -> None:
    _, response = await collect(TestModel(), user("sum", tools=(WEATHER, ADD), tool_choice=choice))
    assert [call.name for call in response.tool_calls] == ["add"]


@pytest.mark.anyio
async def test_a_choice_dict_without_a_name_calls_every_tool() -> None:
    _, response = await collect(TestModel(), user("go", tools=(WEATHER, ADD), tool_choice={"type": "any"}))
    assert [call.name for call in response.tool_calls] == ["get_weather", "add"]


@pytest.mark.anyio
async def test_forcing_a_tool_that_is_not_offered_is_a_bad_request() -> None:
    choice = {"type": "function", "function": {"name": "missing"}}
    with pytest.raises(ProviderBadRequest, match="missing"):
        await collect(TestModel(), user("go", tools=(WEATHER,), tool_choice=choice))


@pytest.mark.anyio
async def test_tool_calls_of_an_earlier_turn_do_not_count() -> None:
    call = ToolCall("call_0_add", "add", "{}")
    request = ModelRequest(
        model="test",
        tools=(ADD,),
        messages=(
            ChatMessage("user", "first"),
            ChatMessage("assistant", tool_calls=(call,)),
            ChatMessage("tool", "1", tool_call_id="call_0_add"),
            ChatMessage("assistant", "tool results: add=1"),
            ChatMessage("user", "second"),
        ),
    )
    _, response = await collect(TestModel(), request)
    assert [c.name for c in response.tool_calls] == ["add"]


@pytest.mark.anyio
async def test_a_missing_tool_result_is_answered_as_empty() -> None:
    call = ToolCall("call_0_add", "add", "{}")
    request = ModelRequest(
        model="test",
        tools=(ADD,),
        messages=(ChatMessage("user", "go"), ChatMessage("assistant", tool_calls=(call,))),
    )
    _, response = await collect(TestModel(), request)
    assert response.text == "tool results: add="


@pytest.mark.anyio
async def test_test_model_honours_token_delay() -> None:
    with pytest.raises(ProviderBadRequest):
        await collect(TestModel(), user("go", extra={"token_delay_ms": "slow"}))


def test_test_model_is_not_collected_by_pytest() -> None:
    assert TestModel.__test__ is False


@pytest.mark.anyio
async def test_streams_end_with_exactly_one_response() -> None:
    events = [event async for event in EchoModel().stream(user("a b"))]
    assert sum(isinstance(event, ModelResponse) for event in events) == 1
