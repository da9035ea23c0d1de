"""A fake OpenAI + Anthropic HTTP server on loopback, for tests that drive the real SDKs.

It speaks just enough of both wire formats (streamed and not) for the official SDKs to be used
unmodified, and answers from a queue of scripted replies::

    with FakeProvider() as fake:
        fake.script(Reply(chunks=["Hel", "lo"], usage=(3, 2)))
        client = OpenAIChatClient(api_key=fake.api_key, base_url=fake.openai_base_url)
        ...
        assert fake.requests[0].body["model"] == "gpt-4o-mini"

With the queue empty it echoes the last user message word by word. A request with the wrong key
gets a 401 in the provider's error shape; the OpenAI one quotes the key *in full* (the real API
masks part of it), so that tests can check that no error message of ours leaks it.

The server runs uvicorn in a daemon thread, so it serves sync and async tests alike and its event
loop never competes with the test's.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["FakeProvider", "FakeToolCall", "ReceivedRequest", "Reply"]

Api = Literal["openai", "anthropic"]

_WORD = re.compile(r"\s*\S+\s*|\s+")


@dataclass(frozen=True)
class FakeToolCall:
    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    """A dict is JSON-encoded; a string is sent as is (to script malformed arguments)."""
    id: str | None = None

    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass(frozen=True)
class Reply:
    """One scripted answer. Every chunk, reasoning chunk and tool-call piece is its own SSE event."""

    chunks: Sequence[str] = ()
    reasoning: Sequence[str] = ()
    """Streamed before the text: OpenAI `delta.<reasoning_field>`, Anthropic `thinking_delta`."""
    tool_calls: Sequence[FakeToolCall] = ()
    usage: tuple[int, int] | None = None
    """(prompt, completion) tokens; by default words of the request and number of chunks."""
    status: int = 200
    """400 or more: answer with the provider's error body and this status instead of a stream."""
    error_message: str = "scripted failure"
    stream_error: int | None = None
    """After the chunks, an error event *inside* the 200 stream, of the kind this status means."""
    disconnect: bool = False
    """After the chunks, drop the connection without finishing the stream."""
    delay: float = 0.0
    """Seconds to wait before each streamed chunk (headers go out at once)."""
    finish_reason: str | None = None
    """Sent as is; by default stop/tool_calls (OpenAI) or end_turn/tool_use (Anthropic)."""
    reasoning_field: str = "reasoning_content"
    raw: bytes | None = None
    """Sent verbatim as a 200 `text/event-stream` body, for malformed-stream tests."""

    @classmethod
    def text(cls, text: str, **options: Any) -> Reply:
        """A reply streaming `text` one word (with its surrounding whitespace) per chunk."""
        return cls(chunks=_WORD.findall(text), **options)


@dataclass
class ReceivedRequest:
    api: Api
    path: str
    headers: Mapping[str, str]
    """Lower-cased header names."""
    body: dict[str, Any]
    aborted: threading.Event = field(default_factory=threading.Event)
    """Set when the client went away before the stream ended (early close, cancellation)."""


class _ScriptedDisconnect(Exception):
    """Raised inside a streaming body to make uvicorn drop the connection (`Reply.disconnect`)."""


class _QuietScriptedDisconnects(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _ScriptedDisconnect))


