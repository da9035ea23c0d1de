"""MCP tools in real flows: a server (the app, in-process on a loopback port) configured with the
test MCP server, a fake model that calls its tools, and what the run's events say; a flow naming
an unconfigured server is refused at push."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from noukai_server.api.app import create_app
from noukai_server.config import ServerConfig
from noukai_server.providers import ProviderSettings
from noukai_server.store import Store
from tests.conftest import free_port
from tests.fakeprovider import FakeProvider, FakeToolCall, Reply
from tests.mcp.conftest import stdio_config

MODEL = "openai:gpt-4o-mini"
GUARD = 30.0
"""Seconds to wait for what should happen promptly: a guard against hangs, not a measure."""


class InProcessServer:
    """The app under uvicorn in a daemon thread (its own event loop), with a key for dev/main."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.port = config.port
        self.key = asyncio.run(self._create_key())
        self._server = uvicorn.Server(
            uvicorn.Config(create_app(config), host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    async def _create_key(self) -> str:
        store = await Store.connect(self.config.resolved_database_url)
        try:
            _, key = await store.create_api_key("dev", "main", name="test")
            return key
        finally:
            await store.close()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def __enter__(self) -> InProcessServer:
        self._thread.start()
        deadline = time.monotonic() + GUARD
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(GUARD)
        assert not self._thread.is_alive(), "the server did not stop"

    def put_flow(self, tools: list[str], slug: str | None = None) -> httpx.Response:
        slug = slug or f"mcp-{uuid.uuid4().hex[:8]}"
        step = {"id": "agent", "type": "agent", "model": MODEL, "prompt": "{{ message }}", "tools": tools}
        return httpx.put(
            f"{self.api_url}/flows/dev/main/{slug}",
            json={"slug": slug, "steps": [step]},
            headers=self.headers,
        )

    def execute(self, slug: str) -> dict[str, Any]:
        response = httpx.post(
            f"{self.api_url}/seq/dev/main/{slug}/execute",
            json={"message": "go"},
            headers=self.headers,
            timeout=GUARD,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def events(self, run_id: str, kind: str) -> list[dict[str, Any]]:
        with sqlite3.connect(self.config.data_dir / "noukai.db") as db:
            rows = db.execute(
                "SELECT data FROM run_events WHERE run_id = ? AND type = ? ORDER BY seq", (run_id, kind)
            ).fetchall()
        return [orjson.loads(row[0]) for row in rows]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(api_key="sk-test") as provider:
        yield provider


@pytest.fixture(scope="module")
def server(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    config = ServerConfig(
        data_dir=tmp_path_factory.mktemp("mcp-server"),
        port=free_port(),
        providers=ProviderSettings(openai_base_url=fake.openai_base_url, openai_api_key=fake.api_key),
        mcp_servers={"local": stdio_config("local")},
    )
    with InProcessServer(config) as running:
        yield running


def flow(server: InProcessServer, tools: list[str]) -> str:
    response = server.put_flow(tools)
    assert response.status_code == 200, response.text
    return str(response.json()["slug"])


def test_the_model_calls_an_mcp_tool_and_the_events_show_it(
    server: InProcessServer, fake: FakeProvider
) -> None:
    slug = flow(server, ["mcp:local", "word_count"])
    fake.script(
        Reply(tool_calls=[FakeToolCall("local__add", {"a": 2, "b": 3}, id="call_1")]),
        Reply(chunks=["the sum is 5"]),
    )
    seen = len(fake.requests)
    body = server.execute(slug)
    assert body["status"] == "completed" and body["result"] == "the sum is 5", body
    offered = {t["function"]["name"]: t["function"] for t in fake.requests[seen].body["tools"]}
    assert {"local__add", "local__slow", "word_count"} <= offered.keys()
    assert offered["local__add"]["description"] == "Add two numbers."
    assert offered["local__add"]["parameters"]["required"] == ["a", "b"]
    run_id = body["executionId"]
    [started] = server.events(run_id, "tool_call_started")
    assert started == {
        **started,
        "name": "local__add",
        "side": "server",
        "toolCallId": "call_1",
        "arguments": '{"a": 2, "b": 3}',
    }
    [completed] = server.events(run_id, "tool_call_completed")
    assert completed == {**completed, "name": "local__add", "side": "server", "result": "5.0"}
    assert isinstance(completed["durationMs"], int) and "error" not in completed
    [step_input] = server.events(run_id, "step_input")
    assert step_input["inputData"]["serverTools"] == ["mcp:local", "word_count"]  # as the trace shows it
    tool_message = fake.requests[seen + 1].body["messages"][-1]
    assert tool_message == {**tool_message, "role": "tool", "tool_call_id": "call_1", "content": "5.0"}


def test_one_named_tool_and_an_error_result(server: InProcessServer, fake: FakeProvider) -> None:
    slug = flow(server, ["mcp:local/fail"])
    fake.script(
        Reply(tool_calls=[FakeToolCall("local__fail", {"reason": "disk full"}, id="call_1")]),
        Reply(chunks=["sorry"]),
    )
    seen = len(fake.requests)
    body = server.execute(slug)
    assert body["status"] == "completed", body
    assert [t["function"]["name"] for t in fake.requests[seen].body["tools"]] == ["local__fail"]
    [completed] = server.events(body["executionId"], "tool_call_completed")
    assert completed["error"].startswith("local__fail (MCP server 'local') failed: ")
    assert "disk full" in completed["error"] and "result" not in completed
    assert fake.requests[seen + 1].body["messages"][-1]["content"] == f"error: {completed['error']}"


def test_a_tool_the_server_does_not_offer_fails_the_step(server: InProcessServer, fake: FakeProvider) -> None:
    slug = flow(server, ["mcp:local/nope"])  # accepted at push: the server's tools are known at run time
    response = httpx.post(
        f"{server.api_url}/seq/dev/main/{slug}/execute",
        json={"message": "go"},
        headers=server.headers,
        timeout=GUARD,
    )
    text = response.text
    assert "MCP server 'local' offers no tool 'nope'" in text and "it offers: add, echo, fail" in text, text
    assert "INVALID_TREE" in text, text


def test_killing_the_server_mid_run_is_a_tool_error_and_the_next_run_restarts_it(
    server: InProcessServer, fake: FakeProvider, tmp_path: Path
) -> None:
    slug = flow(server, ["mcp:local"])
    started = tmp_path / "started"
    fake.script(
        Reply(tool_calls=[FakeToolCall("local__slow", {"seconds": 60, "started_file": str(started)})]),
        Reply(chunks=["it broke"]),
    )
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(server.execute, slug)
        deadline = time.monotonic() + GUARD
        while not started.exists():
            assert time.monotonic() < deadline and not running.done(), "the slow call did not start"
            time.sleep(0.02)
        pid = int(started.read_text())
        os.kill(pid, signal.SIGKILL)
        body = running.result(GUARD)
    assert body["status"] == "completed" and body["result"] == "it broke", body
    [completed] = server.events(body["executionId"], "tool_call_completed")
    assert completed["error"] == (
        "MCP server 'local' closed the connection during slow (it stopped?); it is restarted on the next call"
    )
    fake.script(Reply(tool_calls=[FakeToolCall("local__pid", {})]), Reply(chunks=["fine"]))
    again = server.execute(slug)
    [restarted] = server.events(again["executionId"], "tool_call_completed")
    assert int(restarted["result"]) != pid


def test_a_flow_naming_an_unconfigured_server_is_refused_at_push(server: InProcessServer) -> None:
    response = server.put_flow(["mcp:lokal/add"])
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert detail["code"] == "INVALID_TREE"
    message = detail["issues"][0]["message"]
    assert message.endswith(
        "field 'tools[0]': unknown MCP server 'lokal' in 'mcp:lokal/add' (did you mean 'local'?); "
        "configured MCP servers: local (add one under [mcp.servers.NAME] in noukai.toml)"
    ), message
    assert detail["issues"][0]["stepId"] == "agent"
    malformed = server.put_flow(["mcp:local/"]).json()["detail"]["issues"][0]["message"]
    assert malformed.endswith(
        "'mcp:local/' is not an MCP tool reference (write 'mcp:SERVER' or 'mcp:SERVER/tool')"
    )
