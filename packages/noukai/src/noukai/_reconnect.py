"""Resumable event streams as a sans-I/O state machine.

`StreamMachine` decides everything about reading a run's events over connections that may break:
which request to make next, how to decode what arrives, which events are new, when the stream is
over, and how long to wait before reconnecting. It performs no I/O; `_streams.py` drives it with
one thin sync loop and one thin async loop:

    while (action := machine.next_action()) is not FINISHED:
        Wait    -> sleep(action.seconds)
        Probe   -> GET /runs/{id}; machine.on_probe(run) / machine.on_probe_error(err)
        Connect -> open it; status >= 400: machine.on_error_response(...);
                   else machine.on_open(), then machine.feed(chunk) for each chunk
                   (yielding the events it returns) until machine.done or the end,
                   then machine.on_close(); a network error: machine.on_network_error(exc)

Resumption: every frame's `id:` is the event's seq. After a dropped connection (a network error,
or no byte for `missed_heartbeats` heartbeat intervals) or a planned close by the server, the
machine reconnects to `GET /runs/{id}/events` with `Last-Event-ID`, waiting with exponential
backoff and jitter (and at least `Retry-After`) between failed attempts. Events at or below the
last seen id are dropped, so nothing is delivered twice; the server's log has no gaps, so nothing
is lost.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote

from noukai._constants import (
    HEARTBEAT_SECONDS,
    MAX_RECONNECTS,
    MISSED_HEARTBEATS,
    RECONNECT_INITIAL_DELAY,
    RECONNECT_MAX_DELAY,
    TERMINAL_EVENT_TYPES,
    TOOL_CALLS_REQUIRED,
)
from noukai._errors import (
    APIConnectionError,
    APITimeoutError,
    NoukaiError,
    error_from_response,
    parse_retry_after,
)
from noukai._events import RunStarted, StreamEvent, ToolCallsRequired, parse_event
from noukai._models import RunInfo
from noukai._retry import RETRYABLE_STATUSES, backoff_delay
from noukai._sse import SSEDecoder
from noukai._transport import Call
from noukai.types import events as ev


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    heartbeat_seconds: float = HEARTBEAT_SECONDS
    """The server's heartbeat interval."""
    missed_heartbeats: int = MISSED_HEARTBEATS
    """Silence for this many intervals means the connection is dead."""
    max_reconnects: int = MAX_RECONNECTS
    """Failed attempts in a row before giving up (any event received resets the count)."""
    initial_delay: float = RECONNECT_INITIAL_DELAY
    max_delay: float = RECONNECT_MAX_DELAY

    def __post_init__(self) -> None:
        if not self.heartbeat_seconds > 0 or self.missed_heartbeats < 1 or self.max_reconnects < 0:
            raise ValueError("heartbeat_seconds > 0, missed_heartbeats >= 1, max_reconnects >= 0")

    @property
    def read_timeout(self) -> float:
        return self.heartbeat_seconds * self.missed_heartbeats


@dataclass(frozen=True, slots=True)
class Wait:
    seconds: float
    reason: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Probe:
    """Ask for the run's state: a stream that closed with nothing new may mean the run is over."""

    execution_id: str


class _Finished:
    def __repr__(self) -> str:
        return "FINISHED"


FINISHED: Final = _Finished()

Action = Call | Wait | Probe | _Finished


def events_call(execution_id: str, last_event_id: int | None, types: frozenset[str] | None) -> Call:
    """`GET /runs/{id}/events`, resuming after `last_event_id`."""
    params: dict[str, str] = {}
    headers: dict[str, str] = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        params["since_id"] = str(last_event_id)
        headers["Last-Event-ID"] = str(last_event_id)
    if types is not None:
        params["types"] = ",".join(sorted(types))
    return Call("GET", f"/runs/{_segment(execution_id)}/events", params=params, headers=headers)


def _segment(value: str) -> str:
    return quote(value, safe="")


_WIRE_TERMINALS = ev.TERMINAL_EVENTS


