"""The MCP client against a real MCP server over stdio and streamable HTTP: listing and calling
tools, error results, timeouts, a server that dies (mid-call and idle), failed starts, and
shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
import pytest

from mcp import ClientSession
from noukai_server.engine.tool_source import BoundTool, ToolUnavailable, UnknownTool
from noukai_server.engine.tools import ToolError
from noukai_server.mcp.config import McpServerConfig
from noukai_server.mcp.tools import McpTools
from tests.conftest import REPO_ROOT, free_port
from tests.mcp.conftest import STDIO_ARGS, alive, http_config, stdio_config

pytestmark = pytest.mark.anyio
GUARD = 20.0
"""Seconds to wait for what should happen promptly: a guard against hangs, not a measure."""


@pytest.fixture(params=["stdio", "http"])
def config(request: pytest.FixtureRequest) -> McpServerConfig:
    if request.param == "stdio":
        return stdio_config("srv", timeout_seconds=2.0)
    url: str = request.getfixturevalue("http_url")
    return http_config(url, "srv", timeout_seconds=2.0)


@pytest.fixture
async def mcp(config: McpServerConfig) -> AsyncIterator[McpTools]:
    tools = McpTools({"srv": config})
    try:
        yield tools
    finally:
        await tools.aclose()


async def bound(tools: McpTools, reference: str = "mcp:srv") -> dict[str, BoundTool]:
    return {tool.name: tool for tool in await tools.resolve(reference)}


async def call(tools: McpTools, tool: str, **arguments: object) -> str:
    return await (await bound(tools))[f"srv__{tool}"].call(orjson.dumps(arguments).decode())


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GUARD
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_lists_the_tools_with_their_descriptions_and_schemas(mcp: McpTools) -> None:
    tools = await bound(mcp)
    assert set(tools) == {f"srv__{n}" for n in ("add", "echo", "fail", "slow", "pid", "header", "refuse")}
    add = tools["srv__add"].spec
    assert add.name == "srv__add" and add.description == "Add two numbers."
    assert add.parameters["properties"].keys() == {"a", "b"} and add.parameters["required"] == ["a", "b"]
    assert [t.name for t in await mcp.resolve("mcp:srv/add")] == ["srv__add"]
    assert mcp.names() == ["mcp:srv"] and "mcp:srv/add" in mcp and "mcp:other" in mcp and "add" not in mcp


async def test_a_call_returns_the_text_result(mcp: McpTools) -> None:
    assert await call(mcp, "add", a=2, b=3) == "5.0"
    assert await call(mcp, "echo", text="héllo") == "héllo"


async def test_the_session_is_reused(mcp: McpTools) -> None:
    first = await call(mcp, "pid")
    assert await call(mcp, "pid") == first
    assert (await bound(mcp)).keys() == (await bound(mcp)).keys()


async def test_concurrent_first_uses_start_one_server(mcp: McpTools) -> None:
    pids = await asyncio.gather(*(call(mcp, "pid") for _ in range(4)))
    assert len(set(pids)) == 1


async def test_an_error_result_is_a_tool_error(mcp: McpTools) -> None:
    with pytest.raises(ToolError, match=r"^srv__fail \(MCP server 'srv'\) failed: .*out of coffee"):
        await call(mcp, "fail", reason="out of coffee")


async def test_bad_arguments_are_tool_errors(mcp: McpTools) -> None:
    add = (await bound(mcp))["srv__add"]
    with pytest.raises(ToolError, match="srv__add .*failed: .*validation error"):
        await add.call('{"a": "x"}')
    with pytest.raises(ToolError, match="invalid arguments for srv__add: not JSON"):
        await add.call("{")
    with pytest.raises(ToolError, match="invalid arguments for srv__add: expected a JSON object"):
        await add.call("[1, 2]")


async def test_a_slow_call_times_out_and_the_session_lives_on(mcp: McpTools) -> None:
    pid = await call(mcp, "pid")
    with pytest.raises(ToolError, match=r"MCP server 'srv' did not answer slow within 2 s"):
        await call(mcp, "slow", seconds=30)
    assert await call(mcp, "pid") == pid


async def test_a_protocol_error_is_a_tool_error(mcp: McpTools) -> None:
    with pytest.raises(ToolError, match=r"^MCP server 'srv' refused refuse: refused by policy$"):
        await call(mcp, "refuse")


async def test_an_answer_the_sdk_rejects_is_a_tool_error(
    mcp: McpTools, monkeypatch: pytest.MonkeyPatch
) -> None:
    add = (await bound(mcp))["srv__add"]

    async def rejecting(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Invalid structured content returned by tool add")

    monkeypatch.setattr(ClientSession, "call_tool", rejecting)
    with pytest.raises(ToolError) as info:
        await add.call('{"a": 1, "b": 2}')
    assert str(info.value) == (
        "MCP server 'srv' gave an unusable answer to add: "
        "RuntimeError: Invalid structured content returned by tool add"
    )
    monkeypatch.undo()
    assert await add.call('{"a": 1, "b": 2}') == "3.0"  # the session was kept


async def test_a_tool_the_server_does_not_offer(mcp: McpTools) -> None:
    with pytest.raises(UnknownTool) as info:
        await mcp.resolve("mcp:srv/nope")
    assert str(info.value) == (
        "MCP server 'srv' offers no tool 'nope' (named by 'mcp:srv/nope'); "
        "it offers: add, echo, fail, header, pid, refuse, slow"
    )


async def test_an_unconfigured_server(mcp: McpTools) -> None:
    with pytest.raises(
        UnknownTool,
        match=r"'mcp:files' names MCP server 'files', which is not configured "
        r"\(configured MCP servers: srv\)",
    ):
        await mcp.resolve("mcp:files")


async def test_configured_headers_are_sent(http_url: str) -> None:
    tools = McpTools({"srv": http_config(http_url, "srv")})
    try:
        assert await call(tools, "header", name="authorization") == "Bearer t0ken"
    finally:
        await tools.aclose()


async def test_killing_the_server_mid_call_fails_that_call_and_the_next_restarts_it(tmp_path: Path) -> None:
    tools = McpTools({"srv": stdio_config("srv")})
    try:
        pid = int(await call(tools, "pid"))
        started = tmp_path / "started"
        slow = asyncio.create_task(call(tools, "slow", seconds=60, started_file=str(started)))
        await wait_for(started.exists, "the slow call to start")
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ToolError) as info:
            await slow
        assert str(info.value) == (
            "MCP server 'srv' closed the connection during slow (it stopped?); "
            "it is restarted on the next call"
        )
        restarted = int(await call(tools, "pid"))
        assert restarted != pid and await call(tools, "add", a=1, b=1) == "2.0"
    finally:
        await tools.aclose()


async def test_a_server_that_died_idle_fails_one_call_then_restarts() -> None:
    tools = McpTools({"srv": stdio_config("srv")})
    try:
        add = (await bound(tools))["srv__add"]
        pid = int(await call(tools, "pid"))
        os.kill(pid, signal.SIGKILL)
        await wait_for(lambda: not alive(pid), "the server to die")
        with pytest.raises(ToolError, match="MCP server 'srv' closed the connection during add"):
            await add.call('{"a": 1, "b": 2}')
        assert await add.call('{"a": 1, "b": 2}') == "3.0"  # the same bound tool, a new session
    finally:
        await tools.aclose()


async def test_an_http_server_that_went_away_is_a_tool_error() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, *STDIO_ARGS, "--http", str(port)], cwd=REPO_ROOT, stderr=subprocess.DEVNULL
    )
    tools = McpTools({"srv": http_config(f"http://127.0.0.1:{port}/mcp", "srv")})
    try:
        deadline = time.monotonic() + GUARD
        while True:  # the server needs a moment to listen
            try:
                add = (await bound(tools))["srv__add"]
                break
            except ToolUnavailable:
                assert time.monotonic() < deadline, "the HTTP MCP server did not start"
                await asyncio.sleep(0.1)
        process.kill()
        process.wait(timeout=GUARD)
        with pytest.raises(ToolError, match="MCP server 'srv' closed the connection during add"):
            await add.call('{"a": 1, "b": 2}')
        with pytest.raises(ToolError, match="MCP server 'srv' did not start: .*Connect"):
            await add.call('{"a": 1, "b": 2}')
    finally:
        process.kill()
        process.wait(timeout=GUARD)
        await tools.aclose()


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        (
            McpServerConfig(name="srv", command="/nonexistent/mcp-server", timeout_seconds=2),
            r"^MCP server 'srv' did not start: (FileNotFoundError|OSError).*mcp-server",
        ),
        (
            McpServerConfig(
                name="srv",
                command=sys.executable,
                args=("-c", "import time; time.sleep(60)"),
                timeout_seconds=0.5,
            ),
            r"^MCP server 'srv' did not start within 0.5 s \(timeout_seconds\)$",
        ),
        (
            McpServerConfig(name="srv", url=f"http://127.0.0.1:{free_port()}/mcp", timeout_seconds=2),
            r"^MCP server 'srv' did not start: .*Connect",
        ),
    ],
    ids=["no-such-command", "never-answers", "nothing-listening"],
)
async def test_a_server_that_does_not_start(server: McpServerConfig, expected: str) -> None:
    tools = McpTools({"srv": server})
    try:
        with pytest.raises(ToolUnavailable, match=expected):
            await tools.resolve("mcp:srv")
    finally:
        await tools.aclose()


async def test_a_start_given_up_on_stops_the_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    tools = McpTools({"srv": McpServerConfig(name="srv", command=sys.executable, args=("-c", script))})
    try:
        starting = asyncio.create_task(tools.resolve("mcp:srv"))
        await wait_for(lambda: pid_file.exists() and pid_file.read_text() != "", "the process to start")
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starting
        pid = int(pid_file.read_text())
        await wait_for(lambda: not alive(pid), "the abandoned server process to stop")
    finally:
        await tools.aclose()


async def test_close_stops_the_server_and_refuses_later_calls() -> None:
    tools = McpTools({"srv": stdio_config("srv")})
    pid = int(await call(tools, "pid"))
    await tools.aclose()
    await wait_for(lambda: not alive(pid), "the server process to stop")
    with pytest.raises(ToolUnavailable, match="MCP server 'srv' is closed"):
        await tools.resolve("mcp:srv")
