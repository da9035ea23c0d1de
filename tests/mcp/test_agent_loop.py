"""The agent loop over `ToolSources`: the operator's tools and an MCP server's side by side, and
what a reference that cannot be resolved does to the step."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from noukai_server.engine.agent import AgentLoop, AgentResult
from noukai_server.engine.outcome import StepFailure
from noukai_server.engine.tool_source import ToolSources, UnknownTool, resolve_all
from noukai_server.engine.tools import default_tools
from noukai_server.mcp.config import McpServerConfig
from noukai_server.mcp.tools import McpTools
from tests.engine.test_agent import ListSink, agent_call, fake_model
from tests.mcp.conftest import stdio_config

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sources() -> AsyncIterator[ToolSources]:
    mcp = McpTools(
        {
            "srv": stdio_config("srv"),
            "broken": McpServerConfig(name="broken", command="/nonexistent/mcp-server", timeout_seconds=2),
        }
    )
    try:
        yield ToolSources(default_tools(), mcp)
    finally:
        await mcp.aclose()


async def test_mcp_and_registered_tools_in_one_loop(sources: ToolSources) -> None:
    sink = ListSink()
    call = agent_call(server_tools=["word_count", "mcp:srv/add", "mcp:srv/echo"])
    result = await AgentLoop(sources).run(call, sink, fake_model)
    assert isinstance(result, AgentResult)
    # builtin:test calls each offered tool once, with arguments made up from its schema
    assert "word_count=1" in result.text and "srv__add=0.0" in result.text, result.text
    completed = [payload for kind, payload in sink.events if kind == "tool_call_completed"]
    assert {p["name"] for p in completed} == {"word_count", "srv__add", "srv__echo"}
    assert all(p["side"] == "server" and "error" not in p for p in completed)


async def test_a_tool_named_twice_is_offered_once(sources: ToolSources) -> None:
    tools = await resolve_all(sources, ["mcp:srv/add", "mcp:srv", "add"])
    assert list(tools) == [
        "srv__add",
        "srv__echo",
        "srv__fail",
        "srv__refuse",
        "srv__slow",
        "srv__pid",
        "srv__header",
        "add",
    ]


async def test_a_tool_the_server_does_not_offer_fails_the_step_as_invalid(sources: ToolSources) -> None:
    with pytest.raises(StepFailure) as info:
        await AgentLoop(sources).run(agent_call(server_tools=["mcp:srv/nope"]), ListSink(), fake_model)
    assert info.value.code == "INVALID_TREE" and not info.value.retryable
    assert info.value.message.startswith("step 'agent': MCP server 'srv' offers no tool 'nope'")


async def test_a_server_that_does_not_start_fails_the_step_retryably(sources: ToolSources) -> None:
    with pytest.raises(StepFailure) as info:
        await AgentLoop(sources).run(agent_call(server_tools=["mcp:broken"]), ListSink(), fake_model)
    assert info.value.code == "INTERNAL_ERROR" and info.value.retryable
    assert info.value.message.startswith("step 'agent': MCP server 'broken' did not start: ")


async def test_unknown_plain_tools(sources: ToolSources) -> None:
    assert "calculator" not in sources and "add" in sources and "mcp:anything" in sources
    with pytest.raises(UnknownTool, match="there is no server-side tool 'calculator'"):
        await sources.resolve("calculator")
    with pytest.raises(UnknownTool, match="there is no server-side tool 'calculator'"):
        await default_tools().resolve("calculator")
    with pytest.raises(StepFailure, match="step 'agent': there is no server-side tool 'calculator'"):
        await AgentLoop(sources).run(agent_call(server_tools=["calculator"]), ListSink(), fake_model)
