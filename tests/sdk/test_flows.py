"""Flows against fake servers: request bodies, versions, the tool loop and the step protocol."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

import noukai
from tests.sdk.conftest import fake_async_client, fake_client, json_response
from tests.sdk.fakes import TOOL_CALL, FakeStepServer

RESULT = {"status": "completed", "result": "ok", "executionId": "e1", "flowId": "f", "blockCount": 1}
PAUSED: dict[str, Any] = {
    "status": "tool_calls_required",
    "executionId": "11111111-aaaa-4aaa-8aaa-111111111111",
    "pausedAtStep": "s-1",
    "iterationsUsed": 1,
    "toolCallMessages": [{"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}],
    "toolCalls": [TOOL_CALL],
    "accumulatedOutputs": {},
    "flowId": "f",
    "blockCount": 1,
}


class Recorder:
    def __init__(self, *answers: dict[str, Any] | httpx2.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer if isinstance(answer, httpx2.Response) else json_response(200, answer)

    def body(self, n: int) -> Any:
        return json.loads(self.requests[n].content)

    def path(self, n: int) -> str:
        return self.requests[n].url.path


def test_execute_body_is_the_contracts() -> None:
    recorder = Recorder(RESULT)
    with fake_client(recorder) as client:
        result = client.flow("grade-3").execute(
            message="hi",
            parameters={"p": 1},
            attachments=[{"url": "https://x/y.png", "mime_type": "image/png"}],
            block_overrides={"s-1": {"temperature": 0.5}},
        )
    assert recorder.body(0) == {
        "message": "hi",
        "parameters": {"p": 1},
        "blockOverrides": {"s-1": {"temperature": 0.5}},
        "attachments": [{"url": "https://x/y.png", "mime_type": "image/png"}],
        "iterationsUsed": 0,
        "accumulatedOutputs": {},
        "trace": False,
    }
    assert isinstance(result, noukai.ExecuteResult)
    assert (result.result, result.output, result.execution_id, result.flow_id, result.block_count) == (
        "ok",
        "ok",
        "e1",
        "f",
        1,
    )
    assert result.session_id is None


def test_minimal_body_and_messages() -> None:
    recorder = Recorder(RESULT)
    with fake_client(recorder) as client:
        client.flow("g").execute()
        history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
        client.flow("g").execute(
            messages=history, tools=[{"type": "function"}], tool_choice="auto", trace=True
        )
        with pytest.raises(ValueError, match="not both"):
            client.flow("g").execute(message="x", messages=history)
        with pytest.raises(ValueError, match="roles"):
            client.flow("g").execute(messages=[{"role": "system", "content": "x"}])
    assert recorder.body(0) == {
        "parameters": {},
        "iterationsUsed": 0,
        "accumulatedOutputs": {},
        "trace": False,
    }
    second = recorder.body(1)
    assert second["messages"] == history and second["toolChoice"] == "auto" and second["trace"] is True
    assert len(recorder.requests) == 2


@pytest.mark.parametrize(
    ("version", "path"),
    [
        (None, "/api/v1/seq/acme/spell/g/execute"),
        ("production", "/api/v1/seq/acme/spell/g/execute"),
        ("draft", "/api/v1/seq/acme/spell/g/v0/execute"),
        (0, "/api/v1/seq/acme/spell/g/v0/execute"),
        (3, "/api/v1/seq/acme/spell/g/v3/execute"),
    ],
)
def test_version_paths(version: Any, path: str) -> None:
    recorder = Recorder(RESULT)
    with fake_client(recorder) as client:
        client.flow("g").execute(message="x", version=version)
    assert recorder.path(0) == path


@pytest.mark.parametrize(
    ("version", "error"), [(-1, ValueError), (True, TypeError), ("v2", TypeError), (1.0, TypeError)]
)
def test_bad_versions_send_nothing(version: Any, error: type[Exception]) -> None:
    recorder = Recorder(RESULT)
    with fake_client(recorder) as client:
        with pytest.raises(error):
            client.flow("g").execute(message="x", version=version)
        with pytest.raises(error):
            client.flow("g").events(message="x", version=version)
        with pytest.raises(error):
            client.flow("g").execute_async(message="x", version=version)
    assert recorder.requests == []


def test_path_segments_are_encoded() -> None:
    recorder = Recorder(RESULT)
    with fake_client(recorder, org="a b", project="p?") as client:
        client.flow("s#1").execute(message="x")
    assert recorder.requests[0].url.raw_path == b"/api/v1/seq/a%20b/p%3F/s%231/execute"


def test_a_late_failure_raises_like_a_quick_one() -> None:
    late = {
        "status": "failed",
        "result": None,
        "executionId": "e9",
        "flowId": "f",
        "blockCount": 1,
        "error": {"code": "PROVIDER_TIMEOUT", "message": "model too slow", "stepId": "s"},
    }
    with fake_client(Recorder(late)) as client, pytest.raises(noukai.FlowExecutionError) as info:
        client.flow("g").execute(message="x")
    assert (info.value.code, info.value.execution_id, info.value.step_id, info.value.status_code) == (
        "PROVIDER_TIMEOUT",
        "e9",
        "s",
        504,
    )
    with fake_client(Recorder({"status": "failed", "flowId": "f", "blockCount": 1})) as client:
        with pytest.raises(noukai.FlowExecutionError, match="failed"):
            client.flow("g").execute(message="x")
    with fake_client(Recorder(httpx2.Response(200, content=b"[1]"))) as client:
        with pytest.raises(noukai.FlowExecutionError, match="list"):
            client.flow("g").execute(message="x")


def test_tool_handler_auto_resumes() -> None:
    recorder = Recorder(PAUSED, RESULT)
    calls: list[Any] = []

    def my_tools(tool_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        calls.append(tool_calls)
        return [{"tool_call_id": c["id"], "output": "sunny"} for c in tool_calls]

    with fake_client(recorder) as client:
        result = client.flow("g").execute(
            message="weather?",
            tools=[{"type": "function", "function": {"name": "get_weather"}}],
            tool_choice="auto",
            tool_handler=my_tools,
            version=2,
        )
    assert isinstance(result, noukai.ExecuteResult) and calls == [[TOOL_CALL]]
    assert recorder.path(1) == "/api/v1/seq/acme/spell/g/v2/execute"
    assert recorder.body(1) == {
        "parameters": {},
        "tools": [{"type": "function", "function": {"name": "get_weather"}}],
        "toolChoice": "auto",
        "executionId": PAUSED["executionId"],
        "pausedAtStep": "s-1",
        "iterationsUsed": 1,
        "toolCallMessages": [*PAUSED["toolCallMessages"], {"tool_call_id": "call_1", "output": "sunny"}],
        "accumulatedOutputs": {},
        "trace": False,
    }
    assert "idempotency-key" not in recorder.requests[1].headers
    assert "x-session-id" not in recorder.requests[1].headers


def test_tool_rounds_are_bounded() -> None:
    recorder = Recorder(PAUSED)
    with fake_client(recorder) as client, pytest.raises(noukai.ToolCallLimitError) as info:
        client.flow("g").execute(message="x", tool_handler=lambda calls: [], max_tool_rounds=2)
    assert len(recorder.requests) == 3  # the first call and two resumes; nothing after the limit
    assert info.value.code == "TOOL_CALL_LIMIT_CLIENT" and info.value.execution_id == PAUSED["executionId"]


def test_sync_handlers_only_on_the_sync_client() -> None:
    async def async_tools(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return []

    class AsyncCallable:
        async def __call__(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return []

    recorder = Recorder(PAUSED)
    with fake_client(recorder) as client:
        for handler in (async_tools, AsyncCallable(), "not callable"):
            with pytest.raises(TypeError):
                client.flow("g").execute(message="x", tool_handler=handler)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                client.flow("g").events(message="x", tool_handler=handler)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="list of dicts"):
            client.flow("g").execute(message="x", tool_handler=lambda calls: "nope")  # type: ignore[arg-type,return-value]
    assert len(recorder.requests) == 1


def test_manual_resume_sync() -> None:
    recorder = Recorder(PAUSED, PAUSED, RESULT)
    with fake_client(recorder) as client:
        result = client.flow("g").execute(message="x", tools=[{"type": "function"}])
        rounds = 0
        while result.status == "tool_calls_required":
            assert isinstance(result, noukai.PausedResult)
            result = result.resume(tool_results=[{"role": "tool", "tool_call_id": "call_1", "content": "ok"}])
            rounds += 1
    assert rounds == 2 and isinstance(result, noukai.ExecuteResult)
    with pytest.raises(RuntimeError):
        noukai.PausedResult.model_validate(PAUSED).resume([])


@pytest.mark.anyio
async def test_async_execute_with_sync_and_async_handlers() -> None:
    recorder = Recorder(PAUSED, PAUSED, RESULT)

    async def async_tools(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"tool_call_id": "call_1", "output": "a"}]

    async with fake_async_client(recorder) as client:
        result = await client.flow("g").execute(message="x", tool_handler=async_tools)
        assert isinstance(result, noukai.ExecuteResult)
        recorder.answers = [PAUSED, RESULT]
        result = await client.flow("g").execute(
            message="x", tool_handler=lambda c: [{"tool_call_id": "call_1"}]
        )
        assert isinstance(result, noukai.ExecuteResult)
        recorder.answers = [PAUSED, PAUSED, RESULT]
        manual = await client.flow("g").execute(message="x", tools=[])
        while manual.status == "tool_calls_required":
            assert isinstance(manual, noukai.AsyncPausedResult)
            manual = await manual.resume(tool_results=[{"tool_call_id": "call_1", "output": "b"}])
        assert manual.result == "ok"
        recorder.answers = [PAUSED]
        with pytest.raises(noukai.ToolCallLimitError):
            await client.flow("g").execute(message="x", tool_handler=async_tools, max_tool_rounds=1)
        with pytest.raises(TypeError):
            await client.flow("g").execute(message="x", tool_handler=3)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        await noukai.AsyncPausedResult.model_validate(PAUSED).resume([])


# -- the step protocol ----------------------------------------------------------------------


def names(events: list[Any]) -> list[str]:
    return [e.type for e in events]


def test_events_drive_the_paced_protocol() -> None:
    fake = FakeStepServer(["a", "b", "c"])
    with fake_client(fake) as client:
        stream = client.flow("g").events(message="go", parameters={"p": 1}, version=2)
        events = list(stream)
    assert names(events) == [
        "run_started",
        *["step_started", "step_output", "step_completed", "step_paused"] * 2,
        "step_started",
        "step_output",
        "step_completed",
        "flow_completed",
    ]
    run_id = events[0].execution_id  # type: ignore[union-attr]
    assert stream.execution_id == run_id and stream.last_event_id == events[-1].seq
    assert [r.url.path for r in fake.requests] == ["/api/v1/seq/acme/spell/g/v2/step"] * 3
    assert fake.bodies[0] == {
        "stepIndex": 0,
        "accumulatedOutputs": {},
        "message": "go",
        "parameters": {"p": 1},
        "inputOverrides": {},
        "runRemaining": False,
        "iterationsUsed": 0,
        "trace": False,
    }
    assert fake.bodies[1] == {
        "executionId": run_id,
        "stepIndex": 1,
        "accumulatedOutputs": {"a": "a!"},
        "parameters": {},
        "inputOverrides": {},
        "runRemaining": False,
        "iterationsUsed": 0,
        "trace": False,
    }
    assert fake.bodies[2]["stepIndex"] == 2 and fake.bodies[2]["accumulatedOutputs"] == {"a": "a!", "b": "b!"}
    assert fake.requests[0].headers["accept"] == "text/event-stream"


def test_run_remaining_is_one_stream() -> None:
    fake = FakeStepServer(["a", "b"])
    with fake_client(fake) as client:
        events = list(client.flow("g").events(message="go", run_remaining=True))
    assert len(fake.requests) == 1 and fake.bodies[0]["runRemaining"] is True
    assert "step_paused" not in names(events) and names(events)[-1] == "flow_completed"


def test_steps_yields_step_completed_only_and_raises_on_failure() -> None:
    with fake_client(FakeStepServer(["a", "b"])) as client:
        steps = list(client.flow("g").steps(message="go"))
    assert [(s.step_id, s.output, s.duration_ms, s.cost_usd) for s in steps] == [
        ("a", "a!", 1, "0.000001"),
        ("b", "b!", 1, "0.000001"),
    ]
    assert steps[0].tokens is not None and steps[0].tokens.total == 2
    with fake_client(FakeStepServer(["a", "b"], fail_step="b")) as client:
        stream = client.flow("g").steps(message="go")
        assert next(stream).step_id == "a"
        with pytest.raises(noukai.FlowExecutionError) as info:
            next(stream)
        assert (info.value.code, info.value.step_id) == ("TEMPLATE_ERROR", "b")
        events = list(client.flow("g").events(message="go"))
        assert names(events)[-2:] == ["step_error", "run_failed"]


def test_breaking_out_stops_the_run_advancing() -> None:
    fake = FakeStepServer(["a", "b", "c"])
    with fake_client(fake) as client:
        for step in client.flow("g").steps(message="go"):
            break
        with client.flow("g").events(message="go") as stream:
            for event in stream:
                if event.type == "step_completed":
                    break
    assert len(fake.requests) == 2  # one /step per stream: nothing advanced after the break


def test_a_dropped_segment_is_finished_from_the_log() -> None:
    fake = FakeStepServer(["a", "b"], drop_after=3)
    with fake_client(fake) as client:
        events = list(client.flow("g").events(message="go"))
    seqs = [e.seq for e in events if e.seq is not None]
    assert len(seqs) == len(events)  # every event carries its seq
    assert seqs == sorted(set(seqs)) and seqs == list(range(1, len(seqs) + 1))
    assert names(events)[-1] == "flow_completed"
    resumed = [r for r in fake.requests if r.method == "GET"]
    assert resumed and resumed[0].headers["last-event-id"] == "3"


def test_tool_handler_in_streams() -> None:
    fake = FakeStepServer(["a", "b"], tool_step="b", tool_pauses=2)
    handled: list[Any] = []

    def tools(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        handled.append(calls)
        return [{"role": "tool", "tool_call_id": c["id"], "content": "sunny"} for c in calls]

    with fake_client(fake) as client:
        events = list(client.flow("g").events(message="go", tools=[{"type": "function"}], tool_handler=tools))
    assert "tool_calls_required" not in names(events) and names(events)[-1] == "flow_completed"
    assert len(handled) == 2
    resume = fake.bodies[2]
    assert "message" not in resume and resume["stepIndex"] == 1 and resume["iterationsUsed"] == 1
    assert resume["toolCallMessages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    assert resume["accumulatedOutputs"] == {"a": "a!", "earlier": "value"}
    with fake_client(FakeStepServer(["a"], tool_step="a", tool_pauses=5)) as client:
        with pytest.raises(noukai.ToolCallLimitError):
            list(client.flow("g").steps(message="go", tool_handler=tools, max_tool_rounds=2))


def test_manual_tool_resume_in_a_sync_stream() -> None:
    fake = FakeStepServer(["a"], tool_step="a")
    with fake_client(fake) as client:
        seen: list[str] = []
        for event in client.flow("g").events(message="go", tools=[{"type": "function"}]):
            seen.append(event.type)
            if isinstance(event, noukai.ToolCallsRequired):
                event.resume(tool_results=[{"tool_call_id": "call_1", "output": "sunny"}])
        assert seen[-1] == "flow_completed" and "tool_calls_required" in seen
        abandoned = [e.type for e in client.flow("g").events(message="go")]
        assert abandoned[-1] == "tool_calls_required"  # not resumed: the stream ends there
        with pytest.raises(noukai.FlowExecutionError, match="tool_handler"):
            list(client.flow("g").steps(message="go"))


@pytest.mark.anyio
async def test_async_streams() -> None:
    fake = FakeStepServer(["a", "b"], tool_step="b")

    async def tools(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"tool_call_id": "call_1", "output": "x"}]

    async with fake_async_client(fake) as client:
        events = [e async for e in client.flow("g").events(message="go", tool_handler=tools)]
        assert names(events)[-1] == "flow_completed"
        steps = [s async for s in client.flow("g").steps(message="go", tool_handler=lambda c: [])]
        assert [s.step_id for s in steps] == ["a", "b"]
        seen: list[str] = []
        async for event in client.flow("g").events(message="go"):
            seen.append(event.type)
            if event.type == "tool_calls_required":
                assert isinstance(event, noukai.ToolCallsRequired)
                await event.resume(tool_results=[{"tool_call_id": "call_1", "output": "y"}])
        assert seen[-1] == "flow_completed"
        before = len(fake.requests)
        async with client.flow("g").steps(message="go") as stream:
            async for _ in stream:
                break
        assert len(fake.requests) == before + 1
    failing = FakeStepServer(["a"], fail_step="a")
    async with fake_async_client(failing) as client:
        with pytest.raises(noukai.FlowExecutionError):
            async for _ in client.flow("g").steps(message="go"):
                pass
    dropped = FakeStepServer(["a", "b"], drop_after=2)
    async with fake_async_client(dropped) as client:
        events = [e async for e in client.flow("g").events(message="go")]
        assert [e.seq for e in events] == list(range(1, len(events) + 1))


def test_step_errors_before_streaming_raise() -> None:
    answer = json_response(400, {"detail": {"code": "INVALID_VERSION", "message": "no draft stepping"}})
    with fake_client(Recorder(answer)) as client, pytest.raises(noukai.FlowExecutionError) as info:
        list(client.flow("g").events(message="go", version="draft"))
    assert info.value.code == "INVALID_VERSION"
