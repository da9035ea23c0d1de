"""What the Redis bus tests share: a private redis-server that a test may kill and restart, free
ports, bounded waits on conditions, and reading a subscription until it holds enough."""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from noukai_server.bus import LogEvent, Subscription

HANG_GUARD = 15.0
"""Seconds a test may wait for something that should come at once: a guard against hangs, far
longer than a busy machine needs, never the measure being tested."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class PrivateRedis:
    """A redis-server of the test's own, without persistence, on a port of its own."""

    def __init__(self, executable: str, directory: Path) -> None:
        self._executable = executable
        self._directory = directory
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [self._executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self._directory)]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + HANG_GUARD
        while not _port_open(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the private redis-server on port {self.port} did not start")
            time.sleep(0.01)

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


def redis_server_executable() -> str:
    """The redis-server binary; skips loudly without it, and fails under CI=true."""
    found = shutil.which("redis-server")
    if found is not None:
        return found
    message = "redis-server is not installed (needed to simulate a Redis outage)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    print(f"\n*** SKIPPING: {message} ***")
    pytest.skip(f"SKIPPED LOUDLY: {message}")


async def until(check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = HANG_GUARD) -> None:
    """Wait for `check` to hold, asking every 10 ms; fail naming `what` after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        held = check()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def receive(subscription: Subscription, count: int, timeout: float = HANG_GUARD) -> list[LogEvent]:
    """What the subscription gets until it holds at least `count` events (fails if fewer come in
    time); any more that came in the same burst are returned too, for the caller to notice."""
    received: list[LogEvent] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(received) < count:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0 or not await subscription.wait(left):
            pytest.fail(f"got {len(received)} of {count} events: {[e.seq for e in received]}")
        received.extend(subscription.take_nowait())
    return received


async def receive_through(
    subscription: Subscription, seq: int, timeout: float = HANG_GUARD
) -> list[LogEvent]:
    """What the subscription gets until an event with `seq` (or later) comes."""
    received: list[LogEvent] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while not received or received[-1].seq < seq:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0 or not await subscription.wait(left):
            pytest.fail(f"no event {seq} came; got {[e.seq for e in received]}")
        received.extend(subscription.take_nowait())
    return received


class FreezingProxy:
    """A TCP proxy in front of a Redis that can go silent: while frozen it forwards nothing either
    way and keeps every connection open, as a dead route or a frozen host would. New connections
    are accepted and then starved too."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        pumps = [
            asyncio.create_task(self._pump(client_reader, server_writer)),
            asyncio.create_task(self._pump(server_reader, client_writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            self._tasks.difference_update(pumps)
            client_writer.close()
            server_writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self._flowing.wait()
            writer.write(data)
            await writer.drain()
