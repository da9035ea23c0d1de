"""Server-sent events: frames written as pre-encoded bytes (LF only), `: ping` heartbeats while
nothing happens, an optional `retry:` hint, and a capped stream lifetime.

Frames come straight from `LogEvent.frame`, built once per event; nothing is re-serialised per
stream, and the events that are ready together go out as one chunk (one write). Responses are
never compressed (compression would buffer events).

A process that is shutting down ends its open streams cleanly (`StreamDrain`): after the last whole
frame, the response is finished like a planned close, so clients resume elsewhere with
`Last-Event-ID` instead of holding the shutdown up (uvicorn waits for open responses) or being cut
off mid-frame when its graceful-shutdown timeout cancels them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from noukai_server.eventlog.follower import RunEnded, RunEventFollower
from noukai_server.store import StoreBusy
from noukai_server.telemetry import metrics

log = logging.getLogger(__name__)

PING = b": ping\n\n"
CHUNK_BYTES = 64 * 1024
"""A burst of events is written as one chunk, cut after the frame that reaches this size."""
SSE_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",  # tell nginx-style proxies not to buffer
    "Connection": "keep-alive",
}


@dataclass(frozen=True, slots=True)
class StreamPolicy:
    heartbeat_seconds: float = 15.0
    max_lifetime_seconds: float | None = None
    """Close a healthy stream after at most this long, so clients exercise their resume path."""
    lifetime_spread: float = 0.2
    """Each stream's planned close comes after a random part of the lifetime between
    `1 - lifetime_spread` and 1: thousands of streams opened together (a deploy, a client
    restart) then reconnect over a minute instead of all in the same second."""
    retry_ms: int | None = None
    stop_after: Collection[str] = ()
    """Event types after which the stream ends (the segment's or run's last event)."""
    types: Collection[str] | None = None
    """Only these event types are written (None: all)."""


class StreamDrain:
    """The shutdown signal of this process's streams: `close_all()` ends every open stream (and
    any started afterwards) at the next frame boundary, with a clean end of the response."""

    def __init__(self) -> None:
        self._closing = asyncio.Event()

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def close_all(self) -> None:
        self._closing.set()

    async def wait(self) -> None:
        await self._closing.wait()


class SseResponse(Response):
    """Streams `stream`'s chunks, and stops it as soon as the client goes away.

    Starlette's `StreamingResponse` watches for the disconnect in an anyio task group per
    response (uvicorn speaks ASGI 2.3, and silently drops writes to a closed connection, so the
    watching is needed); here one plain task does it and cancels the streaming task, which costs
    a fraction of a task group on every streamed run."""

    media_type = "text/event-stream"

    def __init__(self, stream: AsyncIterator[bytes], drain: StreamDrain | None = None) -> None:
        self.stream = stream
        self.drain = drain
        self.status_code = 200
        self.background = None
        self.raw_headers = list(_RAW_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.current_task()
        assert streaming is not None
        client_gone = closing = False

        async def watch() -> None:
            nonlocal client_gone
            while (await receive())["type"] != "http.disconnect":
                pass
            if not closing:
                client_gone = True
                streaming.cancel()

        async def close_on_shutdown(drain: StreamDrain) -> None:
            nonlocal closing
            await drain.wait()
            if not client_gone:
                closing = True
                streaming.cancel()

        watchers = [asyncio.create_task(watch())]
        if self.drain is not None:
            watchers.append(asyncio.create_task(close_on_shutdown(self.drain)))
        metrics.stream_opened()  # opens and closes only: nothing per event
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            # Cancelled between frames only: a chunk is whole frames, and uvicorn has written it
            # to the transport before `send` can be interrupted (waiting for the client to read).
            async for chunk in self.stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not (client_gone or closing):
                raise
            streaming.uncancel()  # our own cancellation: the stream simply ends
            if closing:  # shutting down: end the response properly, the client resumes elsewhere
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            metrics.stream_closed()
            for watcher in watchers:
                watcher.cancel()
            aclose = getattr(self.stream, "aclose", None)
            if aclose is not None:
                await aclose()  # unsubscribes the follower now, not when the generator is collected


def _raw_headers() -> list[tuple[bytes, bytes]]:
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in SSE_HEADERS.items()
    ]
    return [*headers, (b"content-type", b"text/event-stream; charset=utf-8")]


_RAW_HEADERS = _raw_headers()


def sse_response(stream: AsyncIterator[bytes], drain: StreamDrain | None = None) -> SseResponse:
    return SseResponse(stream, drain)


def planned_lifetime(policy: StreamPolicy, draw: Callable[[], float] = random.random) -> float | None:
    """How long this stream stays open before its planned close (None: until the run ends)."""
    if not policy.max_lifetime_seconds:
        return None
    return policy.max_lifetime_seconds * (1 - policy.lifetime_spread * draw())


async def follow_frames(
    follower_factory: Callable[[], RunEventFollower], policy: StreamPolicy
) -> AsyncIterator[bytes]:
    """The stream's bytes: one chunk per burst of events (a burst of tokens costs one write), cut
    at `CHUNK_BYTES`; nothing after the first `stop_after` event."""
    loop = asyncio.get_running_loop()
    lifetime = planned_lifetime(policy)
    deadline = loop.time() + lifetime if lifetime is not None else None
    types = policy.types
    stop_after = policy.stop_after
    if policy.retry_ms is not None:
        yield b"retry: %d\n\n" % policy.retry_ms
    try:
        async with follower_factory() as follower:
            while True:
                wait = policy.heartbeat_seconds
                if deadline is not None:
                    wait = min(wait, deadline - loop.time())
                    if wait <= 0:
                        return  # planned close: the client resumes with Last-Event-ID
                try:
                    batch = await follower.next_batch(wait)
                except RunEnded:
                    return
                if not batch:
                    if deadline is None or loop.time() < deadline:
                        yield PING
                    continue
                frames: list[bytes] = []
                size = 0
                for event in batch:
                    if types is None or event.type in types:
                        frames.append(event.frame)
                        size += len(event.frame)
                    if event.type in stop_after:
                        if frames:
                            yield _join(frames)
                        return
                    if size >= CHUNK_BYTES:
                        yield _join(frames)
                        frames = []
                        size = 0
                        if deadline is not None and loop.time() >= deadline:
                            return  # planned close in the middle of a long backlog
                if frames:
                    yield _join(frames)

    except StoreBusy as busy:
        # Out of database connections: end as a planned close, after whole frames; the client
        # resumes from its Last-Event-ID, most likely served by then.
        log.warning("ending a stream early: %s", busy)


def _join(frames: list[bytes]) -> bytes:
    return frames[0] if len(frames) == 1 else b"".join(frames)
