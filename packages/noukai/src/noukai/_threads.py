"""Threads: conversations whose history the server keeps (`client.threads`).

A run started with `thread_id=` (on `execute`, `events`, `steps` or `execute_async`) sees the
thread's history plus its own turn as `messages`; when it completes, the turn and the flow's answer
are appended to the thread. `client.threads.events(thread_id)` is one resumable stream across all
the thread's runs: every event comes as a `ThreadEvent` whose `id` (`"<runOrdinal>-<seq>"`) grows
across runs, so resuming after the last id seen loses and repeats nothing.

The stream's reconnect logic is the sans-I/O `ThreadStreamMachine`, driven by one thin sync loop
and one thin async loop (as `_reconnect.StreamMachine` for a run's stream). A thread's stream never
ends by itself (a thread can always take another turn): stop reading, or close it, when done.
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx2
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from noukai._constants import HEARTBEAT_SECONDS, MAX_RECONNECTS
from noukai._errors import APIConnectionError, APITimeoutError, error_from_response, parse_retry_after
from noukai._events import StreamEvent, parse_event
from noukai._reconnect import ReconnectPolicy, Wait
from noukai._retry import RETRYABLE_STATUSES, backoff_delay
from noukai._sse import SSEDecoder
from noukai._transport import AsyncTransport, Call, SyncTransport


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Thread(_Model):
    """A thread: its metadata, the run taking its turn now (if any), counts and expiry."""

    thread_id: str
    metadata: dict[str, Any] = {}
    active_run_id: str | None = None
    run_count: int = 0
    message_count: int = 0
    ttl_seconds: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    """The thread is erased after this (each run renews it by `ttl_seconds`)."""

    @property
    def id(self) -> str:
        return self.thread_id


class ThreadMessage(_Model):
    """One message of a thread's history: `message` is the whole message (`role`, `content`, and
    `tool_calls` or `tool_call_id` for tool turns)."""

    position: int
    role: str
    message: dict[str, Any]
    run_id: str | None = None
    created_at: datetime

    @property
    def content(self) -> Any:
        return self.message.get("content")


class ThreadMessagePage(_Model):
    messages: list[ThreadMessage]
    next_cursor: str | None = None
    """Pass as `cursor=` for the next page; None on the last page."""


class ThreadDeleted(_Model):
    """What `threads.delete()` erased: the thread and its `messages`; the `events` of its `runs`,
    whose inputs, states, results and errors are blanked."""

    thread_id: str
    deleted: bool
    messages: int
    runs: int
    events: int


@dataclass(frozen=True, slots=True)
class ThreadEvent:
    """One event of a thread's stream: `id` is the thread stream cursor (`"<runOrdinal>-<seq>"`),
    `run_ordinal` the run's position in the thread (1, 2, 3 ...), `event` the run's typed event."""

    id: str
    run_ordinal: int
    event: StreamEvent

    @property
    def type(self) -> str:
        return self.event.type


def _thread_path(thread_id: str) -> str:
    if not thread_id:
        raise ValueError("thread_id must not be empty")
    return f"/threads/{quote(thread_id, safe='')}"


def parse_thread_event_id(value: str) -> tuple[int, int]:
    """`"<ordinal>-<seq>"` as a pair (ValueError otherwise): thread event ids order as these pairs."""
    ordinal, dash, seq = value.strip().partition("-")
    if not dash or not ordinal.isdigit() or not seq.isdigit():
        raise ValueError(f"not a thread event id (<runOrdinal>-<seq>): {value!r}")
    return int(ordinal), int(seq)


@dataclass
class ThreadStreamMachine:
    """The thread stream over as many connections as it takes (sans I/O). Actions are a `Call`
    to open, or a `Wait` before reconnecting; the stream has no end of its own."""

    thread_id: str
    last_event_id: str | None = None
    types: frozenset[str] | None = None
    policy: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    rng: random.Random = field(default_factory=random.Random)

    failures: int = field(default=0, init=False)
    retry_ms: int | None = field(default=None, init=False)
    _pending: Wait | None = field(default=None, init=False)
    _position: tuple[int, int] | None = field(default=None, init=False)
    _opened: bool = field(default=False, init=False)
    _received: int = field(default=0, init=False)
    _decoder: SSEDecoder = field(default_factory=SSEDecoder, init=False)

    def __post_init__(self) -> None:
        _thread_path(self.thread_id)
        if self.last_event_id is not None:
            self._position = parse_thread_event_id(self.last_event_id)

    @property
    def execution_id(self) -> str | None:
        return None

    @property
    def read_timeout(self) -> float:
        return self.policy.read_timeout

    def next_action(self) -> Call | Wait:
        if self._pending is not None:
            action, self._pending = self._pending, None
            return action
        params: dict[str, str] = {}
        headers = {"Accept": "text/event-stream"}
        if self.last_event_id is not None:
            params["since_id"] = self.last_event_id
            headers["Last-Event-ID"] = self.last_event_id
        if self.types is not None:
            params["types"] = ",".join(sorted(self.types))
        self._opened = False
        self._received = 0
        self._decoder = SSEDecoder()
        return Call("GET", f"{_thread_path(self.thread_id)}/events", params=params, headers=headers)

    def on_open(self) -> None:
        self._opened = True

    def on_error_response(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        error = error_from_response(status, headers, body)
        if status not in RETRYABLE_STATUSES:
            raise error
        self._fail(f"HTTP {status}", error, parse_retry_after(headers.get("retry-after")))

    def feed(self, chunk: bytes) -> list[ThreadEvent]:
        events: list[ThreadEvent] = []
        for frame in self._decoder.feed(chunk):
            if frame.comments:
                self._received += 1  # a heartbeat: the connection is alive
            if frame.retry is not None:
                self.retry_ms = frame.retry
            if not frame.has_data or frame.id is None:
                continue
            try:
                position = parse_thread_event_id(frame.id)
            except ValueError:
                continue
            if self._position is not None and position <= self._position:
                continue  # already delivered before a reconnect
            self._position = position
            self.last_event_id = frame.id
            self._received += 1
            self.failures = 0
            event = parse_event(frame.event, frame.data, seq=position[1])
            if self.types is None or event.type in self.types:
                events.append(ThreadEvent(frame.id, position[0], event))
        return events

    def on_close(self) -> None:
        """The server ended the response (it caps stream lifetimes): come back after its hint."""
        if self._received:
            self._pending = Wait((self.retry_ms or 0) / 1000, "server closed the stream", self.failures + 1)
        else:
            self._fail("the stream closed without events or heartbeats", None)

    def on_network_error(self, exc: BaseException, *, timed_out: bool = False) -> None:
        reason = type(exc).__name__
        if timed_out and self._opened:
            reason = f"no data for {self.read_timeout:g} s ({self.policy.missed_heartbeats} heartbeats)"
        self._fail(reason, exc)

    def _fail(self, reason: str, cause: BaseException | None, retry_after: float | None = None) -> None:
        self.failures += 1
        if self.failures > self.policy.max_reconnects:
            message = f"gave up after {self.policy.max_reconnects} reconnects ({reason})"
            cls = APITimeoutError if isinstance(cause, httpx2.TimeoutException) else APIConnectionError
            raise cls(message) from cause
        delay = backoff_delay(
            self.failures, initial=self.policy.initial_delay, maximum=self.policy.max_delay, rng=self.rng
        )
        self._pending = Wait(max(delay, retry_after or 0.0), reason, self.failures)


def _drive(transport: SyncTransport, machine: ThreadStreamMachine) -> Generator[ThreadEvent, None, None]:
    path = ""
    while True:
        action = machine.next_action()
        if isinstance(action, Wait):
            transport.log_stream_retry(path, action.attempt, action.seconds, action.reason)
            transport.sleep(action.seconds)
            continue
        path = action.path
        try:
            with transport.stream(action, read_timeout=machine.read_timeout) as response:
                if response.status_code >= 400:
                    machine.on_error_response(response.status_code, response.headers, response.read())
                    continue
                machine.on_open()
                for chunk in response.iter_bytes():
                    yield from machine.feed(chunk)
            machine.on_close()
        except httpx2.TransportError as exc:
            machine.on_network_error(exc, timed_out=isinstance(exc, httpx2.TimeoutException))


async def _adrive(
    transport: AsyncTransport, machine: ThreadStreamMachine
) -> AsyncGenerator[ThreadEvent, None]:
    path = ""
    while True:
        action = machine.next_action()
        if isinstance(action, Wait):
            transport.log_stream_retry(path, action.attempt, action.seconds, action.reason)
            await transport.sleep(action.seconds)
            continue
        path = action.path
        try:
            async with transport.stream(action, read_timeout=machine.read_timeout) as response:
                if response.status_code >= 400:
                    machine.on_error_response(response.status_code, response.headers, await response.aread())
                    continue
                machine.on_open()
                async for chunk in response.aiter_bytes():
                    for event in machine.feed(chunk):
                        yield event
            machine.on_close()
        except httpx2.TransportError as exc:
            machine.on_network_error(exc, timed_out=isinstance(exc, httpx2.TimeoutException))


class ThreadStream:
    """The thread's events (an iterator and a context manager); `last_event_id` is where a new
    stream resumes (`since_id=`) after an application restart."""

    def __init__(self, iterator: Generator[ThreadEvent, None, None], machine: ThreadStreamMachine) -> None:
        self._iterator = iterator
        self._machine = machine

    @property
    def last_event_id(self) -> str | None:
        return self._machine.last_event_id

    def __iter__(self) -> Iterator[ThreadEvent]:
        return self

    def __next__(self) -> ThreadEvent:
        return next(self._iterator)

    def close(self) -> None:
        self._iterator.close()

    def __enter__(self) -> ThreadStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncThreadStream:
    """`ThreadStream` of the async client."""

    def __init__(self, iterator: AsyncGenerator[ThreadEvent, None], machine: ThreadStreamMachine) -> None:
        self._iterator = iterator
        self._machine = machine

    @property
    def last_event_id(self) -> str | None:
        return self._machine.last_event_id

    def __aiter__(self) -> AsyncIterator[ThreadEvent]:
        return self

    async def __anext__(self) -> ThreadEvent:
        return await self._iterator.__anext__()

    async def aclose(self) -> None:
        await self._iterator.aclose()

    async def __aenter__(self) -> AsyncThreadStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _create_call(
    metadata: dict[str, Any] | None, ttl_seconds: int | None, project: str | None, timeout: float | None
) -> Call:
    body: dict[str, Any] = {"metadata": dict(metadata or {})}
    if ttl_seconds is not None:
        body["ttlSeconds"] = ttl_seconds
    if project is not None:
        body["project"] = project
    return Call("POST", "/threads", json=body, timeout=timeout)


def _messages_call(thread_id: str, cursor: str | None, limit: int | None, timeout: float | None) -> Call:
    params: dict[str, str] = {}
    if cursor is not None:
        params["cursor"] = cursor
    if limit is not None:
        params["limit"] = str(limit)
    return Call("GET", f"{_thread_path(thread_id)}/messages", params=params, timeout=timeout)


def _fork_call(
    thread_id: str,
    position: int | None,
    metadata: dict[str, Any] | None,
    ttl_seconds: int | None,
    timeout: float | None,
) -> Call:
    body: dict[str, Any] = {}
    if position is not None:
        body["position"] = position
    if metadata is not None:
        body["metadata"] = metadata
    if ttl_seconds is not None:
        body["ttlSeconds"] = ttl_seconds
    return Call("POST", f"{_thread_path(thread_id)}/fork", json=body, timeout=timeout)


def _events_machine(
    thread_id: str,
    since_id: str | None,
    types: list[str] | None,
    heartbeat_seconds: float,
    max_reconnects: int,
) -> ThreadStreamMachine:
    return ThreadStreamMachine(
        thread_id=thread_id,
        last_event_id=since_id,
        types=frozenset(types) if types is not None else None,
        policy=ReconnectPolicy(heartbeat_seconds=heartbeat_seconds, max_reconnects=max_reconnects),
    )


class Threads:
    """`client.threads`: conversations whose history the server keeps."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def create(
        self,
        *,
        metadata: dict[str, Any] | None = None,
        ttl_seconds: int | None = None,
        project: str | None = None,
        timeout: float | None = None,
    ) -> Thread:
        """A new, empty thread of the key's project (`project=` for an org-wide key), erased
        `ttl_seconds` after its last activity (the server's default without it)."""
        answer = self._transport.request(_create_call(metadata, ttl_seconds, project, timeout))
        return Thread.model_validate(answer.body)

    def get(self, thread_id: str, *, timeout: float | None = None) -> Thread:
        answer = self._transport.request(Call("GET", _thread_path(thread_id), timeout=timeout))
        return Thread.model_validate(answer.body)

    def messages(
        self,
        thread_id: str,
        *,
        cursor: str | None = None,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> ThreadMessagePage:
        """One page of the history, oldest first; pass `page.next_cursor` as `cursor` for more."""
        answer = self._transport.request(_messages_call(thread_id, cursor, limit, timeout))
        return ThreadMessagePage.model_validate(answer.body)

    def delete(self, thread_id: str, *, timeout: float | None = None) -> ThreadDeleted:
        """Erase the thread, its history, and its runs' events, inputs and results."""
        call = Call("DELETE", _thread_path(thread_id), timeout=timeout)
        return ThreadDeleted.model_validate(self._transport.request(call).body)

    def fork(
        self,
        thread_id: str,
        *,
        position: int | None = None,
        metadata: dict[str, Any] | None = None,
        ttl_seconds: int | None = None,
        timeout: float | None = None,
    ) -> Thread:
        """A new thread holding the messages 1..`position` of this one (all without it)."""
        answer = self._transport.request(_fork_call(thread_id, position, metadata, ttl_seconds, timeout))
        return Thread.model_validate(answer.body)

    def events(
        self,
        thread_id: str,
        since_id: str | None = None,
        *,
        types: list[str] | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        max_reconnects: int = MAX_RECONNECTS,
    ) -> ThreadStream:
        """Every event of every run of the thread after `since_id`, then live ones; resumed
        transparently when the connection drops or the server cycles it. It never ends by itself."""
        machine = _events_machine(thread_id, since_id, types, heartbeat_seconds, max_reconnects)
        return ThreadStream(_drive(self._transport, machine), machine)


class AsyncThreads:
    """`client.threads` of the async client."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def create(
        self,
        *,
        metadata: dict[str, Any] | None = None,
        ttl_seconds: int | None = None,
        project: str | None = None,
        timeout: float | None = None,
    ) -> Thread:
        answer = await self._transport.request(_create_call(metadata, ttl_seconds, project, timeout))
        return Thread.model_validate(answer.body)

    async def get(self, thread_id: str, *, timeout: float | None = None) -> Thread:
        answer = await self._transport.request(Call("GET", _thread_path(thread_id), timeout=timeout))
        return Thread.model_validate(answer.body)

    async def messages(
        self,
        thread_id: str,
        *,
        cursor: str | None = None,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> ThreadMessagePage:
        answer = await self._transport.request(_messages_call(thread_id, cursor, limit, timeout))
        return ThreadMessagePage.model_validate(answer.body)

    async def delete(self, thread_id: str, *, timeout: float | None = None) -> ThreadDeleted:
        call = Call("DELETE", _thread_path(thread_id), timeout=timeout)
        return ThreadDeleted.model_validate((await self._transport.request(call)).body)

    async def fork(
        self,
        thread_id: str,
        *,
        position: int | None = None,
        metadata: dict[str, Any] | None = None,
        ttl_seconds: int | None = None,
        timeout: float | None = None,
    ) -> Thread:
        answer = await self._transport.request(
            _fork_call(thread_id, position, metadata, ttl_seconds, timeout)
        )
        return Thread.model_validate(answer.body)

    def events(
        self,
        thread_id: str,
        since_id: str | None = None,
        *,
        types: list[str] | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        max_reconnects: int = MAX_RECONNECTS,
    ) -> AsyncThreadStream:
        """See `Threads.events`."""
        machine = _events_machine(thread_id, since_id, types, heartbeat_seconds, max_reconnects)
        return AsyncThreadStream(_adrive(self._transport, machine), machine)
