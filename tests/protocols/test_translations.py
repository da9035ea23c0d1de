"""The protocol translations on their own, from synthetic logs: the cases a real run rarely
shows (a cancelled run, a retried step, a log that ends early), the call id codec, the error
mapping, and the answer-step rule."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from ag_ui.core import Event
from pydantic import TypeAdapter

from noukai_server.flows import load_flow
from noukai_server.runtime import RequestRejected
from noukai_server.runtime.protocols import AnswerText, Segment, decode_call_id, encode_call_id, result_text
from noukai_server.runtime.protocols.agui import AguiRequest, AguiTranslation, RunAgentInputBody, agui_request
from noukai_server.runtime.protocols.common import FlowAddress
from noukai_server.runtime.protocols.mcp_tools import input_schema, tool_name
from noukai_server.runtime.protocols.openai_chat import (
    ChatCompletionBody,
    ChatRequest,
    ChatTranslation,
    chat_request,
    openai_error,
)
from noukai_server.runtime.runs import FlowTarget
from noukai_server.store import FlowHead

RUN = str(uuid.uuid4())
EVENT: TypeAdapter[Any] = TypeAdapter(Event)


def segment(*steps: dict[str, Any]) -> Segment:
    document = {"slug": "f", "steps": list(steps)}
    head = FlowHead("flow", "org", "project", 1, None)
    return Segment(FlowTarget(head, 0, 1, document, load_flow(document)), RUN, 0)


LLM = {"id": "a", "type": "llm", "model": "builtin:echo", "prompt": "{{ message }}"}
TEMPLATE = {"id": "t", "type": "template", "template": "x"}


def step(kind: str, step_id: str = "a", index: int = 0, **fields: Any) -> dict[str, Any]:
    return {"eventType": kind, "stepId": step_id, "stepIndex": index, "attempt": 1, "seq": 1, **fields}


def test_call_ids_name_their_run_and_survive_a_round_trip() -> None:
    encoded = encode_call_id(RUN, 12, "call_0_get_weather")
    decoded = decode_call_id(encoded)
    assert decoded is not None
    assert (decoded.run_id, decoded.seq, decoded.call_id) == (RUN, 12, "call_0_get_weather")
    for bad in ("call_1", "call_nk_", "call_nk_xyz_1_a", f"call_nk_{'g' * 32}_1_a", f"call_nk_{'0' * 32}_x_a",
                f"call_nk_{'0' * 32}_1_"):  # fmt: skip
        assert decode_call_id(bad) is None, bad


@pytest.mark.parametrize(
    ("code", "during_run", "status", "kind"),
    [
        ("UNAUTHENTICATED", False, 401, "authentication_error"),
        ("FORBIDDEN", False, 403, "permission_error"),
        ("FLOW_NOT_FOUND", False, 404, "invalid_request_error"),
        ("VALIDATION_ERROR", False, 400, "invalid_request_error"),
        ("MESSAGES_TOO_LARGE", False, 413, "invalid_request_error"),
        ("RATE_LIMIT", False, 429, "rate_limit_error"),
        ("PROVIDER_RATE_LIMITED", True, 429, "rate_limit_error"),
        ("TEMPLATE_ERROR", True, 500, "server_error"),
        ("PROVIDER_ERROR", True, 502, "server_error"),
        ("RUN_CANCELLED", True, 409, "invalid_request_error"),
        ("SOMETHING_NEW", True, 500, "server_error"),
    ],
)
def test_openai_error_statuses(code: str, during_run: bool, status: int, kind: str) -> None:
    answered, body = openai_error(code, "why", during_run=during_run)
    assert answered == status
    assert body == {"error": {"message": "why", "type": kind, "code": code, "param": None}}


def test_the_answer_step_is_the_last_model_step_without_foreach() -> None:
    assert AnswerText(segment(TEMPLATE, {**LLM, "id": "b"}).target.spec).step_index == 1
    assert AnswerText(segment(LLM, TEMPLATE).target.spec).step_index is None
    looping = {**LLM, "foreach": "{{ parameters.items }}", "prompt": "{{ item }}"}
    answer = AnswerText(segment(looping).target.spec)
    assert answer.step_index is None and answer.remainder(["x"]) == '["x"]'
    answer = AnswerText(segment(LLM).target.spec)
    assert answer.delta(step("step_output", outputData="hi")) == "hi" and answer.remainder("hi") == ""
    assert result_text(None) == "" and result_text({"a": 1}) == '{"a":1}'


def test_flow_addresses() -> None:
    assert FlowAddress.parse("o/p/s/v2") == FlowAddress("o", "p", "s", 2)
    assert FlowAddress.parse("o/p/s/v2").model_id == "o/p/s/v2"
    for bad in ("o/p", "o/p/s/v2/x", "o//s", "o/p/s/latest"):
        with pytest.raises(RequestRejected):
            FlowAddress.parse(bad)


def test_mcp_tool_names_and_schemas() -> None:
    assert tool_name("acme", "my.proj", "say hi") == "acme__my_proj__say_hi"
    assert len(tool_name("o" * 40, "p" * 40, "s")) == 64
    assert input_schema(segment(TEMPLATE).target.spec) == {
        "type": "object",
        "properties": {
            "message": {"type": "string", "description": "The user message the flow reads as `message`."}
        },
        "required": [],
    }


def agui(events: list[dict[str, Any]], *steps: dict[str, Any]) -> list[dict[str, Any]]:
    translation = AguiTranslation(segment(*(steps or (LLM,))), "thread", "run")
    out = translation.opening()
    for event in events:
        out += translation.feed(event)
    out += translation.ended_early()
    for raw in out:
        EVENT.validate_python(raw)
    return out


def test_agui_a_retried_step_stays_one_step_and_a_cancelled_run_says_so() -> None:
    out = agui(
        [
            step("step_started", name=None, type="llm"),
            step("step_output", outputData="par"),
            step(
                "step_retrying", error={"code": "PROVIDER_ERROR", "message": "x"}, nextAttempt=2, backoffMs=0
            ),
            step("step_started", name=None, type="llm", attempt=2),
            step("step_output", outputData="full"),
            {"eventType": "run_cancelled", "runId": RUN, "executionId": RUN, "seq": 9},
        ]
    )
    kinds = [e["type"] for e in out]
    assert kinds == [
        "RUN_STARTED",
        "STEP_STARTED",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "STEP_FINISHED",
        "RUN_FINISHED",
    ]
    assert out[-1]["outcome"] == {"type": "cancelled"}


def test_agui_a_log_that_ends_early_is_a_run_error() -> None:
    out = agui([step("step_started", name=None, type="llm")])
    assert [e["type"] for e in out][-2:] == ["STEP_FINISHED", "RUN_ERROR"]
    assert out[-1]["code"] == "INTERNAL_ERROR"


def test_openai_a_cancelled_run_and_an_early_end() -> None:
    translation = ChatTranslation(segment(LLM), "o/p/f")
    translation.feed({"eventType": "run_cancelled", "runId": RUN, "executionId": RUN, "seq": 3})
    assert translation.unfinished() == ("RUN_CANCELLED", f"run {RUN} was cancelled")
    early = ChatTranslation(segment(LLM), "o/p/f")
    assert early.unfinished() == ("INTERNAL_ERROR", f"the events of run {RUN} ended early")


# --- requests as run inputs (the parsing both endpoints do before anything runs) ---------------


def _chat(messages: list[dict[str, Any]], **extra: Any) -> ChatRequest:
    return chat_request(ChatCompletionBody(model="acme/web/chat", messages=messages, **extra))


def test_a_chat_request_keeps_the_conversation_and_takes_its_last_user_message() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    request = _chat(
        [
            {"role": "system", "content": "ignored: the flow has its own"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "first "}, {"type": "text", "text": "part"}],
            },
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
            {"role": "user", "content": "again"},
        ],
        stream=True,
        stream_options={"include_usage": True},
        parameters={"tone": "dry"},
    )
    assert (request.address, request.stream, request.include_usage) == (
        FlowAddress("acme", "web", "chat"),
        True,
        True,
    )
    assert request.inputs.message == "again" and request.inputs.parameters == {"tone": "dry"}
    assert request.inputs.messages is not None and [m["role"] for m in request.inputs.messages] == [
        "user",
        "assistant",
        "tool",
        "user",
    ]
    assert request.inputs.messages[0]["content"] == "first part"
    assert request.tool_results == []  # the conversation does not end with tool messages


def test_trailing_tool_messages_are_a_resume_and_a_thread_takes_only_the_new_turn() -> None:
    resume = _chat(
        [
            {"role": "user", "content": "q"},
            {"role": "tool", "tool_call_id": "call_a", "content": "1"},
            {"role": "tool", "tool_call_id": "call_b", "content": None},
        ]
    )
    assert [(r.tool_call_id, r.content) for r in resume.tool_results] == [("call_a", "1"), ("call_b", "")]
    body = ChatCompletionBody(model="acme/web/chat", messages=[{"role": "user", "content": "hi"}])
    on_thread = chat_request(body, on_thread=True)
    assert (on_thread.inputs.message, on_thread.inputs.messages) == ("hi", None)


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "wizard", "content": "x"}, "messages[0].role"),
        ({"role": "tool", "content": "x"}, "messages[0].tool_call_id"),
        ({"role": "assistant", "content": "x", "tool_calls": "f"}, "messages[0].tool_calls"),
        ({"role": "user", "content": 7}, "messages[0].content"),
        ({"role": "user", "content": ["not a part"]}, "messages[0].content"),
    ],
)
def test_a_chat_request_no_flow_could_take_is_refused(message: dict[str, Any], param: str) -> None:
    with pytest.raises(RequestRejected) as refused:
        _chat([message])
    assert refused.value.code == "VALIDATION_ERROR" and refused.value.details == {"param": param}


def _agui(*messages: dict[str, Any], **extra: Any) -> AguiRequest:
    body = {"threadId": "t", "runId": "r", "messages": list(messages), **extra}
    return agui_request(RunAgentInputBody.model_validate(body))


def test_an_agui_input_as_run_inputs() -> None:
    tool = {"name": "ask", "description": "Ask the user.", "parameters": {"type": "object"}}
    request = _agui(
        {"id": "0", "role": "developer", "content": "dropped"},
        {"id": "1", "role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "binary"}]},
        {"id": "2", "role": "assistant", "content": "hm", "toolCalls": [{"id": "c1"}]},
        {"id": "3", "role": "tool", "toolCallId": "c1", "content": None, "error": "denied"},
        tools=[tool, {"name": "bare"}],
        forwardedProps={"parameters": {"n": 1}},
    )
    assert (request.thread_id, request.run_id) == ("t", "r")
    assert request.inputs.message == "hello" and request.inputs.parameters == {"n": 1}
    assert [(r.tool_call_id, r.content) for r in request.tool_results] == [("c1", "denied")]
    assert request.inputs.tools is not None
    assert [t["function"]["name"] for t in request.inputs.tools] == ["ask", "bare"]
    assert request.inputs.tools[1]["function"]["parameters"] == {"type": "object"}
    assert _agui({"id": "1", "role": "user", "content": "x"}).inputs.tools is None


@pytest.mark.parametrize(
    ("messages", "extra", "needle"),
    [
        ([{"id": "1", "role": "wizard"}], {}, "not an AG-UI message role"),
        ([{"id": "1", "role": "tool", "content": "x"}], {}, "toolCallId is required"),
        ([{"id": "1", "role": "assistant", "toolCalls": "x"}], {}, "toolCalls must be a list"),
        ([{"id": "1", "role": "user", "content": 3}], {}, "a string or a list of content parts"),
        (
            [{"id": "1", "role": "user", "content": "x"}],
            {"forwardedProps": {"parameters": [1]}},
            "must be an object",
        ),
    ],
)
def test_an_agui_input_no_flow_could_take_is_refused(
    messages: list[dict[str, Any]], extra: dict[str, Any], needle: str
) -> None:
    with pytest.raises(RequestRejected) as refused:
        _agui(*messages, **extra)
    assert refused.value.code == "VALIDATION_ERROR" and needle in refused.value.message
