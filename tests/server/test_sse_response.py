"""`SseResponse`: streams chunks as they come, and stops (closing its stream) the moment the client
goes away, since the server silently drops writes to a closed connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from starlette.types import Message

from noukai_server.api.sse import SseResponse

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Stream:
    def __init__(self, chunks: int | None) -> None:
        self.chunks = chunks
        self.closed = False

    async def frames(self) -> AsyncIterator[bytes]:
        try:
            n = 0
            while self.chunks is None or n < self.chunks:
                n += 1
                yield b"data: %d\n\n" % n
                await asyncio.sleep(0.01)
        finally:
            self.closed = True


async def test_the_stream_ends_when_the_client_goes_away() -> None:
    stream = Stream(None)  # would never end by itself
    sent: list[Message] = []
    gone = asyncio.Event()

    async def receive() -> Message:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    response = SseResponse(stream.frames())
    call = asyncio.create_task(response({"type": "http"}, receive, send))
    await asyncio.sleep(0.1)
    assert not call.done()
    gone.set()
    await asyncio.wait_for(call, 30)  # returns normally: the client's leaving is not an error
    assert stream.closed
    assert sent[0]["type"] == "http.response.start"
    assert (b"content-type", b"text/event-stream; charset=utf-8") in sent[0]["headers"]
    assert len(sent) > 3


async def test_a_finished_stream_completes_the_response() -> None:
    stream = Stream(3)
    sent: list[Message] = []

    async def receive() -> Message:
        await asyncio.Event().wait()  # the client stays
        raise AssertionError

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(SseResponse(stream.frames())({"type": "http"}, receive, send), 1)
    assert [m.get("body") for m in sent[1:]] == [b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n", b""]
    assert sent[-1]["more_body"] is False
    assert stream.closed


async def test_a_cancelled_server_task_stays_cancelled() -> None:
    stream = Stream(None)

    async def receive() -> Message:
        await asyncio.Event().wait()
        raise AssertionError

    async def send(message: Message) -> None:
        pass

    call = asyncio.create_task(SseResponse(stream.frames())({"type": "http"}, receive, send))
    await asyncio.sleep(0.05)
    call.cancel()  # shutdown, not a disconnect: the cancellation propagates
    with pytest.raises(asyncio.CancelledError):
        await call
    assert stream.closed


async def test_a_shutdown_ends_the_stream_with_a_proper_end_of_the_response() -> None:
    from noukai_server.api.sse import StreamDrain

    stream = Stream(None)
    sent: list[Message] = []
    drain = StreamDrain()

    async def receive() -> Message:
        await asyncio.Event().wait()  # the client stays
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    call = asyncio.create_task(SseResponse(stream.frames(), drain)({"type": "http"}, receive, send))
    await asyncio.sleep(0.1)
    assert not call.done()
    drain.close_all()
    await asyncio.wait_for(call, 30)  # returns normally
    assert stream.closed
    bodies = [message for message in sent if message["type"] == "http.response.body"]
    assert bodies[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert all(message["body"].endswith(b"\n\n") for message in bodies[:-1])  # whole frames only
    # A stream that starts after the shutdown began ends at once.
    late: list[Message] = []

    async def send_late(message: Message) -> None:
        late.append(message)

    await asyncio.wait_for(SseResponse(Stream(None).frames(), drain)({"type": "http"}, receive, send_late), 5)
    assert late[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
