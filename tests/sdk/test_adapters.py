"""The FastAPI middleware and the Flask adapter: a session per request, capture and replay."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import pytest
from fastapi import FastAPI, Request
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

import noukai
from noukai.adapters.fastapi import NoukaiTraceMiddleware
from tests.sdk.conftest import fake_async_client, fake_client
from tests.sdk.test_replay import SID, Backend, execution, session


def fastapi_app(client: Any, backend: Backend) -> FastAPI:
    app = FastAPI()
    app.add_middleware(NoukaiTraceMiddleware, client=client)

    @app.post("/grade")
    @noukai.trace
    async def grade(req: Request) -> dict[str, Any]:
        body = await req.json()
        result = await client.flow("grade-3").execute(message=body["text"])
        return {"output": result.result, "session_id": result.session_id}

    @app.post("/twice")
    async def twice() -> dict[str, Any]:
        await client.flow("grade-3").execute(message="a")
        await client.flow("grade-3").execute(message="b")
        return {}

    @app.get("/nothing")
    async def nothing() -> dict[str, Any]:
        return {}

    @app.get("/sync")
    def sync_route() -> dict[str, Any]:
        return {"scope": noukai._replay.current_scope() is not None}

    return app


def test_capture_reports_the_session_the_calls_used() -> None:
    backend = Backend()
    with TestClient(fastapi_app(fake_async_client(backend), backend)) as http:
        response = http.post("/grade", json={"text": "The cat sat on the mat."})
    assert response.status_code == 200
    reported = response.headers["x-noukai-session"]
    assert response.json() == {"output": "live", "session_id": reported}
    assert backend.session_headers() == [reported]  # the decorator joined the adapter's session
    with TestClient(fastapi_app(fake_async_client(backend), backend)) as http:
        assert http.get("/sync").json() == {"scope": True}


def test_a_replay_header_without_the_gate_is_ignored() -> None:
    backend = Backend({SID: session(execution("grade-3", "execute", "recorded"))})
    with TestClient(fastapi_app(fake_async_client(backend), backend)) as http:
        response = http.post("/grade", json={"text": "x"}, headers={"X-Noukai-Replay": SID})
    assert response.json()["output"] == "live" and response.headers["x-noukai-session"] != SID


def test_replay_through_the_middleware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOUKAI_REPLAY_ENABLED", "true")
    backend = Backend({SID: session(execution("grade-3", "execute", "recorded"))})
    with TestClient(fastapi_app(fake_async_client(backend), backend)) as http:
        response = http.post("/grade", json={"text": "anything"}, headers={"X-Noukai-Replay": SID})
        assert response.status_code == 200, response.text
        assert response.json() == {"output": "recorded", "session_id": SID}
        assert response.headers["x-noukai-session"] == SID
        assert [r.url.path for r in backend.requests] == [f"/api/v1/seq/sessions/{SID}"]

        leftover = http.get("/nothing", headers={"X-Noukai-Replay": SID})
        assert leftover.status_code == 500 and leftover.json()["error"] == "replay_leftover"
        assert leftover.headers["x-noukai-session"] == SID
        miss = http.post("/twice", headers={"X-Noukai-Replay": SID})
        assert miss.status_code == 500 and miss.json()["error"] == "replay_miss"
        unknown = http.get("/nothing", headers={"X-Noukai-Replay": "33333333-3333-4333-8333-333333333333"})
        assert unknown.status_code == 404 and unknown.json()["error"] == "replay_session_not_found"
        invalid = http.get("/nothing", headers={"X-Noukai-Replay": "not-a-uuid"})
        assert invalid.status_code == 400 and invalid.json()["error"] == "replay_invalid_session"


def test_replay_with_a_sync_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOUKAI_REPLAY_ENABLED", "true")
    backend = Backend({SID: session(execution("grade-3", "execute", "recorded"))})
    sync_client = fake_client(backend)
    app = FastAPI()
    app.add_middleware(NoukaiTraceMiddleware, client=sync_client)

    @app.get("/grade")
    def grade() -> dict[str, Any]:
        return {"output": sync_client.flow("grade-3").execute(message="x").result}

    with TestClient(app) as http:
        assert http.get("/grade", headers={"X-Noukai-Replay": SID}).json() == {"output": "recorded"}


flask_missing = importlib.util.find_spec("flask") is None


@pytest.mark.skipif(
    flask_missing, reason="Flask is not installed (the [flask] extra); the adapter is untested here"
)
def test_flask_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    from flask import Flask, jsonify

    from noukai.adapters.flask import init_noukai_trace

    backend = Backend({SID: session(execution("grade-3", "execute", "recorded"))})
    sync_client = fake_client(backend)
    app = Flask(__name__)
    init_noukai_trace(app, client=sync_client)

    @app.post("/grade")
    @noukai.trace
    def grade() -> Any:
        result = sync_client.flow("grade-3").execute(message="x")
        return jsonify({"output": result.result, "session_id": result.session_id})

    @app.get("/nothing")
    def nothing() -> Any:
        return jsonify({})

    http = app.test_client()
    captured = http.post("/grade")
    assert captured.json is not None
    assert captured.json["session_id"] == captured.headers["X-Noukai-Session"]
    assert backend.session_headers() == [captured.headers["X-Noukai-Session"]]
    monkeypatch.setenv("NOUKAI_REPLAY_ENABLED", "true")
    replayed = http.post("/grade", headers={"X-Noukai-Replay": SID})
    assert replayed.json == {"output": "recorded", "session_id": SID}
    assert replayed.headers["X-Noukai-Session"] == SID
    leftover = http.get("/nothing", headers={"X-Noukai-Replay": SID})
    assert leftover.status_code == 500 and leftover.json is not None
    assert leftover.json["error"] == "replay_leftover"
    missing = http.get("/nothing", headers={"X-Noukai-Replay": "33333333-3333-4333-8333-333333333333"})
    assert missing.status_code == 404
    miss = http.post("/grade", headers={"X-Noukai-Replay": "44444444-4444-4444-8444-444444444444"})
    assert miss.status_code == 404


def test_the_flask_module_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # Hide Flask (a None entry in sys.modules makes `import flask` fail) and re-import the adapter.
    monkeypatch.setitem(sys.modules, "flask", None)
    monkeypatch.delitem(sys.modules, "noukai.adapters.flask", raising=False)
    with pytest.raises(ImportError, match=r"noukai\[flask\]"):
        import noukai.adapters.flask  # noqa: F401


@pytest.mark.anyio
async def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:
        raise AssertionError("the middleware does not read a non-HTTP scope")

    async def send(message: Message) -> None:
        raise AssertionError("the middleware does not answer a non-HTTP scope")

    await NoukaiTraceMiddleware(app)({"type": "lifespan"}, receive, send)
    assert seen == ["lifespan"]
