"""Every code sample of the published SDK's README (seed 001) and its step-iteration page (seed 000),
run against a real `noukai serve`. The only adaptation: the flow is `dev/main/...` on the test
server (reached through `NOUKAI_BASE_URL` or `base_url=`) instead of `acme/spelling/grade-3`.

Samples that need an endpoint the server does not serve yet skip at run time, naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from fastapi import FastAPI, Request
from starlette.testclient import TestClient

import noukai
from noukai import AsyncNoukai, FlowExecutionError, Noukai
from tests.conftest import ServerProcess
from tests.sdk.conftest import new_slug, put_slow_flow

MESSAGE = "The cat sat on the mat."


# -- Quick start ----------------------------------------------------------------------------


def test_quick_start_sync(sdk_env: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    with Noukai() as client:  # reads NOUKAI_API_KEY
        result = client.flow("dev/main/echo").execute(
            message="The cat sat on the mat.",
        )
        print(result.result)
    assert capsys.readouterr().out == "The cat sat on the mat.\n"


def test_quick_start_async(sdk_env: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> None:
        async with AsyncNoukai() as client:
            result = await client.flow("dev/main/echo").execute(
                message="The cat sat on the mat.",
            )
            print(result.result)

    asyncio.run(main())
    assert capsys.readouterr().out == "The cat sat on the mat.\n"


# -- Authentication and configuration -------------------------------------------------------


def test_authentication(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    client = Noukai(api_key=server.dev_key, base_url=server.base_url)
    assert client.flow("dev/main/echo").execute(message="hi").result == "hi"
    client.close()
    with pytest.raises(noukai.AuthenticationError):
        Noukai(base_url=server.base_url)  # no key anywhere: nothing is sent
    with Noukai(api_key="nk_not_a_real_key", base_url=server.api_url) as stranger:
        with pytest.raises(noukai.AuthenticationError) as info:
            stranger.flow("dev/main/echo").execute(message="hi")
    assert info.value.status_code == 401 and info.value.code == "UNAUTHENTICATED"
    assert info.value.www_authenticate and info.value.request_id


def test_client_configuration(server: ServerProcess) -> None:
    events: list[dict[str, Any]] = []

    def my_logger(event: dict[str, Any]) -> None:
        events.append(event)

    client = Noukai(
        api_key=server.dev_key,  # overrides NOUKAI_API_KEY
        base_url=server.base_url,  # instead of env="dev" (localhost:8080)
        org="dev",  # default org for short-form slugs
        project="main",  # default project for short-form slugs
        timeout=300.0,  # default per-request timeout (seconds)
        max_retries=1,  # retries on retryable 5xx
        log_handler=my_logger,  # structured logging hook
        log_payloads=False,  # include request/response bodies in logs
    )
    with client:
        assert client.flow("echo").execute(message="configured").result == "configured"
    assert [e["phase"] for e in events] == ["request", "response"]
    assert events[1]["status_code"] == 200 and events[1]["request_id"]


def test_default_org_and_project(server: ServerProcess) -> None:
    client = Noukai(api_key=server.dev_key, base_url=server.base_url, org="dev", project="main")
    forms = [
        client.flow("echo"),  # → dev/main/echo
        client.flow("dev/main/echo"),  # fully qualified — wins
        client.flow(org="dev", project="main", slug="echo"),  # explicit
    ]
    assert {f.execute(message="x").flow_id for f in forms}.__len__() == 1
    with pytest.raises(ValueError):
        Noukai(api_key=server.dev_key, base_url=server.base_url, org="dev")
    client.close()


# -- Executing flows ------------------------------------------------------------------------


def test_execute_with_every_argument(client: Noukai) -> None:
    result = client.flow("dev/main/echo").execute(
        message="Input text",
        parameters={"difficulty": "hard"},  # extra initial inputs
        block_overrides={"say": {"temperature": 0.5}},
        attachments=[{"url": "https://example.com/a.png", "mime_type": "image/png"}],
        trace=False,  # capture full I/O for trace
        version="draft",  # or an int published version
        timeout=60.0,  # override client default
    )
    if result.status == "tool_calls_required":
        pytest.fail("echo never pauses for tools")
    else:
        assert isinstance(result, noukai.ExecuteResult)
        assert result.result == "Input text"
        assert uuid.UUID(str(result.execution_id)) and result.block_count == 1


@pytest.mark.anyio
async def test_async_execute(aclient: AsyncNoukai) -> None:
    result = await aclient.flow("greet").execute(parameters={"name": "Ada", "count": 2})
    assert result.result == {"greeting": "Hello, Ada!", "shout": "HELLO, ADA!", "count": 2}


# -- Streaming steps and events -------------------------------------------------------------


def test_steps(client: Noukai) -> None:
    flow = client.flow("dev/main/three-steps")
    seen = []
    for step in flow.steps(message="go"):
        print(step.name, step.output, step.duration_ms, step.tokens)
        seen.append(step)
    assert [s.output for s in seen] == ["one: go", "two: one: go", "three: two: one: go"]
    assert all(isinstance(s, noukai.StepCompleted) for s in seen)
    for step in seen:  # the fields seed 000 lists
        assert step.step_id and isinstance(step.duration_ms, int) and isinstance(step.cost_usd, str)
        assert step.tokens is not None and step.tokens.total > 0


@pytest.mark.anyio
async def test_steps_async(aclient: AsyncNoukai) -> None:
    flow = aclient.flow("dev/main/three-steps")
    outputs = []
    async for step in flow.steps(message="go"):
        outputs.append(step.output)
    assert outputs[-1] == "three: two: one: go"


def test_events_match(client: Noukai) -> None:
    flow = client.flow("dev/main/three-steps")
    kinds: list[str] = []
    deltas: list[str] = []
    for event in flow.events(message="alpha beta"):
        match event.type:
            case "run_started":  # RunStarted
                assert isinstance(event, noukai.RunStarted) and event.execution_id
            case "step_started":  # StepStarted
                assert isinstance(event, noukai.StepStarted)
            case "step_input":  # StepInput
                assert isinstance(event, noukai.StepInput)
            case "step_output":  # StepOutput
                assert isinstance(event, noukai.StepOutput)
                deltas.append(event.text)
            case "step_completed":  # StepCompleted
                assert isinstance(event, noukai.StepCompleted)
            case "step_error":  # StepFailed
                pytest.fail("no step fails here")
            case "step_paused":  # StepPaused
                assert isinstance(event, noukai.StepPaused)
            case "tool_calls_required":  # ToolCallsRequired (has .resume())
                pytest.fail("no tools here")
            case "flow_completed":  # FlowCompleted
                assert isinstance(event, noukai.FlowCompleted)
                assert event.result == "three: two: one: alpha beta"
        kinds.append(event.type)
    assert kinds[0] == "run_started" and kinds[-1] == "flow_completed"
    assert kinds.count("step_paused") == 2 and kinds.count("step_completed") == 3
    assert "".join(deltas) == "one: alpha beta" + "two: one: alpha beta" + "three: two: one: alpha beta"


def test_events_isinstance_and_failures(client: Noukai) -> None:
    """Seed 000: branch on the event class; the iterator ends after a failed step."""
    events = list(client.flow("broken").events(parameters={"config": {}}))
    failed = [e for e in events if isinstance(e, noukai.StepFailed)]
    assert len(failed) == 1 and failed[0].step_id == "boom" and failed[0].code == "TEMPLATE_ERROR"
    assert isinstance(events[-1], noukai.RunFailed) and not any(
        isinstance(e, noukai.FlowCompleted) for e in events
    )
    with pytest.raises(FlowExecutionError) as info:
        list(client.flow("broken").steps(parameters={"config": {}}))
    assert info.value.code == "TEMPLATE_ERROR" and info.value.step_id == "boom"


def test_run_remaining(client: Noukai) -> None:
    events = list(client.flow("dev/main/three-steps").events(message="x", run_remaining=True))
    names = [e.type for e in events]
    assert "step_paused" not in names and names[0] == "run_started" and names[-1] == "flow_completed"
    assert names.count("step_completed") == 3


@pytest.mark.anyio
async def test_events_async_honour_break(aclient: AsyncNoukai) -> None:
    flow = aclient.flow("three-steps")
    async for event in flow.events(message="x"):
        if event.type == "step_completed":
            break
    async with flow.events(message="y") as stream:
        async for event in stream:
            if isinstance(event, noukai.RunStarted):
                run_id = event.execution_id
                break
    await asyncio.sleep(0.3)
    assert run_id is not None
    state = await aclient.runs.retrieve(run_id)
    assert state.status == "waiting" and state.cursor == 1  # paced: nothing ran after the break


def test_skipped_steps_are_reported(client: Noukai) -> None:
    steps = list(client.flow("maybe").steps(message="hi", parameters={"polish": False}))
    assert [(s.step_id, s.skipped) for s in steps] == [("draft", False), ("polish", True)]


def test_foreach_progress(client: Noukai) -> None:
    events = list(client.flow("shout-all").events(parameters={"items": ["a", "b"]}, run_remaining=True))
    progress = [e for e in events if isinstance(e, noukai.StepProgress)]
    assert [(p.loop_index, p.output) for p in progress] == [(0, "A"), (1, "B")]


# -- Async (queue-backed) jobs --------------------------------------------------------------


def test_execute_async_jobs(client: Noukai) -> None:
    job = client.flow("dev/main/echo").execute_async(
        message="Long input that takes minutes...",
        trace=True,
    )
    print(job.execution_id)  # persist this if you want to resume later
    status = job.wait(timeout=600.0, poll_interval=0.2)
    assert status.result == "Long input that takes minutes..."
    snapshot = job.poll()
    assert snapshot.status == "completed"


@pytest.mark.anyio
async def test_execute_async_jobs_async(aclient: AsyncNoukai) -> None:
    job = await aclient.flow("dev/main/echo").execute_async(message="...")
    status = await job.wait(timeout=600.0, poll_interval=0.2)
    assert status.status == "completed"


# -- Tool calls -----------------------------------------------------------------------------


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def agent_flow(server: ServerProcess) -> str:
    slug = new_slug("agent")
    document = {
        "slug": slug,
        "steps": [{"id": "ask", "type": "agent", "model": "builtin:test", "prompt": "{{ message }}"}],
    }
    server.put_flow(server.dev_key, "dev", "main", document)
    return slug


def test_tool_handler_auto_resume(server: ServerProcess, client: Noukai) -> None:
    flow = client.flow(agent_flow(server))
    calls: list[dict[str, Any]] = []

    def my_tools(tool_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        calls.extend(tool_calls)
        return [{"tool_call_id": call["id"], "output": "sunny"} for call in tool_calls]

    result = flow.execute(
        message="What's the weather in Paris?",
        tools=[WEATHER_TOOL],
        tool_handler=my_tools,
        max_tool_rounds=10,
    )
    assert calls, "the run never paused for the client tool"
    assert isinstance(result, noukai.ExecuteResult) and "sunny" in str(result.result)


@pytest.mark.anyio
async def test_manual_resume(server: ServerProcess, aclient: AsyncNoukai) -> None:
    flow = aclient.flow(agent_flow(server))
    result = await flow.execute(message="weather?", tools=[WEATHER_TOOL])
    assert result.status == "tool_calls_required"
    while result.status == "tool_calls_required":
        assert isinstance(result, noukai.AsyncPausedResult)
        tool_results = [{"tool_call_id": c["id"], "output": "sunny"} for c in result.tool_calls]
        result = await result.resume(tool_results=tool_results)
    print(result.result)
    assert "sunny" in str(result.result)


# -- Replay and session grouping ------------------------------------------------------------


def test_capture_quick_start(server: ServerProcess) -> None:
    noukai_client = AsyncNoukai(api_key=server.dev_key, base_url=server.base_url, org="dev", project="main")

    @noukai.trace
    async def handle(message: str) -> dict[str, Any]:
        result = await noukai_client.flow("echo").execute(message=message)
        return {"output": result.result, "session_id": result.session_id}

    async def main() -> dict[str, Any]:
        async with noukai_client:  # closed on the loop its connections belong to
            return await handle("The cat sat on the mat.")

    answer = asyncio.run(main())
    assert answer["output"] == "The cat sat on the mat." and uuid.UUID(answer["session_id"])


def closing_on_shutdown(client: AsyncNoukai) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A FastAPI lifespan that closes the client on the app's own event loop when it shuts down."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return lifespan


def test_fastapi_adapter_recipe(server: ServerProcess) -> None:
    from noukai.adapters.fastapi import NoukaiTraceMiddleware

    noukai_client = AsyncNoukai(api_key=server.dev_key, base_url=server.base_url, org="dev", project="main")
    sent: list[dict[str, Any]] = []
    noukai_client._config = type(noukai_client._config)(
        **{
            **{f: getattr(noukai_client._config, f) for f in noukai_client._config.__slots__},
            "log_handler": sent.append,
        }
    )
    noukai_client._transport.config = noukai_client._config
    app = FastAPI(lifespan=closing_on_shutdown(noukai_client))
    app.add_middleware(NoukaiTraceMiddleware, client=noukai_client)

    @app.post("/grade")
    @noukai.trace
    async def grade(req: Request) -> dict[str, Any]:
        body = await req.json()
        result = await noukai_client.flow("echo").execute(message=body["text"])
        return {"output": result.result, "session": result.session_id}

    with TestClient(app) as http:
        response = http.post("/grade", json={"text": "anything"})
        # A stray replay header without NOUKAI_REPLAY_ENABLED is ignored (production safety).
        stray = http.post("/grade", json={"text": "again"}, headers={"X-Noukai-Replay": str(uuid.uuid4())})
    assert response.json() == {"output": "anything", "session": response.headers["X-Noukai-Session"]}
    assert stray.json()["output"] == "again"


@pytest.mark.skipif(
    importlib.util.find_spec("flask") is None, reason="Flask is not installed (the [flask] extra)"
)
def test_flask_adapter_recipe(server: ServerProcess) -> None:
    from flask import Flask

    from noukai.adapters.flask import init_noukai_trace

    noukai_client = AsyncNoukai(api_key=server.dev_key, base_url=server.base_url, org="dev", project="main")
    app = Flask(__name__)
    init_noukai_trace(app, client=noukai_client)

    @app.get("/ping")
    def ping() -> str:
        return "pong"

    response = app.test_client().get("/ping")
    assert uuid.UUID(response.headers["X-Noukai-Session"])


def capture_session(server: ServerProcess) -> tuple[str, str, Any]:
    """Run a captured request through `@trace`; returns the flow, the session id and the result."""
    slug = new_slug("captured")
    server.put_flow(
        server.dev_key,
        "dev",
        "main",
        {
            "slug": slug,
            "trace_capture_mode": "full",
            "steps": [{"id": "say", "type": "llm", "model": "builtin:echo", "prompt": "{{ message }}"}],
        },
    )
    sync_client = Noukai(api_key=server.dev_key, base_url=server.base_url, org="dev", project="main")

    @noukai.trace
    def handle() -> noukai.ExecuteResult | noukai.PausedResult:
        return sync_client.flow(slug).execute(message="recorded answer")

    with sync_client:
        result = handle()
    return slug, str(result.session_id), result.result


def test_replay_with_trace_scope(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    slug, session_id, recorded = capture_session(server)
    monkeypatch.setenv("NOUKAI_REPLAY_ENABLED", "true")
    noukai_client = AsyncNoukai(api_key=server.dev_key, base_url=server.base_url, org="dev", project="main")

    async def replay() -> Any:
        async with noukai_client:  # closed on the loop its connections belong to
            async with noukai.trace_scope(
                transport=noukai_client._transport,
                replay_session_id=session_id,
            ):
                return (await noukai_client.flow(slug).execute(message="any input")).result

    replayed = asyncio.run(replay())
    assert replayed == recorded


def test_replay_through_the_fastapi_adapter(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    from noukai.adapters.fastapi import NoukaiTraceMiddleware

    slug, session_id, recorded = capture_session(server)
    monkeypatch.setenv("NOUKAI_REPLAY_ENABLED", "true")
    noukai_client = AsyncNoukai(api_key=server.dev_key, base_url=server.base_url, org="dev", project="main")
    app = FastAPI(lifespan=closing_on_shutdown(noukai_client))
    app.add_middleware(NoukaiTraceMiddleware, client=noukai_client)

    @app.post("/grade")
    @noukai.trace
    async def grade(req: Request) -> dict[str, Any]:
        result = await noukai_client.flow(slug).execute(message="not matched")
        return {"output": result.result}

    with TestClient(app) as http:
        response = http.post("/grade", json={}, headers={"X-Noukai-Replay": session_id})
    assert response.status_code == 200, response.text
    assert response.json() == {"output": recorded} and response.headers["X-Noukai-Session"] == session_id


def test_replay_errors_from_the_server(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOUKAI_REPLAY_ENABLED", "true")
    with Noukai(api_key=server.dev_key, base_url=server.base_url) as client:
        with pytest.raises(noukai.ReplaySessionNotFoundError) as info:
            with noukai.trace_scope_sync(client, replay_session_id=str(uuid.uuid4())):
                pass
    assert info.value.code == "SESSION_NOT_FOUND"


def test_adapter_scope_with_an_async_client_in_sync_code(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flask with the README's AsyncNoukai: the session is fetched with a one-off sync transport
    built from the async client's configuration."""
    monkeypatch.setenv("NOUKAI_REPLAY_ENABLED", "true")
    async_client = AsyncNoukai(api_key=server.dev_key, base_url=server.base_url)
    with pytest.raises(noukai.ReplaySessionNotFoundError) as info:
        noukai._replay.request_scope_sync(async_client, str(uuid.uuid4()))
    assert info.value.request_id  # the request reached the test server with the client's key


