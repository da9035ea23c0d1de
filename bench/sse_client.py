"""A deliberately small HTTP/1.1 client for SSE streams, on an asyncio `Protocol`.

The load generator must cost far less CPU than the servers it measures, floor included. So the
response is parsed synchronously in `data_received` (status line, headers, chunked framing, SSE
frames), events are counted there, and the waiting coroutine is woken only twice: at the first
event and at the end. Only the `event:` field of a frame is read; `data:` is kept (as bytes) for the
first and the last event only. One connection per request (`Connection: close`).

Lines may end in "\n" (Noukai, the floor) or "\r\n" (LangGraph's server): "\r\n" is turned into "\n"
as the text arrives. A stream whose server says nothing at the end (LangGraph's) can be read with
`close_is_terminal`: then a clean end of the response (the last chunk of a chunked body, or the
server closing a body of no stated length) after at least one event is the terminal event, `CLOSE`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from dataclasses import dataclass, field

CLOSE = "(close)"
"""The terminal event's type for a stream that ended cleanly, read with `close_is_terminal`."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class SseEvent:
    type: str
    data: bytes
    at: float
    """`time.perf_counter()` when the frame had arrived."""


@dataclass(slots=True)
class StreamSummary:
    first: SseEvent | None = None
    terminal: SseEvent | None = None
    """None when the stream ended without a terminal event."""
    last_at: float = 0.0
    events: int = 0
    tokens: int = 0
    times: list[tuple[int, float]] | None = None
    """With `keep_times`: (the frame's `id:`, its arrival time) for every event that has an id."""


class HttpError(Exception):
    pass


def encode_request(host: str, port: int, request: HttpRequest) -> bytes:
    lines = [f"{request.method} {request.path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    if request.body or request.method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(request.body)}")
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body


def _frame_field(frame: bytes, name: bytes) -> bytes | None:
    """The value of field `name` (b"\\nevent:") in `frame`, or None. A field starts a line, and no
    JSON `data:` value can hold a raw newline, so a match is always a real field."""
    start = frame.find(name)
    if start < 0:
        return None
    start += len(name)
    end = frame.find(b"\n", start)
    return frame[start : end if end >= 0 else len(frame)].strip()


