"""One MCP server's client session: started on first use, shared by every run, restarted after
it dies, closed at server shutdown.

The MCP SDK's transports and `ClientSession` are anyio context managers that own task groups, so
they must be entered and exited by the same task. Each session therefore lives in a task of its
own (`_own`), which opens it, hands it over and then only waits to be told to close it; runs send
their requests through the session from their own tasks (the session correlates concurrent
requests), so one slow tool call does not hold up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT, CallToolResult, PaginatedRequestParams, Tool

from mcp import ClientSession
from noukai_server.mcp.config import McpServerConfig

logger = logging.getLogger("noukai_server.mcp")
_CLOSE_SECONDS = 10.0
"""How long shutdown waits for a session to wind down (the SDK stops a stdio server in ~2 s)."""


class McpFailure(Exception):
    """The server could not be reached or did not answer; the message names the server."""


@dataclass(slots=True)
class _Session:
    session: ClientSession
    tools: list[Tool]
    stop: asyncio.Event
    task: asyncio.Task[None] | None = field(default=None)


class McpConnection:
    def __init__(self, config: McpServerConfig) -> None:
        self.config = config
        self._lock = asyncio.Lock()
        self._current: _Session | None = None
        self._owners: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def name(self) -> str:
        return self.config.name

    async def tools(self) -> Sequence[Tool]:
        """The server's tools, listed once per session (starting the server if needed)."""
        return (await self._session()).tools

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        """Call a tool under the server's timeout; raises `McpFailure` when there is no answer.
        An error *result* (`isError`) is returned, not raised."""
        current = await self._session()
        timeout = self.config.timeout_seconds
        try:
            return await current.session.call_tool(tool, arguments, read_timeout_seconds=timeout)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                # The process died or the connection dropped: this call fails, the next one
                # starts a fresh session.
                self._retire(current)
                raise McpFailure(
                    f"MCP server {self.name!r} closed the connection during {tool} (it stopped?); "
                    "it is restarted on the next call"
                ) from exc
            if exc.code == REQUEST_TIMEOUT:
                raise McpFailure(
                    f"MCP server {self.name!r} did not answer {tool} within {timeout:g} s"
                ) from exc
            raise McpFailure(f"MCP server {self.name!r} refused {tool}: {exc.message}") from exc
        except Exception as exc:
            # Transport failures arrive as MCPError above; what is left is the SDK refusing the
            # answer (structured content that does not fit the tool's output schema): the
            # session itself is fine.
            raise McpFailure(
                f"MCP server {self.name!r} gave an unusable answer to {tool}: {_describe(exc)}"
            ) from exc

    async def aclose(self) -> None:
        """Close the session (stopping a stdio server); later calls fail."""
        async with self._lock:
            self._closed = True
            if self._current is not None:
                self._retire(self._current)
        owners = list(self._owners)
        if not owners:
            return
        _, pending = await asyncio.wait(owners, timeout=_CLOSE_SECONDS)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _session(self) -> _Session:
        # The lock makes concurrent first uses share one start instead of racing several.
        async with self._lock:
            if self._closed:
                raise McpFailure(f"MCP server {self.name!r} is closed (the server is shutting down)")
            current = self._current
            if current is not None and current.task is not None and not current.task.done():
                return current
            self._current = await self._start()
            return self._current

    async def _start(self) -> _Session:
        ready: asyncio.Future[_Session] = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        task = asyncio.create_task(self._own(ready, stop), name=f"mcp-server:{self.name}")
        self._owners.add(task)
        task.add_done_callback(self._owners.discard)
        try:
            started = await ready
        except asyncio.CancelledError:
            # The caller gave up waiting (its run was cancelled or timed out): nobody will use
            # this session, so stop starting it; the SDK still stops the process on the way out.
            task.cancel()
            raise
        except McpFailure:
            raise
        except Exception as exc:
            raise McpFailure(f"MCP server {self.name!r} did not start: {_describe(exc)}") from exc
        started.task = task
        logger.info(
            "MCP server %s started (%s, %d tools)", self.name, self.config.transport, len(started.tools)
        )
        return started

    async def _own(self, ready: asyncio.Future[_Session], stop: asyncio.Event) -> None:
        try:
            async with self._open() as session:
                with anyio.fail_after(self.config.timeout_seconds):
                    await session.initialize()
                    tools = await _list_tools(session)
                if ready.cancelled():  # the caller gave up in the same instant; our cancel is due
                    return
                ready.set_result(_Session(session, tools, stop))
                await stop.wait()
        except Exception as exc:  # the transport may raise anything, often as an ExceptionGroup
            if isinstance(_innermost(exc), TimeoutError) and not ready.done():
                # Only the start is under `fail_after`: a timeout is that, however wrapped.
                exc = McpFailure(
                    f"MCP server {self.name!r} did not start within "
                    f"{self.config.timeout_seconds:g} s (timeout_seconds)"
                )
            _fail(ready, exc, self.name)

    @contextlib.asynccontextmanager
    async def _open(self) -> AsyncIterator[ClientSession]:
        config = self.config
        async with contextlib.AsyncExitStack() as stack:
            if config.command is not None:
                parameters = StdioServerParameters(
                    command=config.command, args=list(config.args), env=dict(config.env) or None
                )
                read, write = await stack.enter_async_context(stdio_client(parameters))
            else:
                assert config.url is not None  # McpServerConfig has exactly one of the two
                client = await stack.enter_async_context(create_mcp_http_client(headers=dict(config.headers)))
                read, write = await stack.enter_async_context(
                    streamable_http_client(config.url, http_client=client)
                )
            yield await stack.enter_async_context(ClientSession(read, write))

    def _retire(self, current: _Session) -> None:
        current.stop.set()
        if self._current is current:
            self._current = None


async def _list_tools(session: ClientSession) -> list[Tool]:
    result = await session.list_tools()
    tools = list(result.tools)
    while result.next_cursor is not None:
        result = await session.list_tools(params=PaginatedRequestParams(cursor=result.next_cursor))
        tools.extend(result.tools)
    return tools


def _fail(ready: asyncio.Future[_Session], exc: BaseException, name: str) -> None:
    if not ready.done():
        ready.set_exception(exc)
    else:  # a session that had started and then broke: the next use starts another
        logger.warning("MCP server %s session ended: %s", name, _describe(exc))


def _innermost(exc: BaseException) -> BaseException:
    """The first real error inside the ExceptionGroups that task groups wrap errors in."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    """The first real error, as `Type: message`."""
    exc = _innermost(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
