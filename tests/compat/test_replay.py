"""Record and replay with the published SDK's own adapters (contract 6.3-6.5): the FastAPI
middleware, the scope context managers outside HTTP, and the decorator. A replay makes no flow
calls and answers exactly what the live calls answered, errors included."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import pytest

from tests.compat.conftest import noukai_sdk, sdk_at_least
from tests.conftest import ServerProcess

# 0.2.0 calls the scopes trace_scope/trace_scope_sync and the decorator `trace`; 0.5 renamed them
# to replay_scope/replay_scope_sync and `replay` (contract 7). The wire is the same.
scope_sync = getattr(noukai_sdk, "replay_scope_sync", None) or noukai_sdk.trace_scope_sync
scope_async = getattr(noukai_sdk, "replay_scope", None) or noukai_sdk.trace_scope
_sdk_decorator = noukai_sdk.replay if sdk_at_least("0.5.0") else noukai_sdk.trace

_F = TypeVar("_F", bound=Callable[..., Any])


def decorator(fn: _F) -> _F:
    """The SDK's decorator, typed: it wraps a function and keeps its signature."""
    return cast(_F, _sdk_decorator(fn))


@pytest.fixture(autouse=True)
def _replay_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOUKAI_REPLAY_ENABLED", "true")


def outputs(events: list[Any]) -> list[Any]:
    return [e.output for e in events if isinstance(e, noukai_sdk.StepCompleted)]


def test_scope_outside_http_replays_every_kind_of_call(client: Any) -> None:
    with scope_sync() as scope:
        first = client.flow("three-steps").execute(message="one")
        stepped = list(client.flow("three-steps").steps(message="two"))
        skipping = client.flow("maybe").execute(message="three", parameters={"polish": False})
    assert scope.session_id and outputs(stepped)[-1] == "three: two: one: two"

    with scope_sync(replay_session_id=scope.session_id, transport=client._transport):
        # Inputs are not compared on replay: the recording answers, whatever is asked.
        replayed = client.flow("three-steps").execute(message="ignored")
        restepped = list(client.flow("three-steps").steps(message="ignored"))
        reskipping = client.flow("maybe").execute(message="ignored")
    assert (replayed.result, replayed.execution_id) == (first.result, first.execution_id)
    assert outputs(restepped) == outputs(stepped)
    assert reskipping.result == skipping.result == "three"


def test_a_failed_run_replays_as_the_same_error(client: Any) -> None:
    with scope_sync() as scope, pytest.raises(noukai_sdk.FlowExecutionError) as live:
        client.flow("broken").execute(parameters={"config": {}})
    with (
        scope_sync(replay_session_id=scope.session_id, transport=client._transport),
        pytest.raises(noukai_sdk.FlowExecutionError) as replayed,
    ):
        client.flow("broken").execute(parameters={"config": {}})
    assert live.value.code == replayed.value.code == "TEMPLATE_ERROR"
    assert replayed.value.message == live.value.message


def test_a_retried_run_replays_its_final_answer(client: Any, server: ServerProcess) -> None:
    slug = f"flaky-{uuid.uuid4().hex[:6]}"
    server.put_flow(
        server.dev_key,
        "dev",
        "main",
        {
            "slug": slug,
            "retry": {"initial_backoff_seconds": 0.01},
            "steps": [{"id": "ask", "type": "llm", "model": "builtin:flaky", "prompt": "{{ message }}"}],
        },
    )
    with scope_sync() as scope:
        live = client.flow(slug).execute(message="retried")
    with scope_sync(replay_session_id=scope.session_id, transport=client._transport):
        assert client.flow(slug).execute(message="x").result == live.result == "retried"


@pytest.mark.anyio
async def test_async_scope(async_client_factory: Any) -> None:
    async with async_client_factory() as sdk:
        async with scope_async() as scope:
            live = await sdk.flow("greet").execute(parameters={"name": "Ada", "count": 2})
        async with scope_async(replay_session_id=scope.session_id, transport=sdk._transport):
            replayed = await sdk.flow("greet").execute(parameters={})
    assert replayed.result == live.result == {"greeting": "Hello, Ada!", "shout": "HELLO, ADA!", "count": 2}


