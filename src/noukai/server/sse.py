"""Server-sent events: frames written as pre-encoded bytes (LF only), `: ping` heartbeats while
nothing happens, an optional `retry:` hint, and a capped stream lifetime.

Frames come straight from `LogEvent.frame`, built once per event; nothing is re-serialised per
stream. Responses are never compressed (compression would buffer events).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass

from starlette.responses import StreamingResponse

from noukai.bus import LogEvent
from noukai.runtime.follow import RunEnded, RunEventFollower

PING = b": ping\n\n"
SSE_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",  # tell nginx-style proxies not to buffer
    "Connection": "keep-alive",
}


@dataclass(frozen=True, slots=True)
class StreamPolicy:
    heartbeat_seconds: float = 15.0
    max_lifetime_seconds: float | None = None
    """Close a healthy stream after this long, so clients exercise their resume path."""
    retry_ms: int | None = None
    stop_after: Collection[str] = ()
    """Event types after which the stream ends (the segment's or run's last event)."""
    types: Collection[str] | None = None
    """Only these event types are written (None: all)."""


def sse_response(stream: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


async def follow_frames(
    follower_factory: Callable[[], RunEventFollower], policy: StreamPolicy
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + policy.max_lifetime_seconds if policy.max_lifetime_seconds else None
    if policy.retry_ms is not None:
        yield b"retry: %d\n\n" % policy.retry_ms
    async with follower_factory() as follower:
        while True:
            wait = policy.heartbeat_seconds
            if deadline is not None:
                wait = min(wait, deadline - loop.time())
                if wait <= 0:
                    return  # planned close: the client resumes with Last-Event-ID
            try:
                event = await follower.next(wait)
            except RunEnded:
                return
            if event is None:
                if deadline is None or loop.time() < deadline:
                    yield PING
                continue
            if _wanted(event, policy):
                yield event.frame
            if event.type in policy.stop_after:
                return


def _wanted(event: LogEvent, policy: StreamPolicy) -> bool:
    return policy.types is None or event.type in policy.types