# -- Flow versions --------------------------------------------------------------------------


def test_flow_versions(server: ServerProcess, client: Noukai) -> None:
    slug = new_slug("versioned")

    def document(text: str) -> dict[str, Any]:
        return {"slug": slug, "steps": [{"id": "say", "type": "template", "template": text}]}

    server.put_flow(server.dev_key, "dev", "main", document("published one"), publish=True)
    server.put_flow(server.dev_key, "dev", "main", document("the draft"))
    flow = client.flow(slug)
    assert flow.execute(version="draft").result == "the draft"
    assert flow.execute(version=1).result == "published one"
    assert flow.execute(version="production").result == "published one"
    assert flow.execute().result == "published one"
    assert [s.output for s in flow.steps(version=1)] == ["published one"]
    with pytest.raises(noukai.FlowNotFoundError) as info:
        flow.execute(version=7)
    assert info.value.code == "FLOW_NOT_FOUND"


# -- Run traces -----------------------------------------------------------------------------


def test_run_traces(client: Noukai) -> None:
    flow = client.flow("three-steps")
    result = flow.execute(message="go")
    assert isinstance(result, noukai.ExecuteResult) and result.execution_id
    run = flow.run(result.execution_id)
    events = [event for event in run.live_trace()]  # stored events, then the server closes
    print(events)
    assert events[0].type == "run_started" and events[-1].type == "flow_completed"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    trace = run.trace()
    print(trace.summary, trace.steps)
    assert trace.flow_run.id == result.execution_id
    step_trace = run.step_trace("one", attempt="latest")
    all_attempts = run.step_trace("one", attempt="all")
    assert step_trace.step_id == "one" and all_attempts.attempts


