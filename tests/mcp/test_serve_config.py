"""`[mcp.servers]` in a real noukai.toml, read by a real `noukai serve`: an agent step uses the
configured server, whose process stops with Noukai; a bad table stops Noukai at start-up."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO_ROOT, ServerProcess
from tests.fakeprovider import FakeProvider, FakeToolCall, Reply
from tests.mcp.conftest import alive

GUARD = 30.0
"""Seconds to wait for what should happen promptly: a guard against hangs, not a measure."""


def write_config(path: Path, python_path_variable: str = "MCP_TEST_PYTHONPATH") -> Path:
    path.write_text(
        f"""
[mcp.servers.local]
command = {str(sys.executable)!r}
args = ["-m", "tests.mcp.server"]
env = {{ PYTHONPATH = "${{{python_path_variable}}}" }}
timeout_seconds = 10
"""
    )
    return path


def test_a_configured_server_serves_agent_steps_and_stops_with_noukai(
    make_server: Any, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "noukai.toml")
    with FakeProvider(api_key="sk-test") as fake:
        env = {
            "NOUKAI_CONFIG": str(config),
            "MCP_TEST_PYTHONPATH": str(REPO_ROOT),
            "OPENAI_BASE_URL": fake.openai_base_url,
            "OPENAI_API_KEY": fake.api_key,
        }
        server: ServerProcess = make_server(env=env)
        slug = f"mcp-{uuid.uuid4().hex[:8]}"
        step = {"id": "agent", "type": "agent", "model": "openai:gpt-4o-mini", "prompt": "{{ message }}"}
        server.put_flow(
            server.dev_key, "dev", "main", {"slug": slug, "steps": [{**step, "tools": ["mcp:local"]}]}
        )
        fake.script(Reply(tool_calls=[FakeToolCall("local__pid", {})]), Reply(chunks=["done"]))
        response = httpx.post(
            f"{server.api_url}/seq/dev/main/{slug}/execute",
            json={"message": "go"},
            headers={"Authorization": f"Bearer {server.dev_key}"},
            timeout=GUARD,
        )
        assert response.status_code == 200 and response.json()["result"] == "done", response.text
        tool_message = fake.requests[-1].body["messages"][-1]
        pid = int(tool_message["content"])
        assert alive(pid)
        server.stop()
    deadline = time.monotonic() + GUARD
    while alive(pid):
        assert time.monotonic() < deadline, "the MCP server process outlived Noukai"
        time.sleep(0.05)


def test_a_missing_variable_stops_noukai_at_start(make_server: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path / "noukai.toml", "MCP_TEST_UNSET_VARIABLE")
    with pytest.raises(RuntimeError) as info:
        make_server(env={"NOUKAI_CONFIG": str(config)})
    log = str(info.value)
    needle = "mcp.servers.local.env.PYTHONPATH reads environment variable MCP_TEST_UNSET_VARIABLE"
    assert f"{needle}, which is not set" in log
    assert str(config) in log
