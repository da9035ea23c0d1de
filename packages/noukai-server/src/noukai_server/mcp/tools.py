"""The configured MCP servers as a `ToolSource` for agent steps.

A step names `mcp:SERVER` (every tool of the server) or `mcp:SERVER/tool` (one tool); the model
sees each as `SERVER__tool` (`naming`) with the server's description and input schema. Resolving
a reference starts the server if it is not running; a tool the server does not offer fails the
step with the list of what it offers. Calls go through the server's shared `McpConnection`; every
failure (an error result, a timeout, a dead server) becomes a `ToolError`, i.e. a message the
model reads, as with the operator's own tools.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Mapping, Sequence

import orjson
from mcp.types import Tool

from noukai_server.engine.tool_source import BoundTool, ToolUnavailable, UnknownTool
from noukai_server.engine.tools import ToolError
from noukai_server.mcp.config import McpServerConfig
from noukai_server.mcp.connection import McpConnection, McpFailure
from noukai_server.mcp.naming import model_tool_name
from noukai_server.mcp.results import result_text
from noukai_server.providers import ToolSpec

PREFIX = "mcp:"


def parse_reference(reference: str) -> tuple[str, str | None]:
    """`mcp:SERVER` -> (SERVER, None); `mcp:SERVER/tool` -> (SERVER, tool)."""
    server, slash, tool = reference.removeprefix(PREFIX).partition("/")
    return server, (tool if slash else None)


class McpTools:
    def __init__(self, servers: Mapping[str, McpServerConfig]) -> None:
        self._connections = {name: McpConnection(config) for name, config in servers.items()}

    def names(self) -> Iterable[str]:
        return [f"{PREFIX}{name}" for name in self._connections]

    def __contains__(self, reference: object) -> bool:
        # Every `mcp:` reference is ours, configured or not, so that an unknown server gets an
        # error that lists the configured ones.
        return isinstance(reference, str) and reference.startswith(PREFIX)

    async def resolve(self, reference: str) -> Sequence[BoundTool]:
        server, wanted = parse_reference(reference)
        connection = self._connections.get(server)
        if connection is None:
            configured = ", ".join(self._connections) or "none"
            raise UnknownTool(
                f"{reference!r} names MCP server {server!r}, which is not configured "
                f"(configured MCP servers: {configured})"
            )
        try:
            offered = await connection.tools()
        except McpFailure as exc:
            raise ToolUnavailable(str(exc)) from exc
        tools = offered if wanted is None else [tool for tool in offered if tool.name == wanted]
        if wanted is not None and not tools:
            names = ", ".join(sorted(t.name for t in offered)) or "no tools"
            raise UnknownTool(
                f"MCP server {server!r} offers no tool {wanted!r} (named by {reference!r}); "
                f"it offers: {names}"
            )
        return [_bind(connection, tool) for tool in tools]

    async def aclose(self) -> None:
        """Close every session; stdio servers are stopped."""
        await asyncio.gather(*(c.aclose() for c in self._connections.values()))


def _bind(connection: McpConnection, tool: Tool) -> BoundTool:
    name = model_tool_name(connection.name, tool.name)
    description = tool.description or tool.title or ""
    spec = ToolSpec(name=name, description=description, parameters=dict(tool.input_schema))
    return BoundTool(name, spec, functools.partial(_call, connection, tool.name, name))


async def _call(connection: McpConnection, tool: str, name: str, arguments_json: str) -> str:
    try:
        arguments = orjson.loads(arguments_json or "{}")
    except orjson.JSONDecodeError as exc:
        raise ToolError(f"invalid arguments for {name}: not JSON ({exc})") from exc
    if not isinstance(arguments, dict):
        raise ToolError(f"invalid arguments for {name}: expected a JSON object")
    try:
        result = await connection.call(tool, arguments)
    except McpFailure as exc:
        raise ToolError(str(exc)) from exc
    text = result_text(result)
    if result.is_error:
        raise ToolError(f"{name} (MCP server {connection.name!r}) failed: {text}")
    return text