_OPENAI_ERRORS: Mapping[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERRORS: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _openai_error(status: int, message: str) -> dict[str, Any]:
    kind, code = _OPENAI_ERRORS.get(status, ("server_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _anthropic_error(status: int, message: str) -> dict[str, Any]:
    kind = _ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or a list of parts/blocks with `text`."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _last_user_text(body: Mapping[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _prompt_words(body: Mapping[str, Any]) -> int:
    texts = [_text_of(body.get("system"))]
    texts += [_text_of(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict)]
    return sum(len(text.split()) for text in texts)


def _usage(reply: Reply, body: Mapping[str, Any]) -> tuple[int, int]:
    if reply.usage is not None:
        return reply.usage
    return _prompt_words(body), len(reply.chunks) + len(reply.reasoning) + len(reply.tool_calls)


def _halves(text: str) -> list[str]:
    """Tool arguments in two pieces, so clients have to accumulate them."""
    middle = len(text) // 2
    return [piece for piece in (text[:middle], text[middle:]) if piece]


def _sse(data: Any, event: str | None = None) -> bytes:
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {json.dumps(data)}\n\n".encode()


# A frame and whether `Reply.delay` is waited before it (only for content, not bookkeeping).
Frame = tuple[bytes, bool]


def _openai_frames(reply: Reply, body: Mapping[str, Any], n: int) -> list[Frame]:
    base = {"id": f"chatcmpl-fake{n}", "object": "chat.completion.chunk", "created": int(time.time())}
    base["model"] = body.get("model", "fake")

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    frames: list[Frame] = [(chunk({"role": "assistant", "content": ""}), False)]
    frames += [(chunk({reply.reasoning_field: piece}), True) for piece in reply.reasoning]
    frames += [(chunk({"content": piece}), True) for piece in reply.chunks]
    for index, call in enumerate(reply.tool_calls):
        head = {"index": index, "id": call.id or f"call_fake_{index}", "type": "function"}
        head["function"] = {"name": call.name, "arguments": ""}
        frames.append((chunk({"tool_calls": [head]}), True))
        for piece in _halves(call.arguments_json()):
            part = {"index": index, "function": {"arguments": piece}}
            frames.append((chunk({"tool_calls": [part]}), True))
    if reply.disconnect:
        return frames
    if reply.stream_error is not None:
        error = _openai_error(reply.stream_error, reply.error_message)
        return [*frames, (_sse(error), True)]
    finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    frames.append((chunk({}, finish), False))
    if (body.get("stream_options") or {}).get("include_usage"):
        prompt, completion = _usage(reply, body)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        frames.append((_sse({**base, "choices": [], "usage": usage}), False))
    frames.append((b"data: [DONE]\n\n", False))
    return frames


def _anthropic_frames(reply: Reply, body: Mapping[str, Any], n: int) -> list[Frame]:
    prompt, completion = _usage(reply, body)
    message = {
        "id": f"msg_fake{n}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "fake"),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": 1},
    }
    frames: list[Frame] = [
        (_sse({"type": "message_start", "message": message}, "message_start"), False),
        (_sse({"type": "ping"}, "ping"), False),
    ]
    index = 0

    def block(start: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
        nonlocal index
        frames.append(
            (
                _sse(
                    {"type": "content_block_start", "index": index, "content_block": start},
                    "content_block_start",
                ),
                False,
            )
        )
        for delta in deltas:
            event = {"type": "content_block_delta", "index": index, "delta": delta}
            frames.append((_sse(event, "content_block_delta"), True))
        frames.append((_sse({"type": "content_block_stop", "index": index}, "content_block_stop"), False))
        index += 1

    if reply.reasoning:
        thinking = [{"type": "thinking_delta", "thinking": piece} for piece in reply.reasoning]
        thinking.append({"type": "signature_delta", "signature": "fake-signature"})
        block({"type": "thinking", "thinking": "", "signature": ""}, thinking)
    if reply.chunks:
        block({"type": "text", "text": ""}, [{"type": "text_delta", "text": piece} for piece in reply.chunks])
    for number, call in enumerate(reply.tool_calls):
        start = {"type": "tool_use", "id": call.id or f"toolu_fake_{number}", "name": call.name, "input": {}}
        pieces = _halves(call.arguments_json())
        block(start, [{"type": "input_json_delta", "partial_json": piece} for piece in pieces])
    if reply.disconnect:
        return frames
    if reply.stream_error is not None:
        error = _anthropic_error(reply.stream_error, reply.error_message)
        return [*frames, (_sse(error, "error"), True)]
    stop = reply.finish_reason or ("tool_use" if reply.tool_calls else "end_turn")
    delta = {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}}
    delta["usage"] = {"output_tokens": completion}
    frames.append((_sse(delta, "message_delta"), False))
    frames.append((_sse({"type": "message_stop"}, "message_stop"), False))
    return frames


def _openai_completion(reply: Reply, body: Mapping[str, Any], n: int) -> dict[str, Any]:
    prompt, completion = _usage(reply, body)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(reply.chunks) or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id or f"call_fake_{index}",
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json()},
            }
            for index, call in enumerate(reply.tool_calls)
        ]
    finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    return {
        "id": f"chatcmpl-fake{n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def _anthropic_message(reply: Reply, body: Mapping[str, Any], n: int) -> dict[str, Any]:
    prompt, completion = _usage(reply, body)
    content: list[dict[str, Any]] = []
    if reply.chunks:
        content.append({"type": "text", "text": "".join(reply.chunks)})
    for number, call in enumerate(reply.tool_calls):
        arguments = json.loads(call.arguments_json())
        content.append(
            {
                "type": "tool_use",
                "id": call.id or f"toolu_fake_{number}",
                "name": call.name,
                "input": arguments,
            }
        )
    return {
        "id": f"msg_fake{n}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "fake"),
        "content": content,
        "stop_reason": reply.finish_reason or ("tool_use" if reply.tool_calls else "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": completion},
    }


class FakeProvider:
    """The fake server. Use as a context manager, or `start()` / `stop()`."""

    def __init__(self, api_key: str | None = "sk-test") -> None:
        """`api_key=None` accepts any key."""
        self.api_key = api_key
        self.requests: list[ReceivedRequest] = []
        self._replies: collections.deque[Reply] = collections.deque()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._openai, methods=["POST"]),
                Route("/v1/messages", self._anthropic, methods=["POST"]),
            ]
        )

    # -- public API ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    def script(self, *replies: Reply | str) -> None:
        """Queue replies, answered in order by either endpoint; a string is `Reply.text(string)`."""
        self._replies.extend(Reply.text(r) if isinstance(r, str) else r for r in replies)

    @property
    def pending(self) -> int:
        """Scripted replies not used yet."""
        return len(self._replies)

    def clear(self) -> None:
        """Forget received requests and unused replies (to share one server between tests)."""
        self.requests.clear()
        self._replies.clear()

    def start(self) -> FakeProvider:
        logging.getLogger("uvicorn.error").addFilter(_QUIET)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            log_config=None,
            access_log=False,
            loop="asyncio",
            http="h11",
            ws="none",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-provider", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake provider did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        # force_exit: do not wait for slow scripted streams still in flight.
        self._server.should_exit = True
        self._server.force_exit = True
        self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- request handling ---------------------------------------------------------------------

    @staticmethod
    def _presented_key(api: Api, headers: Mapping[str, str]) -> str:
        # Anthropic's API takes `x-api-key`, but its SDK 2.x sends keys as a Bearer token too.
        if api == "anthropic" and "x-api-key" in headers:
            return headers["x-api-key"]
        return headers.get("authorization", "").removeprefix("Bearer ")

    def _authorized(self, api: Api, headers: Mapping[str, str]) -> bool:
        return self.api_key is None or self._presented_key(api, headers) == self.api_key

    async def _openai(self, request: Request) -> Response:
        return await self._handle("openai", request)

    async def _anthropic(self, request: Request) -> Response:
        return await self._handle("anthropic", request)

    def _error(self, api: Api, status: int, message: str, n: int) -> Response:
        if api == "openai":
            return JSONResponse(
                _openai_error(status, message), status, headers={"x-request-id": f"req_fake{n}"}
            )
        return JSONResponse(_anthropic_error(status, message), status, headers={"request-id": f"req_fake{n}"})

    async def _handle(self, api: Api, request: Request) -> Response:
        headers = {name.lower(): value for name, value in request.headers.items()}
        n = len(self.requests) + 1
        try:
            body = json.loads(await request.body())
        except ValueError:
            return self._error(api, 400, "the request body is not valid JSON", n)
        record = ReceivedRequest(api=api, path=request.url.path, headers=headers, body=body)
        self.requests.append(record)
        if not self._authorized(api, headers):
            if api == "openai":
                message = f"Incorrect API key provided: {self._presented_key(api, headers)}."
            else:
                message = "invalid x-api-key"
            return self._error(api, 401, message, n)

        reply = self._replies.popleft() if self._replies else Reply.text(_last_user_text(body))
        if reply.status >= 400:
            return self._error(api, reply.status, reply.error_message, n)
        if reply.raw is not None:
            return Response(reply.raw, media_type="text/event-stream")
        if not body.get("stream"):
            build = _openai_completion if api == "openai" else _anthropic_message
            return JSONResponse(build(reply, body, n))
        frames = (_openai_frames if api == "openai" else _anthropic_frames)(reply, body, n)
        return StreamingResponse(_pace(frames, reply, record), media_type="text/event-stream")


async def _pace(frames: list[Frame], reply: Reply, record: ReceivedRequest) -> AsyncIterator[bytes]:
    finished = False
    try:
        for frame, paced in frames:
            if paced and reply.delay:
                await asyncio.sleep(reply.delay)
            yield frame
        finished = True
        if reply.disconnect:
            raise _ScriptedDisconnect
    finally:
        if not finished:
            record.aborted.set()


_QUIET = _QuietScriptedDisconnects()
