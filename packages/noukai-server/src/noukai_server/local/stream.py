"""The caller's side of a run: its log entries, handed over from the engine's thread, parsed into
the SDK's typed events by the SDK's own parser, filtered by granularity, with client tool pauses
answered through the SDK's `tool_handler` convention.

A pause for client tools (`ToolCallsRequired`) is answered by the `tool_handler`, when there is
one (the event is then not yielded, as in the SDK's `events()`), or by `event.resume(results)`
inside the loop; a pause nobody answers ends the stream and the run waits no longer.
"""

from __future__ import annotations

import asyncio
import inspect
import queue
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from types import TracebackType
from typing import Any

from noukai import StreamEvent, ToolCallsRequired
from noukai._events import parse_event
from noukai._tools import AsyncToolHandler, ToolHandler, check_results, check_rounds
from noukai.types.errors import ErrorCode
from noukai_server.engine.agent import normalise_tool_results
from noukai_server.engine.state import ToolResult
from noukai_server.local.driver import END, LocalRun
from noukai_server.local.errors import sdk_error
from noukai_server.local.granularity import Granularity, shows
from noukai_server.local.log import LogEntry

ENDING_SECONDS = 5.0
"""How long a stream whose caller failed at a tool pause waits for the run to end (it ends as
soon as the engine's loop hears that no answer is coming)."""

Answer = Callable[[list[ToolResult] | None], None]
"""Hands the caller's checked results (None: no answer) to the run on the engine's loop."""


def typed(entry: LogEntry) -> StreamEvent:
    """The SDK's event for a log entry: what it parses from the SSE frame `noukai serve` sends."""
    return parse_event(entry.type, entry.data.decode(), seq=entry.seq)


def checked_results(run_id: str, event: ToolCallsRequired, results: object) -> list[ToolResult]:
    """The results for the pending calls, picked as the server picks them from a resume request;
    TypeError (as the SDK) or TOOL_RESULTS_MISMATCH (as the server) otherwise."""
    given = check_results(results)
    pending = [str(call.get("id")) for call in event.tool_calls]
    try:
        return normalise_tool_results([*event.tool_call_messages, *given], pending)
    except ValueError as exc:
        raise sdk_error(ErrorCode.TOOL_RESULTS_MISMATCH, str(exc), run_id=run_id) from exc


class _Pauses:
    """Answers the run's tool pauses: counts rounds, checks results, and always answers (None
    when the caller gives nothing or fails), so the run never waits for a caller who left."""

    def __init__(self, run: LocalRun, answer: Answer, max_rounds: int) -> None:
        self._run = run
        self._answer = answer
        self._max_rounds = max_rounds
        self._rounds = 0
        self.pending = False
        self.abandoned = False
        """A pause was left unanswered because the caller failed or left: the run is ending."""

    def opened(self) -> None:
        self.pending = True
        if self._rounds >= self._max_rounds:
            self.abandon()
            check_rounds(self._rounds, self._max_rounds, self._run.run_id)

    def abandon(self) -> None:
        if self.pending:
            self.abandoned = True
            self.give(None)

    def give(self, results: list[ToolResult] | None) -> None:
        if self.pending:
            self.pending = False
            if results is not None:
                self._rounds += 1
            self._answer(results)

    def give_checked(self, event: ToolCallsRequired, results: object) -> None:
        try:
            checked = checked_results(self._run.run_id, event, results)
        except BaseException:
            self.abandon()
            raise
        self.give(checked)


def sync_events(
    run: LocalRun,
    inbox: queue.SimpleQueue[LogEntry | None],
    answer: Answer,
    *,
    granularity: Granularity,
    handler: ToolHandler | None,
    max_rounds: int,
) -> Generator[StreamEvent, None, None]:
    pauses = _Pauses(run, answer, max_rounds)
    try:
        while (entry := inbox.get()) is not END:
            event = typed(entry)
            if isinstance(event, ToolCallsRequired):
                pauses.opened()
                if handler is not None:
                    try:
                        results: object = handler(event.tool_calls)
                    except BaseException:
                        pauses.abandon()
                        raise
                    pauses.give_checked(event, results)
                    continue
                given: list[list[dict[str, Any]]] = []
                event._on_resume = given.append
                yield event
                if given:
                    pauses.give_checked(event, given[-1])
                else:
                    pauses.give(None)
                continue
            if shows(granularity, event):
                yield event
    finally:
        pauses.abandon()  # the caller closed the stream while a pause was open
        if pauses.abandoned:  # the run ends at once: raise only once it has, leaving nothing running
            run.ended.wait(ENDING_SECONDS)


async def async_events(
    run: LocalRun,
    inbox: asyncio.Queue[LogEntry | None],
    answer: Answer,
    *,
    granularity: Granularity,
    handler: AsyncToolHandler | None,
    max_rounds: int,
) -> AsyncGenerator[StreamEvent, None]:
    pauses = _Pauses(run, answer, max_rounds)
    try:
        while (entry := await inbox.get()) is not END:
            event = typed(entry)
            if isinstance(event, ToolCallsRequired):
                pauses.opened()
                if handler is not None:
                    try:
                        results: object = handler(event.tool_calls)
                        if inspect.isawaitable(results):
                            results = await results
                    except BaseException:
                        pauses.abandon()
                        raise
                    pauses.give_checked(event, results)
                    continue
                given: list[list[dict[str, Any]]] = []
                event._on_resume = given.append
                yield event
                if given:
                    pauses.give_checked(event, given[-1])
                else:
                    pauses.give(None)
                continue
            if shows(granularity, event):
                yield event
    finally:
        pauses.abandon()
        if pauses.abandoned:
            await asyncio.to_thread(run.ended.wait, ENDING_SECONDS)


class LocalStream(Iterator[StreamEvent]):
    """A run's events as they happen (sync). Closing it early leaves the run running; `run_id`
    is known before the first event, so another thread can `stop` it."""

    def __init__(self, run_id: str, events: Generator[StreamEvent, None, None]) -> None:
        self._run_id = run_id
        self._events = events

    @property
    def run_id(self) -> str:
        return self._run_id

    def __iter__(self) -> Iterator[StreamEvent]:
        return self

    def __next__(self) -> StreamEvent:
        return next(self._events)

    def close(self) -> None:
        self._events.close()

    def __enter__(self) -> LocalStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncLocalStream(AsyncIterator[StreamEvent]):
    """A run's events as they happen (async); `aclose()` (or `async with`) hangs up early."""

    def __init__(self, run_id: str, events: AsyncGenerator[StreamEvent, None]) -> None:
        self._run_id = run_id
        self._events = events

    @property
    def run_id(self) -> str:
        return self._run_id

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self

    async def __anext__(self) -> StreamEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        await self._events.aclose()

    async def __aenter__(self) -> AsyncLocalStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