@dataclass
class StreamMachine:
    """One logical stream of a run's events, over as many connections as it takes."""

    first: Call | None
    """The first request (a `/step` POST, a live-trace GET); None: start on the native stream."""
    execution_id: str | None = None
    last_event_id: int | None = None
    stop_after: frozenset[str] = TERMINAL_EVENT_TYPES
    """SDK event types after which the stream is complete."""
    types: frozenset[str] | None = None
    """Only these SDK event types are returned (terminal events still end the stream)."""
    policy: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    rng: random.Random = field(default_factory=random.Random)

    done: bool = field(default=False, init=False)
    failures: int = field(default=0, init=False)
    retry_ms: int | None = field(default=None, init=False)
    _pending: Wait | Probe | None = field(default=None, init=False)
    _current: Call | None = field(default=None, init=False)
    _opened: bool = field(default=False, init=False)
    _events_now: int = field(default=0, init=False)
    _heartbeats_now: int = field(default=0, init=False)
    _decoder: SSEDecoder = field(default_factory=SSEDecoder, init=False)

    def __post_init__(self) -> None:
        if self.first is None and self.execution_id is None:
            raise ValueError("a stream needs a first request or an execution id")

    # -- what to do next --------------------------------------------------------------------

    def next_action(self) -> Action:
        if self.done:
            return FINISHED
        if self._pending is not None:
            action, self._pending = self._pending, None
            return action
        if self.first is not None:
            call, self.first = self.first, None
        else:
            assert self.execution_id is not None
            call = events_call(self.execution_id, self.last_event_id, self._server_types())
        self._current = call
        self._opened = False
        self._events_now = self._heartbeats_now = 0
        self._decoder = SSEDecoder()
        return call

    @property
    def read_timeout(self) -> float:
        return self.policy.read_timeout

    def _server_types(self) -> frozenset[str] | None:
        # The server filters by wire names and ends the stream after the run's last event
        # whether or not it writes it; asking for the terminal types too lets the machine see
        # the end instead of taking the silence for a dropped connection.
        if self.types is None:
            return None
        wire = {ev.STEP_PAUSED_FOR_TOOL_CALLS if t == TOOL_CALLS_REQUIRED else t for t in self.types}
        return frozenset(wire | _WIRE_TERMINALS)

    # -- what happened ----------------------------------------------------------------------

    def on_open(self, headers: Mapping[str, str] | None = None) -> None:
        self._opened = True

    def on_error_response(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """An error status instead of a stream: raise it, or plan a retry."""
        error = error_from_response(status, headers, body)
        if self._current is None or self._current.method != "GET" or status not in RETRYABLE_STATUSES:
            raise error
        self._fail(f"HTTP {status}", error, parse_retry_after(headers.get("retry-after")))

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """Decode a chunk; returns the new events in order (stops at the stream's last event)."""
        events: list[StreamEvent] = []
        if self.done:
            return events
        for frame in self._decoder.feed(chunk):
            if frame.comments:
                self._heartbeats_now += 1
            if frame.retry is not None:
                self.retry_ms = frame.retry
            if not frame.has_data:
                continue
            seq = int(frame.id) if frame.id is not None and frame.id.isdigit() else None
            if seq is not None and self.last_event_id is not None and seq <= self.last_event_id:
                continue  # already delivered before a reconnect
            event = parse_event(frame.event, frame.data, seq=seq)
            if seq is not None:
                self.last_event_id = seq
            self._events_now += 1
            self.failures = 0
            self._learn(event)
            if self.types is None or event.type in self.types:
                events.append(event)
            if event.type in self.stop_after:
                self.done = True
                break
        return events

    def on_close(self) -> None:
        """The server ended the response without the stream's last event."""
        if self.done:
            return
        if self.execution_id is None:
            raise APIConnectionError("the stream ended before the run started")
        if self._events_now:
            # A planned close (the server caps stream lifetimes): come back after its hint.
            delay = (self.retry_ms or 0) / 1000
            self._pending = Wait(delay, "server closed the stream", self.failures + 1)
        else:
            self._pending = Probe(self.execution_id)

    def on_network_error(self, exc: BaseException, *, timed_out: bool = False) -> None:
        """The connection failed, or (`timed_out`) went silent; raises when it cannot resume."""
        if self.done:
            return
        reason = type(exc).__name__
        if timed_out and self._opened:
            reason = f"no data for {self.read_timeout:g} s ({self.policy.missed_heartbeats} heartbeats)"
        if not self._resumable():
            cls = APITimeoutError if timed_out else APIConnectionError
            raise cls(f"the stream broke before it could be resumed: {exc!r}") from exc
        self._fail(reason, exc)

    def on_probe(self, run: RunInfo) -> None:
        if run.terminal and (self.last_event_id or 0) >= run.last_seq:
            self.done = True
            return
        if self._heartbeats_now and not run.terminal:
            # A quiet run (heartbeats only) whose stream the server cycled: not a failure.
            self._pending = Wait((self.retry_ms or 0) / 1000, "server closed the stream", self.failures + 1)
            return
        self._fail("the stream closed without new events", None)

    def on_probe_error(self, error: NoukaiError) -> None:
        if isinstance(error, APIConnectionError) or (error.status_code or 0) in RETRYABLE_STATUSES:
            self._fail(f"probe failed: {error}", error)
            return
        raise error

    # -- internals --------------------------------------------------------------------------

    def _resumable(self) -> bool:
        if self.execution_id is None or self._current is None:
            return False
        # A POST that failed before its answer arrived may or may not have moved the run on;
        # only after the server answered is the rest of it safely read from the log.
        return self._current.method == "GET" or self._opened

    def _learn(self, event: StreamEvent) -> None:
        if self.execution_id is None and isinstance(event, RunStarted | ToolCallsRequired):
            self.execution_id = event.execution_id or getattr(event, "run_id", None)

    def _fail(self, reason: str, cause: BaseException | None, retry_after: float | None = None) -> None:
        self.failures += 1
        if self.failures > self.policy.max_reconnects:
            message = f"gave up after {self.policy.max_reconnects} reconnects ({reason})"
            raise APIConnectionError(message, execution_id=self.execution_id) from cause
        delay = backoff_delay(
            self.failures, initial=self.policy.initial_delay, maximum=self.policy.max_delay, rng=self.rng
        )
        if retry_after is not None:
            delay = max(delay, retry_after)
        self._pending = Wait(delay, reason, self.failures)