def test_session_errors(client: Any, server: ServerProcess) -> None:
    with pytest.raises(noukai_sdk.ReplaySessionNotFoundError):
        with scope_sync(replay_session_id=str(uuid.uuid4()), transport=client._transport):
            pass
    with scope_sync() as scope:
        client.flow("echo").execute(message="mine")
    other_key = server.create_key("compat-other")
    with noukai_sdk.Noukai(api_key=other_key, env="dev", org="compat-other", project="main") as other:
        with pytest.raises(noukai_sdk.ReplayForbiddenError):
            with scope_sync(replay_session_id=scope.session_id, transport=other._transport):
                pass
    slug = f"meta-{uuid.uuid4().hex[:6]}"
    server.put_flow(
        server.dev_key,
        "dev",
        "main",
        {
            "slug": slug,
            "trace_capture_mode": "metadata_only",
            "steps": [{"id": "t", "type": "template", "template": "x"}],
        },
    )
    with scope_sync() as scope:
        client.flow(slug).execute()
    with pytest.raises(noukai_sdk.ReplayNoSnapshotsError):
        with scope_sync(replay_session_id=scope.session_id, transport=client._transport):
            pass


def test_an_expired_session(make_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import noukai_sdk._client

    short = make_server({"NOUKAI_SESSION_RETENTION_SECONDS": "1"})
    monkeypatch.setattr(noukai_sdk._client, "DEV_BASE_URL", short.api_url)
    with noukai_sdk.Noukai(api_key=short.dev_key, env="dev", org="dev", project="main") as sdk:
        with scope_sync() as scope:
            sdk.flow("echo").execute(message="brief")
        time.sleep(1.2)
        with pytest.raises(noukai_sdk.ReplaySessionExpiredError):
            with scope_sync(replay_session_id=scope.session_id, transport=sdk._transport):
                pass


# -- the FastAPI adapter -------------------------------------------------------------------------


@pytest.fixture
def app_client(server: ServerProcess) -> Iterator[Any]:
    """A user's FastAPI app with the SDK's middleware, served in-process by Starlette's TestClient
    (one event loop for the whole test, so the SDK's async connection pool stays on it)."""
    from fastapi import FastAPI
    from noukai_sdk.adapters.fastapi import NoukaiTraceMiddleware
    from starlette.testclient import TestClient

    sdk = noukai_sdk.AsyncNoukai(api_key=server.dev_key, env="dev", org="dev", project="main")
    app = FastAPI()
    app.add_middleware(NoukaiTraceMiddleware, client=sdk)

    async def run_flow(body: dict[str, Any]) -> dict[str, Any]:
        try:
            result = await sdk.flow(body["slug"]).execute(
                message=body.get("message"), parameters=body.get("parameters") or {}
            )
        except noukai_sdk.FlowExecutionError as exc:
            return {"error": exc.code, "message": exc.message}
        return {"result": result.result, "executionId": result.execution_id}

    @app.post("/run")
    async def run(body: dict[str, Any]) -> dict[str, Any]:
        return await run_flow(body)

    @app.post("/stacked")
    @decorator
    async def stacked(body: dict[str, Any]) -> dict[str, Any]:
        return await run_flow(body)

    with TestClient(app) as http:
        yield http


def test_middleware_capture_then_replay(app_client: Any) -> None:
    live = app_client.post("/run", json={"slug": "three-steps", "message": "via app"})
    assert live.status_code == 200 and live.json()["result"] == "three: two: one: via app"
    session_id = live.headers["x-noukai-session"]
    assert uuid.UUID(session_id)
    replayed = app_client.post(
        "/run",
        json={"slug": "three-steps", "message": "something else"},
        headers={"X-Noukai-Replay": session_id},
    )
    assert replayed.status_code == 200
    assert replayed.json() == live.json()


def test_middleware_replays_a_recorded_failure(app_client: Any) -> None:
    live = app_client.post("/run", json={"slug": "broken", "parameters": {"config": {}}})
    assert live.json()["error"] == "TEMPLATE_ERROR"
    replayed = app_client.post(
        "/run", json={"slug": "broken"}, headers={"X-Noukai-Replay": live.headers["x-noukai-session"]}
    )
    assert replayed.json() == live.json()


def test_middleware_answers_session_errors(app_client: Any) -> None:
    response = app_client.post(
        "/run", json={"slug": "echo", "message": "x"}, headers={"X-Noukai-Replay": str(uuid.uuid4())}
    )
    assert response.status_code == 404 and response.json()["error"] == "replay_session_not_found"


def test_the_readme_recipe_of_middleware_and_decorator_cannot_replay(app_client: Any) -> None:
    """Contract 6.5: the decorator opens a nested scope with its own id, so the id the middleware
    reports is not the one the calls were recorded under. The server can only say it has no such
    session; the working forms are the middleware alone and a scope or decorator alone."""
    live = app_client.post("/stacked", json={"slug": "echo", "message": "stacked"})
    assert live.json()["result"] == "stacked"
    response = app_client.post(
        "/stacked",
        json={"slug": "echo", "message": "stacked"},
        headers={"X-Noukai-Replay": live.headers["x-noukai-session"]},
    )
    assert response.status_code == 404 and response.json()["error"] == "replay_session_not_found"


def test_the_decorator_alone_records_under_its_own_session(client: Any) -> None:
    @decorator
    def work() -> tuple[Any, str | None]:
        return client.flow("echo").execute(message="decorated"), noukai_sdk.current_session_id()

    live, session_id = work()
    assert session_id is not None
    with scope_sync(replay_session_id=session_id, transport=client._transport):
        assert client.flow("echo").execute(message="x").result == live.result == "decorated"


# -- the Flask adapter ---------------------------------------------------------------------------


@pytest.fixture
def flask_client(server: ServerProcess) -> Iterator[Any]:
    """A user's Flask app with the SDK's `init_noukai_trace`, driven by Flask's test client; the
    SDK inside it calls the real server."""
    from flask import Flask, jsonify, request
    from noukai_sdk.adapters.flask import init_noukai_trace

    sdk = noukai_sdk.Noukai(api_key=server.dev_key, env="dev", org="dev", project="main")
    app = Flask(__name__)
    init_noukai_trace(app, client=sdk)

    @app.post("/grade")
    def grade() -> Any:
        body = request.get_json()
        try:
            result = sdk.flow(body["slug"]).execute(
                message=body.get("message"), parameters=body.get("parameters") or {}
            )
        except noukai_sdk.FlowExecutionError as exc:
            return jsonify({"error": exc.code})
        return jsonify({"result": result.result, "executionId": result.execution_id})

    with app.test_client() as http:
        yield http
    sdk.close()


def test_flask_capture_then_replay(flask_client: Any) -> None:
    live = flask_client.post("/grade", json={"slug": "greet", "parameters": {"name": "Flask", "count": 2}})
    assert live.status_code == 200
    assert live.get_json()["result"]["greeting"] == "Hello, Flask!"
    session_id = live.headers["X-Noukai-Session"]
    assert uuid.UUID(session_id)
    replayed = flask_client.post(
        "/grade",
        json={"slug": "greet", "parameters": {"name": "ignored", "count": 0}},
        headers={"X-Noukai-Replay": session_id},
    )
    # The same answer, execution id included: it came from the recording, not from a new run.
    assert replayed.get_json() == live.get_json()


def test_flask_replays_a_recorded_failure(flask_client: Any) -> None:
    live = flask_client.post("/grade", json={"slug": "broken", "parameters": {"config": {}}})
    assert live.get_json() == {"error": "TEMPLATE_ERROR"}
    replayed = flask_client.post(
        "/grade", json={"slug": "broken"}, headers={"X-Noukai-Replay": live.headers["X-Noukai-Session"]}
    )
    assert replayed.get_json() == {"error": "TEMPLATE_ERROR"}