@pytest.mark.anyio
async def test_run_traces_async(aclient: AsyncNoukai) -> None:
    flow = aclient.flow("echo")
    result = await flow.execute(message="live")
    run = flow.run(str(result.execution_id))
    names = [event.type async for event in run.live_trace()]
    assert names[0] == "run_started" and names[-1] == "flow_completed"
    await run.trace()
    assert (await run.step_trace("say")).step_id == "say"


# -- Errors ---------------------------------------------------------------------------------


def test_errors(server: ServerProcess, client: Noukai) -> None:
    flow = client.flow("broken")
    try:
        flow.execute(message="...", parameters={"config": {}})
    except FlowExecutionError as err:
        if err.code == "BYOK_KEY_REJECTED":
            pytest.fail("not this one")
        assert err.code == "TEMPLATE_ERROR" and err.status_code == 422  # noqa: PT017 - the README's shape
        assert err.execution_id and err.step_id == "boom" and err.request_id  # noqa: PT017
        assert err.response_body["detail"]["code"] == "TEMPLATE_ERROR"  # noqa: PT017
    else:
        pytest.fail("the broken flow must fail")
    with pytest.raises(noukai.FlowNotFoundError) as missing:
        client.flow("no-such-flow").execute(message="x")
    assert missing.value.code == "FLOW_NOT_FOUND"
    with pytest.raises(FlowExecutionError) as no_message:
        client.flow("echo").execute()
    assert no_message.value.code == "MISSING_MESSAGE" and no_message.value.status_code == 400
    with Noukai(api_key=server.create_key("other-org"), base_url=server.base_url) as outsider:
        with pytest.raises(noukai.PermissionDeniedError):
            outsider.flow("dev/main/echo").execute(message="x")
    with pytest.raises(noukai.FlowNotFoundError):
        client.runs.retrieve(str(uuid.uuid4()))
    with Noukai(api_key=server.dev_key, base_url="http://127.0.0.1:9", max_retries=0) as nowhere:
        with pytest.raises(noukai.APIConnectionError):
            nowhere.flow("dev/main/echo").execute(message="x")


