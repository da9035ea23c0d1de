"""The test MCP server (`tests.mcp.server`) over both transports, and configs that point at it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from noukai_server.mcp.config import McpServerConfig
from tests.conftest import REPO_ROOT, free_port

STDIO_ARGS = ("-m", "tests.mcp.server")
START_GUARD = 30.0
"""Seconds the HTTP server may take to listen: a guard against hangs, not a measure."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def stdio_config(name: str = "local", *, timeout_seconds: float = 5.0) -> McpServerConfig:
    # PYTHONPATH: the SDK gives a stdio server only a few safe variables, and the test server is
    # imported from the repository root.
    return McpServerConfig(
        name=name,
        command=sys.executable,
        args=STDIO_ARGS,
        env={"PYTHONPATH": str(REPO_ROOT)},
        timeout_seconds=timeout_seconds,
    )


@pytest.fixture(scope="session")
def http_url() -> Iterator[str]:
    """The test server over streamable HTTP, in a uvicorn subprocess on a free loopback port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, *STDIO_ARGS, "--http", str(port)], cwd=REPO_ROOT, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + START_GUARD
        while True:
            assert process.poll() is None, "the HTTP MCP server exited at start"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the HTTP MCP server did not start listening"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=15)


def http_config(url: str, name: str = "remote", *, timeout_seconds: float = 5.0) -> McpServerConfig:
    return McpServerConfig(
        name=name, url=url, headers={"Authorization": "Bearer t0ken"}, timeout_seconds=timeout_seconds
    )


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a killed child is a zombie until reaped; /proc says which)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "zombie" not in status.read_text()