class _SseProtocol(asyncio.Protocol):
    def __init__(
        self,
        request: bytes,
        token_type: str,
        terminal_types: Collection[str],
        stop_at_first: bool,
        close_is_terminal: bool = False,
        keep_times: bool = False,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.summary = StreamSummary(times=[] if keep_times else None)
        self.done: asyncio.Future[StreamSummary] = loop.create_future()
        self._request = request
        self._token = token_type.encode()
        # The common frame, found with one substring search (fields as Noukai and sse-starlette
        # write them: "event: TYPE" on its own line).
        self._token_line = b"\nevent: " + self._token + b"\n"
        self._terminal = {t.encode() for t in terminal_types}
        self._stop_at_first = stop_at_first
        self._close_is_terminal = close_is_terminal
        self._transport: asyncio.Transport | None = None
        self._head = b""
        self._in_body = False
        self._status = 0
        self._chunked = False
        self._complete = False  # the last (empty) chunk of a chunked body has arrived
        self._raw = b""  # body bytes not yet de-chunked
        self._sse = b"\n"  # de-chunked SSE text; starts with "\n" so every field follows one

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they write all the same.
        self._transport = transport  # type: ignore[assignment]
        transport.write(self._request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return  # read to the end already (what may follow is the body's last "\r\n")
        if not self._in_body:
            self._head += data
            if b"\r\n\r\n" not in self._head:
                return
            head, data = self._head.split(b"\r\n\r\n", 1)
            self._in_body = True
            lines = head.decode("latin-1").split("\r\n")
            self._status = int(lines[0].split(" ", 2)[1])
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                    self._chunked = True
        if self._status != 200:
            self._raw += data  # the error body, reported when the connection ends
            return
        if self._chunked:
            self._raw += data
            self._dechunk()
        else:
            self._sse += data
        if b"\r" in self._sse:
            # A "\r" left alone at the end is the first half of a "\r\n": joined next time.
            self._sse = self._sse.replace(b"\r\n", b"\n")
        if b"\n\n" in self._sse:
            self._frames(time.perf_counter())
        if self._complete:
            self._body_ended()

    def _dechunk(self) -> None:
        raw, position, parts = self._raw, 0, [self._sse]
        while True:
            line_end = raw.find(b"\r\n", position)
            if line_end < 0:
                break
            size = int(raw[position:line_end].split(b";", 1)[0], 16)
            if size == 0:
                position = len(raw)
                self._complete = True
                break
            if len(raw) < line_end + 2 + size + 2:
                break
            parts.append(raw[line_end + 2 : line_end + 2 + size])
            position = line_end + 2 + size + 2
        self._raw = raw[position:]
        self._sse = b"".join(parts)

    def _frames(self, now: float) -> None:
        *frames, rest = self._sse.split(b"\n\n")
        self._sse = b"\n" + rest
        summary = self.summary
        for index, frame in enumerate(frames):
            if index:
                frame = b"\n" + frame
            if summary.times is not None:  # off the fast path: only the lag measurement keeps times
                event_id = _frame_field(frame, b"\nid:")
                if event_id is not None and event_id.isdigit():
                    summary.times.append((int(event_id), now))
            if summary.first is not None and self._token_line in frame:
                summary.events += 1
                summary.tokens += 1
                summary.last_at = now
                continue
            kind = _frame_field(frame, b"\nevent:")
            if kind is None:
                if b"\ndata:" not in frame:
                    continue  # a comment (": ping") or a "retry:" hint
                kind = b"message"
            summary.events += 1
            summary.last_at = now
            if kind == self._token:
                summary.tokens += 1
            first = summary.first is None
            terminal = kind in self._terminal
            if first or terminal:
                event = SseEvent(kind.decode(), _frame_field(frame, b"\ndata:") or b"", now)
                if first:
                    summary.first = event
                if terminal:
                    summary.terminal = event
                if terminal or self._stop_at_first:
                    self._finish()
                    return

    def _finish(self, error: BaseException | None = None) -> None:
        if self.done.done():
            return
        if self._transport is not None:
            self._transport.close()
        if error is not None:
            self.done.set_exception(error)
        else:
            self.done.set_result(self.summary)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._status and self._status != 200:
            self._finish(HttpError(f"HTTP {self._status}: {self._raw[:300]!r}"))
        elif exc is not None:
            self._finish(exc)
        elif not self._in_body:
            self._finish(HttpError("connection closed before the response head"))
        elif not self._chunked:
            self._body_ended()  # a body of no stated length ends when the server closes
        else:
            self._finish()  # cut short: no terminal event

    def _body_ended(self) -> None:
        summary = self.summary
        if self._close_is_terminal and summary.terminal is None and summary.events:
            # `last_at` stays the last event's time; the end's own is the terminal's `at`.
            summary.terminal = SseEvent(CLOSE, b"", time.perf_counter())
        self._finish()


async def read_stream(
    host: str,
    port: int,
    request: HttpRequest,
    *,
    token_type: str,
    terminal_types: Collection[str],
    stop_at_first: bool = False,
    close_is_terminal: bool = False,
    keep_times: bool = False,
) -> StreamSummary:
    """Send `request`, read its SSE response to a terminal event (or to the first event with
    `stop_at_first`), close the connection. Raises `HttpError` for a non-200 answer."""
    loop = asyncio.get_running_loop()
    protocol = _SseProtocol(
        encode_request(host, port, request),
        token_type,
        terminal_types,
        stop_at_first,
        close_is_terminal,
        keep_times,
    )
    transport, _ = await loop.create_connection(lambda: protocol, host, port)
    try:
        return await protocol.done
    finally:
        transport.close()


async def http_get_status(host: str, port: int, path: str) -> int:
    """Status of a plain GET (used to wait for health)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(encode_request(host, port, HttpRequest("GET", path)))
        status_line = await reader.readline()
        return int(status_line.split(b" ", 2)[1])
    finally:
        writer.close()
