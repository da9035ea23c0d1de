"""A small real MCP server for the tests, built with the official SDK.

Run over stdio (`python -m tests.mcp.server`) or streamable HTTP
(`python -m tests.mcp.server --http PORT`, path `/mcp`). Its tools cover what the client must
handle: a plain result, a structured one, an error result, a slow call (timeouts) and the
process id (so a test can kill the server mid-run).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS

server = MCPServer(name="noukai-test", log_level="WARNING")


@server.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return text


@server.tool()
def fail(reason: str) -> str:
    """Always fails with the given reason."""
    raise ToolError(reason)


@server.tool()
def refuse() -> str:
    """Answers with a JSON-RPC error instead of a result."""
    raise MCPError(INVALID_PARAMS, "refused by policy")


@server.tool()
async def slow(seconds: float, started_file: str = "") -> str:
    """Sleep for the given number of seconds (first writing the process id to `started_file`, if
    given, so a test knows the call is under way and which process serves it)."""
    if started_file:
        with open(started_file + ".tmp", "w") as file:
            file.write(str(os.getpid()))
        os.replace(started_file + ".tmp", started_file)
    await asyncio.sleep(seconds)
    return f"slept {seconds:g}"


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool()
def header(name: str, ctx: Context[Any]) -> str:
    """The value of a request header (HTTP only): checks that configured headers arrive."""
    request: Any = ctx.request_context.request
    return "" if request is None else str(request.headers.get(name, ""))


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "--http":
        import uvicorn

        uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=int(argv[1]), log_level="warning")
    else:
        server.run("stdio")


if __name__ == "__main__":
    main(sys.argv[1:])
