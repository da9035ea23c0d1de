"""Typed events: every type the server emits, `.type` names, and the never-drop fallback."""

from __future__ import annotations

import json
from typing import Any

import pytest

import noukai
from noukai._events import event_from_payload, parse_event, sdk_type

PAYLOADS: list[tuple[str, dict[str, Any], type[Any]]] = [
    (
        "run_started",
        {
            "runId": "r",
            "executionId": "r",
            "flowId": "f",
            "stepCount": 2,
            "flowVersion": 0,
            "triggerType": "step",
        },
        noukai.RunStarted,
    ),
    ("step_started", {"stepId": "a", "name": "A", "stepIndex": 0, "type": "llm"}, noukai.StepStarted),
    ("step_input", {"stepId": "a", "stepIndex": 0, "inputData": {"model": "m"}}, noukai.StepInput),
    ("step_output", {"stepId": "a", "stepIndex": 0, "outputData": "hel"}, noukai.StepOutput),
    ("step_reasoning", {"stepId": "a", "delta": "think"}, noukai.StepReasoning),
    ("step_progress", {"stepId": "a", "stepIndex": 0, "loopIndex": 2, "output": "X"}, noukai.StepProgress),
    (
        "step_completed",
        {
            "stepId": "a",
            "name": None,
            "stepIndex": 0,
            "type": "llm",
            "output": {"k": 1},
            "durationMs": 5,
            "tokens": {"prompt": 1, "completion": 2, "total": 3},
            "costUsd": "0.000100",
            "model": "builtin:echo",
        },
        noukai.StepCompleted,
    ),
    ("step_error", {"stepId": "b", "error": {"code": "TEMPLATE_ERROR", "message": "m"}}, noukai.StepFailed),
    (
        "step_retrying",
        {
            "stepId": "a",
            "attempt": 1,
            "nextAttempt": 2,
            "backoffMs": 250,
            "error": {"code": "PROVIDER_TIMEOUT"},
        },
        noukai.StepRetrying,
    ),
    (
        "step_paused",
        {"stepId": "a", "stepIndex": 0, "nextStepIndex": 1, "executionId": "r"},
        noukai.StepPaused,
    ),
    (
        "step_paused_for_tool_calls",
        {
            "runId": "r",
            "executionId": "r",
            "stepId": "a",
            "stepIndex": 1,
            "iterationsUsed": 1,
            "toolCallMessages": [{"role": "assistant"}],
            "toolCalls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        noukai.ToolCallsRequired,
    ),
    (
        "tool_call_started",
        {"stepId": "a", "toolCallId": "c1", "name": "get_weather", "arguments": {"city": "Paris"}},
        noukai.ToolCallStarted,
    ),
    (
        "tool_call_completed",
        {"stepId": "a", "toolCallId": "c1", "name": "get_weather", "result": "sunny", "durationMs": 3},
        noukai.ToolCallCompleted,
    ),
    (
        "flow_completed",
        {"runId": "r", "executionId": "r", "result": "x", "summary": {}},
        noukai.FlowCompleted,
    ),
    (
        "run_failed",
        {"runId": "r", "executionId": "r", "error": {"code": "C", "message": "m"}},
        noukai.RunFailed,
    ),
    ("run_cancelled", {"runId": "r", "executionId": "r"}, noukai.RunCancelled),
]


@pytest.mark.parametrize(("wire", "payload", "cls"), PAYLOADS)
def test_every_event_type_parses_to_its_class(wire: str, payload: dict[str, Any], cls: type[Any]) -> None:
    event = parse_event(wire, json.dumps({"eventType": wire, "seq": 4, **payload}), seq=None)
    assert type(event) is cls
    assert event.type == sdk_type(wire)
    assert event.seq == 4


def test_type_names_follow_the_readme() -> None:
    assert sdk_type("step_paused_for_tool_calls") == "tool_calls_required"
    assert sdk_type("step_error") == "step_error"
    assert sdk_type("flow_started") == "run_started"
    assert isinstance(parse_event("flow_started", '{"runId": "r"}'), noukai.RunStarted)


def test_step_type_never_clobbers_the_event_type() -> None:
    event = parse_event("step_completed", json.dumps(PAYLOADS[6][1]))
    assert isinstance(event, noukai.StepCompleted)
    assert event.type == "step_completed" and event.step_type == "llm"
    assert event.tokens is not None and event.tokens.total == 3
    assert event.cost_usd == "0.000100"


def test_fields_and_helpers() -> None:
    output = parse_event("step_output", '{"stepId": "a", "outputData": "hi"}')
    assert isinstance(output, noukai.StepOutput) and output.text == "hi"
    assert event_from_payload("step_output", {"stepId": "a", "outputData": {"x": 1}}).text == ""  # type: ignore[union-attr]
    failed = parse_event("step_error", '{"stepId": "b", "error": {"code": "X", "message": "boom"}}')
    assert isinstance(failed, noukai.StepFailed) and (failed.code, failed.message) == ("X", "boom")
    bare = parse_event("run_failed", "{}")
    assert isinstance(bare, noukai.RunFailed) and bare.code is None and bare.message is None


def test_the_event_line_wins_and_the_payload_names_a_missing_one() -> None:
    assert parse_event("step_output", '{"eventType": "run_started", "stepId": "a"}').type == "step_output"
    assert parse_event(None, '{"eventType": "run_cancelled"}').type == "run_cancelled"


def test_unknown_and_invalid_events_keep_all_their_data() -> None:
    unknown = parse_event("loop_completed", '{"stepId": "a", "n": 3}', seq=9)
    assert isinstance(unknown, noukai.UnknownEvent)
    assert (unknown.type, unknown.seq, unknown.data, unknown.error) == (
        "loop_completed",
        9,
        {"stepId": "a", "n": 3},
        None,
    )
    invalid = parse_event("step_completed", '{"stepId": 5, "durationMs": "slow"}')
    assert isinstance(invalid, noukai.UnknownEvent) and invalid.type == "step_completed"
    assert invalid.data == {"stepId": 5, "durationMs": "slow"} and invalid.error
    not_json = parse_event("x", "{nope")
    assert isinstance(not_json, noukai.UnknownEvent) and not_json.data == "{nope"
    not_object = parse_event("x", "[1, 2]")
    assert isinstance(not_object, noukai.UnknownEvent) and not_object.data == [1, 2]
    nameless = parse_event(None, '{"a": 1}')
    assert isinstance(nameless, noukai.UnknownEvent) and nameless.type == "message"


def test_known_events_keep_unknown_fields() -> None:
    event = parse_event("run_started", '{"runId": "r", "region": "eu"}')
    assert event.model_extra == {"region": "eu"}


def test_tool_calls_required_resume_needs_a_stream() -> None:
    event = parse_event("step_paused_for_tool_calls", json.dumps(PAYLOADS[10][1]))
    assert isinstance(event, noukai.ToolCallsRequired)
    with pytest.raises(RuntimeError):
        event.resume(tool_results=[])
    seen: list[Any] = []
    event._on_resume = seen.append
    event.resume(tool_results=[{"tool_call_id": "c1", "output": "x"}])
    assert seen == [[{"tool_call_id": "c1", "output": "x"}]]


@pytest.mark.anyio
async def test_resume_is_awaitable() -> None:
    event = parse_event("step_paused_for_tool_calls", json.dumps(PAYLOADS[10][1]))
    assert isinstance(event, noukai.ToolCallsRequired)
    seen: list[Any] = []
    event._on_resume = seen.append
    await event.resume(tool_results=[])
    assert seen == [[]]


def test_events_are_immutable() -> None:
    event = parse_event("run_cancelled", "{}")
    with pytest.raises(ValueError):
        event.seq = 3  # type: ignore[misc]
