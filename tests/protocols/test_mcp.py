"""`/mcp` driven by the official MCP client over streamable HTTP: the key's flows listed as tools
with their input schemas, a call with a progress notification per step, failures as error
results, and unauthenticated requests refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import TextContent

from mcp import ClientSession
from tests.protocols.conftest import Tenant

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def session(tenant: Tenant, key: str | None = None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {key or tenant.key}"}
    async with (
        create_mcp_http_client(headers=headers) as client,
        streamable_http_client(f"{tenant.server.base_url}/mcp", http_client=client) as (read, write),
        ClientSession(read, write) as mcp,
    ):
        await mcp.initialize()
        yield mcp


def text(content: list[Any]) -> str:
    assert len(content) == 1 and isinstance(content[0], TextContent)
    return content[0].text


async def test_the_keys_flows_are_the_tools(tenant: Tenant) -> None:
    async with session(tenant) as mcp:
        tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
    assert {"proto__chat__echo", "proto__chat__greet", "proto__chat__chain"} <= set(tools)
    assert all(name.startswith("proto__") for name in tools)
    greet = tools["proto__chat__greet"]
    assert greet.title == "A template answer from declared inputs"
    assert "proto/chat/greet" in (greet.description or "")
    assert greet.input_schema == {
        "type": "object",
        "properties": {
            "message": {"type": "string", "description": "The user message the flow reads as `message`."},
            "name": {"type": "string", "description": "Who to greet"},
            "excited": {"type": "boolean", "default": False},
        },
        "required": ["name"],
    }
    assert tools["proto__chat__echo"].input_schema["required"] == ["message"]


async def test_a_call_runs_the_flow_and_reports_each_step(tenant: Tenant) -> None:
    reports: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    async with session(tenant) as mcp:
        result = await mcp.call_tool("proto__chat__chain", {"message": "hi"}, progress_callback=on_progress)
    assert not result.is_error
    assert text(result.content) == "then first hi"
    assert result.structured_content is not None
    assert result.structured_content["result"] == "then first hi"
    assert reports == [(1.0, 2.0, "step one completed"), (2.0, 2.0, "step two completed")]


async def test_declared_inputs_are_the_arguments(tenant: Tenant) -> None:
    async with session(tenant) as mcp:
        result = await mcp.call_tool("proto__chat__greet", {"name": "Ada", "excited": True})
        assert not result.is_error
        assert result.structured_content is not None
        assert result.structured_content["result"] == {"greeting": "Hello, Ada!", "excited": True}
        assert text(result.content) == '{"greeting":"Hello, Ada!","excited":true}'
        missing = await mcp.call_tool("proto__chat__greet", {})
        assert missing.is_error and text(missing.content).startswith("VALIDATION_ERROR")
        wrong = await mcp.call_tool("proto__chat__echo", {"message": 3})
        assert wrong.is_error and "message" in text(wrong.content)


async def test_a_failed_run_is_an_error_result(tenant: Tenant) -> None:
    async with session(tenant) as mcp:
        result = await mcp.call_tool("proto__chat__broken", {"message": "hi"})
    assert result.is_error and text(result.content).startswith("TEMPLATE_ERROR")


async def test_an_unknown_tool_is_a_protocol_error(tenant: Tenant) -> None:
    async with session(tenant) as mcp:
        with pytest.raises(MCPError):
            await mcp.call_tool("dev__main__echo", {"message": "hi"})  # another org's flow


async def test_a_project_key_sees_its_project_only(tenant: Tenant) -> None:
    key = tenant.server.create_key("proto", "elsewhere")
    async with session(tenant, key) as mcp:
        assert (await mcp.list_tools()).tools == []


@pytest.mark.parametrize("header", [None, "Bearer nk_wrong", "Basic abc"])
async def test_unauthenticated_requests_are_refused(tenant: Tenant, header: str | None) -> None:
    headers = {"Accept": "application/json, text/event-stream"}
    if header is not None:
        headers["Authorization"] = header
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{tenant.server.base_url}/mcp", json=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"]["code"] == "UNAUTHENTICATED"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_the_official_client_fails_without_a_key(tenant: Tenant) -> None:
    with pytest.raises(BaseException):  # noqa: B017 - the SDK wraps the 401 in task-group errors
        async with session(tenant, "nk_wrong") as mcp:
            await mcp.list_tools()