def test_timeouts(server: ServerProcess, client: Noukai) -> None:
    slug = put_slow_flow(server, words=40, delay_ms=50)
    with pytest.raises(noukai.APITimeoutError):
        client.flow(slug).execute(message="x", timeout=0.5)


# -- Logging and resource management --------------------------------------------------------


def test_logging(server: ServerProcess) -> None:
    logged: list[dict[str, Any]] = []

    def log_handler(event: dict[str, Any]) -> None:
        logged.append(event)

    client = Noukai(
        api_key=server.dev_key, base_url=server.base_url, log_handler=log_handler, log_payloads=True
    )
    client.flow("dev/main/echo").execute(message="logged")
    client.close()
    request, response = logged
    assert request["phase"] == "request" and request["method"] == "POST" and request["attempt"] == 1
    assert request["path"] == "/seq/dev/main/echo/execute" and request["request_body"]["message"] == "logged"
    assert response["status_code"] == 200 and response["request_id"]
    assert response["response_body"]["result"] == "logged"


def test_resource_management(server: ServerProcess) -> None:
    with Noukai(api_key=server.dev_key, base_url=server.base_url) as client:
        assert client.flow("dev/main/echo").execute(message="x").result == "x"
        assert not client._transport.http.is_closed
    assert client._transport.http.is_closed  # leaving the block closed the connection pool
    with pytest.raises(RuntimeError, match="closed"):
        client.flow("dev/main/echo").execute(message="x")  # a closed client sends nothing

    async def main() -> None:
        async with AsyncNoukai(api_key=server.dev_key, base_url=server.base_url) as aclient:
            assert (await aclient.flow("dev/main/echo").execute(message="x")).result == "x"
        assert aclient._transport.http.is_closed
        manual_async = AsyncNoukai(api_key=server.dev_key, base_url=server.base_url)
        await manual_async.aclose()
        await manual_async.aclose()  # safe to call twice
        assert manual_async._transport.http.is_closed

    asyncio.run(main())
    client = Noukai(api_key=server.dev_key, base_url=server.base_url)
    try:
        assert client.flow("dev/main/echo").execute(message="x").result == "x"
    finally:
        client.close()
    client.close()  # safe to call twice
    assert client._transport.http.is_closed
