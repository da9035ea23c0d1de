"""Fixtures for the SDK tests: clients pointed at the session's real server, and fake servers."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2
import pytest

import noukai
from tests.conftest import ServerProcess


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOUKAI_API_KEY", "NOUKAI_ENV", "NOUKAI_BASE_URL", "NOUKAI_REPLAY_ENABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def sdk_env(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> ServerProcess:
    """The README's zero-argument clients, pointed at the test server through the environment."""
    monkeypatch.setenv("NOUKAI_API_KEY", server.dev_key)
    monkeypatch.setenv("NOUKAI_BASE_URL", server.base_url)
    return server


@pytest.fixture
def client(server: ServerProcess) -> Iterator[noukai.Noukai]:
    with noukai.Noukai(api_key=server.dev_key, base_url=server.base_url, org="dev", project="main") as sdk:
        yield sdk


@pytest.fixture
async def aclient(server: ServerProcess) -> AsyncIterator[noukai.AsyncNoukai]:
    async with noukai.AsyncNoukai(
        api_key=server.dev_key, base_url=server.base_url, org="dev", project="main"
    ) as sdk:
        yield sdk


def new_slug(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def put_slow_flow(server: ServerProcess, *, words: int, delay_ms: float, steps: int = 1) -> str:
    """A flow of `steps` echo steps streaming `words` words `delay_ms` apart."""
    slug = new_slug("slow")
    text = " ".join(f"w{i}" for i in range(words))
    server.put_flow(
        server.dev_key,
        "dev",
        "main",
        {
            "slug": slug,
            "steps": [
                {
                    "id": f"s{n}",
                    "type": "llm",
                    "model": "builtin:echo",
                    "prompt": text,
                    "params": {"token_delay_ms": delay_ms},
                }
                for n in range(steps)
            ],
        },
    )
    return slug


Handler = Callable[[httpx2.Request], httpx2.Response]


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Request-ID": "req-1", **(headers or {})},
    )


def sse_response(
    frames: list[tuple[int | None, str, dict[str, Any]]], *, extra: bytes = b""
) -> httpx2.Response:
    """An SSE answer: `(id, event, data)` frames, LF framing, then `extra` raw bytes."""
    body = b""
    for seq, name, data in frames:
        if seq is not None:
            body += f"id: {seq}\n".encode()
        body += f"event: {name}\ndata: {json.dumps({'eventType': name, **data})}\n\n".encode()
    return httpx2.Response(200, content=body + extra, headers={"Content-Type": "text/event-stream"})


def fake_client(handler: Handler, **kwargs: Any) -> noukai.Noukai:
    kwargs.setdefault("api_key", "nk_test")
    kwargs.setdefault("base_url", "http://fake")
    kwargs.setdefault("org", "acme")
    kwargs.setdefault("project", "spell")
    return noukai.Noukai(http_client=httpx2.Client(transport=httpx2.MockTransport(handler)), **kwargs)


def fake_async_client(handler: Handler, **kwargs: Any) -> noukai.AsyncNoukai:
    kwargs.setdefault("api_key", "nk_test")
    kwargs.setdefault("base_url", "http://fake")
    kwargs.setdefault("org", "acme")
    kwargs.setdefault("project", "spell")
    return noukai.AsyncNoukai(
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)), **kwargs
    )


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the SDK's sleeps instead of sleeping."""
    from noukai._transport import AsyncTransport, SyncTransport

    delays: list[float] = []

    def fake_sleep(self: object, seconds: float) -> None:
        delays.append(seconds)

    async def fake_asleep(self: object, seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr(SyncTransport, "sleep", fake_sleep)
    monkeypatch.setattr(AsyncTransport, "sleep", fake_asleep)
    return delays


class ScriptedStream(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A response body that yields `chunks`, then raises `error` (a dropped connection)."""

    def __init__(self, chunks: list[bytes], error: Exception | None = None) -> None:
        self.chunks = chunks
        self.error = error

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.error is not None:
            raise self.error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.error is not None:
            raise self.error


def sse_frames(frames: list[tuple[int | None, str, dict[str, Any]]]) -> bytes:
    return sse_response(frames).content


def broken_sse(chunks: list[bytes], error: Exception | None = None) -> httpx2.Response:
    return httpx2.Response(
        200, stream=ScriptedStream(chunks, error), headers={"Content-Type": "text/event-stream"}
    )
