"""Helpers shared by the provider tests."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

from noukai_server.providers import ChatMessage, ModelClient, ModelEvent, ModelRequest, ModelResponse


def user(text: str, model: str = "fake-model", **request_fields: object) -> ModelRequest:
    """A request with one user message."""
    return ModelRequest(model=model, messages=(ChatMessage("user", text),), **request_fields)  # type: ignore[arg-type]


async def collect(client: ModelClient, request: ModelRequest) -> tuple[list[ModelEvent], ModelResponse]:
    """Every delta of one call, and its final response (checked to be last and unique)."""
    events = [event async for event in client.stream(request)]
    assert events, "a stream must end with a ModelResponse"
    *deltas, last = events
    assert isinstance(last, ModelResponse)
    assert not any(isinstance(event, ModelResponse) for event in deltas)
    return deltas, last


async def consume(stream: AsyncIterator[ModelEvent], into: list[ModelEvent]) -> None:
    """Append every event of `stream` to `into`, so a test can inspect what came before an error."""
    async for event in stream:
        into.append(event)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
