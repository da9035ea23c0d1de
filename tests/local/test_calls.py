"""The in-process API's calls: granularity, results, inputs refused as a server refuses them, failed
runs, client tools through `tool_handler`, and the caller's own functions, tools and noukai.toml."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

import noukai
import noukai_server
from noukai_server import local
from noukai_server.local import LocalFlow, load_flow
from tests.conftest import REPO_ROOT
from tests.public_api import assert_reexported

pytestmark = pytest.mark.anyio

EXAMPLES = REPO_ROOT / "examples" / "flows"
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def grade() -> Any:
    with load_flow(EXAMPLES / "grade.yaml") as flow:
        yield flow


@pytest.fixture
def agent() -> Any:
    with load_flow(EXAMPLES / "agent.yaml") as flow:
        yield flow


def types(events: Any) -> list[str]:
    return [e.type for e in events]


def test_the_server_package_exports_the_in_process_api() -> None:
    for name in ("load_flow", "LocalFlow", "LocalResult", "LocalStream", "AsyncLocalStream"):
        assert getattr(noukai_server, name) is getattr(local, name)
        assert_reexported(local, name)
    with pytest.raises(AttributeError):
        noukai_server.nothing_here  # noqa: B018


# Granularity ------------------------------------------------------------------------------------


def test_granularity_chooses_how_much_each_stream_carries(grade: LocalFlow) -> None:
    everything = types(grade.stream("helo", parameters={"verbose": True}))
    steps = types(grade.stream("helo", parameters={"verbose": True}, granularity="steps"))
    tokens = types(grade.stream("helo", parameters={"verbose": True}, granularity="tokens"))
    assert "step_output" in everything and "step_started" in everything
    assert steps == [t for t in everything if t not in {"step_output", "step_reasoning"}]
    assert tokens == [t for t in everything if t in {"step_output", "step_reasoning", "flow_completed"}]


def test_foreach_progress_is_in_the_token_view() -> None:
    with load_flow(EXAMPLES / "foreach.yaml", granularity="tokens") as flow:
        shown = types(flow.stream(parameters={"items": ["a", "b"]}))
    assert shown == ["step_progress", "step_progress", "flow_completed"]


def test_an_unknown_granularity_is_refused(grade: LocalFlow) -> None:
    with pytest.raises(ValueError, match="granularity must be one of all, steps, tokens; got 'words'"):
        load_flow(EXAMPLES / "echo.yaml", granularity="words")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="granularity"):
        grade.stream("x", granularity="tokenz")  # type: ignore[arg-type]


def test_invoke_returns_the_result_and_the_events(grade: LocalFlow) -> None:
    result = grade.invoke("helo")
    assert result.status == "completed"
    assert result.result == {
        "input": "helo",
        "verdict": "Check: helo",
        "explained": False,
        "explanation": None,
    }
    assert result.summary is not None and result.summary["skipped"] == ["explain"]
    assert types(result.events)[0] == "run_started" and types(result.events)[-1] == "flow_completed"


async def test_ainvoke_and_astream_give_what_invoke_and_stream_give(grade: LocalFlow) -> None:
    result = await grade.ainvoke("helo")
    streamed = [e async for e in grade.astream("helo", granularity="steps")]
    assert result.result == grade.invoke("helo").result
    assert types(streamed) == [t for t in types(result.events) if t != "step_output"]


# Bad sources: the codes a push to the server answers with ---------------------------------------


@pytest.mark.parametrize(
    ("source", "code", "text"),
    [
        ({"slug": "x", "steps": [{"id": "a", "type": "nope"}]}, "INVALID_TREE", "steps[0]"),
        ({"slug": "x", "steps": []}, "NO_STEPS", "steps"),
        ("slug: x\nsteps: [", "INVALID_TREE", ""),
        (
            {"slug": "x", "steps": [{"id": "a", "type": "python", "function": "no.such"}]},
            "INVALID_TREE",
            "no.such",
        ),
        (
            {"slug": "x", "steps": [{"id": "a", "type": "llm", "model": "nope:m", "prompt": "p"}]},
            "INVALID_TREE",
            "nope",
        ),
        ("missing-flow.yaml", "INVALID_TREE", "cannot read flow file"),
    ],
)
def test_a_bad_source_raises_the_servers_flow_error(source: Any, code: str, text: str) -> None:
    with pytest.raises(noukai_server.flows.FlowValidationError) as caught:
        load_flow(source)
    assert caught.value.code == code
    assert text in str(caught.value)


def test_a_source_of_another_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="a flow source is a path, a YAML or JSON string or a dict; got int"):
        load_flow(42)  # type: ignore[arg-type]


# Inputs refused before any run, with the server's codes ------------------------------------------


@pytest.mark.parametrize(
    ("call", "code", "status"),
    [
        ({"message": "x", "parameters": {"verbose": "yes"}}, "VALIDATION_ERROR", 422),
        ({}, "MISSING_MESSAGE", 400),
        ({"messages": [{"role": "system", "content": "x"}]}, "MESSAGES_ROLE_INVALID", 400),
        ({"message": "x", "tools": TOOLS}, "TOOLS_NOT_ENABLED", 400),
        ({"message": "x", "block_overrides": {"nope": {"prompt": "p"}}}, "INVALID_OVERRIDE", 400),
    ],
)
def test_inputs_a_server_refuses_raise_the_sdks_error(
    grade: LocalFlow, call: dict[str, Any], code: str, status: int
) -> None:
    with pytest.raises(noukai.NoukaiError) as caught:
        grade.invoke(**call)
    assert (caught.value.code, caught.value.status_code) == (code, status)
    assert grade.running == []


def test_bad_client_tools_are_refused(agent: LocalFlow) -> None:
    with pytest.raises(noukai.NoukaiError) as caught:
        agent.invoke("x", tools=[{"type": "function", "function": {"name": "bad name"}}])
    assert caught.value.code == "TOOL_NAME_INVALID"
    with pytest.raises(ValueError, match="pass message or messages, not both"):
        agent.invoke("x", messages=[{"role": "user", "content": "y"}])


def test_a_run_id_in_use_is_refused_and_a_closed_flow_runs_nothing() -> None:
    flow = load_flow(EXAMPLES / "echo.yaml")
    slow = flow.stream("a " * 5, run_id="same")
    with pytest.raises(ValueError, match="already running"):
        flow.stream("b", run_id="same")
    list(slow)
    flow.close()
    flow.close()  # twice is harmless
    with pytest.raises(RuntimeError, match="this flow is closed"):
        flow.invoke("x")


# Failed runs -------------------------------------------------------------------------------------

FAILING = {
    "slug": "failing",
    "steps": [{"id": "parse", "type": "python", "function": "json.parse", "args": {"text": "{not json"}}],
}


def test_a_failed_run_raises_from_invoke_and_ends_a_stream_with_run_failed() -> None:
    with load_flow(FAILING) as flow:
        with pytest.raises(noukai.NoukaiError) as caught:
            flow.invoke()
        events = list(flow.stream())
    assert caught.value.step_id == "parse" and caught.value.code is not None
    assert types(events)[-2:] == ["step_error", "run_failed"]
    failed = events[-1]
    assert isinstance(failed, noukai.RunFailed) and failed.code == caught.value.code


# Client tools --------------------------------------------------------------------------------------


def _answers(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"tool_call_id": call["id"], "content": "ok"} for call in calls]


def test_without_a_handler_invoke_returns_the_pending_calls(agent: LocalFlow) -> None:
    result = agent.invoke("x", tools=TOOLS)
    assert result.status == "tool_calls_required"
    assert [call["function"]["name"] for call in result.tool_calls] == ["lookup"]
    assert types(result.events)[-1] == "tool_calls_required"
    assert agent.running == []  # nobody answered: the run waits no longer


def test_a_paused_stream_resumes_with_event_resume(agent: LocalFlow) -> None:
    seen = []
    for event in agent.stream("x", tools=TOOLS):
        seen.append(event.type)
        if isinstance(event, noukai.ToolCallsRequired):
            event.resume(_answers(event.tool_calls))
    assert seen[-1] == "flow_completed" and "tool_calls_required" in seen


def test_results_that_miss_a_call_are_refused_as_the_server_refuses_them(agent: LocalFlow) -> None:
    with pytest.raises(noukai.NoukaiError) as caught:
        agent.invoke("x", tools=TOOLS, tool_handler=lambda calls: [{"tool_call_id": "other", "content": "?"}])
    assert caught.value.code == "TOOL_RESULTS_MISMATCH"
    with pytest.raises(TypeError, match="must return a list of dicts"):
        agent.invoke("x", tools=TOOLS, tool_handler=lambda calls: "nope")  # type: ignore[arg-type,return-value]
    assert agent.running == []


def test_handlers_follow_the_sdks_rules(agent: LocalFlow) -> None:
    async def async_handler(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _answers(calls)

    with pytest.raises(TypeError, match="sync tool_handler"):
        agent.invoke("x", tools=TOOLS, tool_handler=async_handler)  # type: ignore[arg-type]
    with pytest.raises(noukai.ToolCallLimitError):
        agent.invoke("x", tools=TOOLS, tool_handler=_answers, max_tool_rounds=0)
    assert agent.running == []


async def test_ainvoke_takes_an_async_handler(agent: LocalFlow) -> None:
    async def async_handler(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        await asyncio.sleep(0)
        return _answers(calls)

    result = await agent.ainvoke("x", tools=TOOLS, tool_handler=async_handler)
    assert result.status == "completed" and "lookup=ok" in str(result.result)
    with pytest.raises(TypeError, match="tool_handler must be callable"):
        agent.astream("x", tools=TOOLS, tool_handler="no")  # type: ignore[arg-type]


# The caller's functions and tools, and noukai.toml ----------------------------------------------------


def _double(value: int) -> int:
    return value * 2


def shout(text: str) -> str:
    """Shout a text."""
    return text.upper()


def test_the_callers_functions_and_tools_run_in_the_flow() -> None:
    document = {
        "slug": "mine",
        "steps": [
            {"id": "twice", "type": "python", "function": "my.double", "args": {"value": 21}},
            {"id": "agent", "type": "agent", "model": "builtin:test", "prompt": "go", "tools": ["shout"]},
        ],
    }
    with load_flow(document, functions={"my.double": _double}, tools=[shout]) as flow:
        result = flow.invoke()
    assert [e.output for e in result.events if isinstance(e, noukai.StepCompleted)][0] == 42
    assert "shout=" in str(result.result)
    with pytest.raises(ValueError, match="already registered"):
        load_flow(document, functions={"text.upper": _double})


def test_a_noukai_toml_brings_its_functions(tmp_path: Path) -> None:
    module = f"local_tools_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text("def triple(value: int) -> int:\n    return value * 3\n")
    config = tmp_path / "noukai.toml"
    config.write_text(f'[functions]\n"my.triple" = "{module}:triple"\n')
    document = {
        "slug": "t",
        "steps": [{"id": "t", "type": "python", "function": "my.triple", "args": {"value": 5}}],
    }
    with load_flow(document, config=config) as flow:
        assert flow.invoke().result == 15
    config.write_text("[nonsense]\nx = 1\n")
    with pytest.raises(noukai_server.config.ConfigError):
        load_flow(document, config=config)
