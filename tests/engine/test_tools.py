"""Server-side tools: schema from type hints, argument validation, timeouts, errors as text."""

from __future__ import annotations

import asyncio
import threading

import pytest

from noukai_server.engine.tools import ToolError, ToolRegistry, default_tools

pytestmark = pytest.mark.anyio


def test_schema_comes_from_type_hints() -> None:
    registry = ToolRegistry()

    def lookup(city: str, days: int = 3, metric: bool = True) -> str:
        """Weather for a city."""
        return city

    spec = registry.register(lookup).spec
    assert spec.name == "lookup" and spec.description == "Weather for a city."
    assert spec.parameters["required"] == ["city"]
    assert spec.parameters["properties"]["days"]["type"] == "integer"
    assert spec.parameters["properties"]["metric"]["default"] is True


def test_bad_names_and_signatures_are_refused() -> None:
    registry = ToolRegistry()
    with pytest.raises(ValueError, match="must match"):
        registry.register(lambda: 1, name="has.dot")
    registry.register(lambda: 1, name="one")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(lambda: 2, name="one")

    def variadic(*args: int) -> int:
        return 0

    with pytest.raises(TypeError, match="args"):
        registry.register(variadic)


async def test_call_validates_and_serialises() -> None:
    tools = default_tools()
    assert await tools.call("add", '{"a": 2, "b": 3.5}') == "5.5"
    assert await tools.call("word_count", '{"text": "a b c"}') == "3"
    with pytest.raises(ToolError, match="invalid arguments for add: b"):
        await tools.call("add", '{"a": 1}')
    with pytest.raises(ToolError, match="invalid arguments"):
        await tools.call("add", '{"a": 1, "b": 2, "c": 3}')
    with pytest.raises(ToolError, match="invalid arguments"):
        await tools.call("add", "not json")
    with pytest.raises(ToolError, match="no tool named"):
        await tools.call("nope", "{}")


async def test_errors_and_timeouts_become_tool_errors() -> None:
    registry = ToolRegistry()
    hang_guard = 30.0  # only against a hang: each timeout below is 0.05 s
    cancelled = False
    release = threading.Event()
    sync_returned = threading.Event()

    def boom() -> str:
        raise RuntimeError("kaput")

    async def slow() -> str:
        nonlocal cancelled
        try:
            await asyncio.sleep(600)
        except asyncio.CancelledError:
            cancelled = True
            raise
        return "late"

    def slow_sync() -> str:
        release.wait(hang_guard)  # blocks until the test lets it go
        sync_returned.set()
        return "late"

    registry.register(boom)
    registry.register(slow, timeout_seconds=0.05)
    registry.register(slow_sync, timeout_seconds=0.05)
    with pytest.raises(ToolError, match="boom raised RuntimeError: kaput"):
        await registry.call("boom", "{}")
    # A timeout that did not cancel the call would sit out the 600 s sleep: the guard trips.
    with pytest.raises(ToolError, match="timed out"):
        await asyncio.wait_for(registry.call("slow", "{}"), hang_guard)
    assert cancelled
    try:
        with pytest.raises(ToolError, match="timed out"):
            await asyncio.wait_for(registry.call("slow_sync", "{}"), hang_guard)
        # The call gave up on the thread rather than waiting for it to return.
        assert not sync_returned.is_set()
    finally:
        release.set()
