"""`/mcp`: the flows a key may run, as the tools of an MCP server (streamable HTTP, the `mcp`
SDK's own server and transport, stateless: every HTTP request stands alone, so any API process
can serve any request).

The bearer key is checked here, before the SDK sees the request (401 in the usual envelope
otherwise, 403 FORBIDDEN for a key without the `run` scope: the endpoint exists to run flows);
the handlers read the key from the request the SDK hands them. The translation is
`runtime.protocols.mcp_tools`. docs/protocols.md.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import mcp.types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from starlette.types import Receive, Scope, Send

from noukai.types.errors import ErrorCode
from noukai_server import __version__
from noukai_server.api.auth import authenticate, require_scope
from noukai_server.api.errors import ApiError, error_response
from noukai_server.api.services import Services
from noukai_server.runtime.protocols import ProtocolRuns
from noukai_server.runtime.protocols.mcp_tools import FlowTool, call_flow, flow_tools
from noukai_server.store import ApiKeyRecord

MCP_PATH: Final = "/mcp"
_CALLER: Final = "noukai_mcp_caller"


@dataclass(frozen=True, slots=True)
class _Caller:
    key: ApiKeyRecord
    runs: ProtocolRuns


def _caller(ctx: ServerRequestContext[Any, Any]) -> _Caller:
    request = ctx.request
    caller = request.scope.get("state", {}).get(_CALLER) if request is not None else None
    if not isinstance(caller, _Caller):  # every request passes `McpEndpoint.__call__` first
        raise MCPError(types.INTERNAL_ERROR, "the request was not authenticated")
    return caller


def _tool(tool: FlowTool) -> types.Tool:
    return types.Tool(
        name=tool.name, title=tool.title, description=tool.description, input_schema=tool.input_schema
    )


async def _list_tools(
    ctx: ServerRequestContext[Any, Any], _params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    caller = _caller(ctx)
    return types.ListToolsResult(tools=[_tool(t) for t in await flow_tools(caller.runs, caller.key)])


async def _call_tool(
    ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    caller = _caller(ctx)
    tool = next((t for t in await flow_tools(caller.runs, caller.key) if t.name == params.name), None)
    if tool is None:
        message = f"no tool {params.name!r}: tools/list names the flows you may run"
        raise MCPError(types.INVALID_PARAMS, message)

    async def progress(done: float, total: float, message: str) -> None:
        await ctx.session.report_progress(done, total, message)  # a no-op without a progress token

    outcome = await call_flow(caller.runs, caller.key, tool, params.arguments, progress)
    structured = None
    if not outcome.is_error:
        structured = {"result": outcome.result, "executionId": outcome.execution_id}
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=outcome.text)],
        structured_content=structured,
        is_error=outcome.is_error,
    )


class McpEndpoint:
    """The ASGI app mounted at `/mcp`; `running()` belongs in the app's lifespan."""

    def __init__(self) -> None:
        self.server: Server[Any] = Server(
            "noukai",
            version=__version__,
            instructions="Each tool runs one Noukai flow and answers with its result.",
            on_list_tools=_list_tools,
            on_call_tool=_call_tool,
        )
        self.manager = StreamableHTTPSessionManager(self.server, stateless=True)
        # The SDK logs every stateless request's session at INFO; the access log already has them.
        logging.getLogger("mcp.server").setLevel(logging.WARNING)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        services: Services = scope["app"].state.services
        try:
            key = await _authenticate(services, scope)
            if key is None:
                raise ApiError(
                    ErrorCode.UNAUTHENTICATED,
                    "missing or invalid API key: send `Authorization: Bearer nk_...`",
                )
            require_scope(key, "run")
        except ApiError as exc:
            headers = (
                {"WWW-Authenticate": 'Bearer realm="noukai"'}
                if exc.code == ErrorCode.UNAUTHENTICATED
                else None
            )
            await error_response(exc.code, exc.message, headers=headers)(scope, receive, send)
            return
        runs = ProtocolRuns(
            services.store, services.bus, services.runs, heartbeat_seconds=services.config.heartbeat_seconds
        )
        scope["state"] = {**scope.get("state", {}), _CALLER: _Caller(key, runs)}
        await self.manager.handle_request(scope, receive, send)


async def _authenticate(services: Services, scope: Scope) -> ApiKeyRecord | None:
    header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return await authenticate(services, token.strip())
