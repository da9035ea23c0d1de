"""Stream objects (iterators that are also context managers) and the two thin loops that drive a
`StreamMachine` over real connections."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from types import TracebackType
from typing import Generic, Protocol, TypeVar
from urllib.parse import quote

import httpx2

from noukai._errors import NoukaiError
from noukai._events import StreamEvent
from noukai._models import RunInfo
from noukai._reconnect import FINISHED, Probe, StreamMachine, Wait
from noukai._transport import AsyncTransport, Call, SyncTransport

T = TypeVar("T")


class _Cursor(Protocol):
    @property
    def execution_id(self) -> str | None: ...

    @property
    def last_event_id(self) -> int | None: ...


class Stream(Generic[T]):
    """A sync stream of events: iterate it, and close it (or use `with`) to hang up early.

    Hanging up never cancels the run; `execution_id` and `last_event_id` say where to resume.
    """

    def __init__(self, iterator: Generator[T, None, None], cursor: _Cursor) -> None:
        self._iterator = iterator
        self._cursor = cursor

    @property
    def execution_id(self) -> str | None:
        """The run's id, once known."""
        return self._cursor.execution_id

    @property
    def last_event_id(self) -> int | None:
        """The seq of the last event read (pass it as `since_id` to resume)."""
        return self._cursor.last_event_id

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        return next(self._iterator)

    def close(self) -> None:
        self._iterator.close()

    def __enter__(self) -> Stream[T]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncStream(Generic[T]):
    """An async stream of events: `async for` it, and `aclose()` it (or `async with`) to hang up."""

    def __init__(self, iterator: AsyncGenerator[T, None], cursor: _Cursor) -> None:
        self._iterator = iterator
        self._cursor = cursor

    @property
    def execution_id(self) -> str | None:
        return self._cursor.execution_id

    @property
    def last_event_id(self) -> int | None:
        return self._cursor.last_event_id

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        return await self._iterator.__anext__()

    async def aclose(self) -> None:
        await self._iterator.aclose()

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _probe_call(execution_id: str) -> Call:
    return Call("GET", f"/runs/{quote(execution_id, safe='')}")


def drive(transport: SyncTransport, machine: StreamMachine) -> Generator[StreamEvent, None, None]:
    """Run `machine` over sync connections, yielding its events."""
    path = ""
    while (action := machine.next_action()) is not FINISHED:
        if isinstance(action, Wait):
            transport.log_stream_retry(path, action.attempt, action.seconds, action.reason)
            transport.sleep(action.seconds)
            continue
        if isinstance(action, Probe):
            try:
                run = RunInfo.model_validate(transport.request(_probe_call(action.execution_id)).body)
            except NoukaiError as error:
                machine.on_probe_error(error)
                continue
            machine.on_probe(run)
            continue
        assert isinstance(action, Call)
        path = action.path
        try:
            with transport.stream(action, read_timeout=machine.read_timeout) as response:
                if response.status_code >= 400:
                    machine.on_error_response(response.status_code, response.headers, response.read())
                    continue
                machine.on_open(response.headers)
                for chunk in response.iter_bytes():
                    yield from machine.feed(chunk)
                    if machine.done:
                        return
            machine.on_close()
        except httpx2.TransportError as exc:
            machine.on_network_error(exc, timed_out=isinstance(exc, httpx2.TimeoutException))


async def adrive(transport: AsyncTransport, machine: StreamMachine) -> AsyncGenerator[StreamEvent, None]:
    """Run `machine` over async connections, yielding its events."""
    path = ""
    while (action := machine.next_action()) is not FINISHED:
        if isinstance(action, Wait):
            transport.log_stream_retry(path, action.attempt, action.seconds, action.reason)
            await transport.sleep(action.seconds)
            continue
        if isinstance(action, Probe):
            try:
                run = RunInfo.model_validate((await transport.request(_probe_call(action.execution_id))).body)
            except NoukaiError as error:
                machine.on_probe_error(error)
                continue
            machine.on_probe(run)
            continue
        assert isinstance(action, Call)
        path = action.path
        try:
            async with transport.stream(action, read_timeout=machine.read_timeout) as response:
                if response.status_code >= 400:
                    machine.on_error_response(response.status_code, response.headers, await response.aread())
                    continue
                machine.on_open(response.headers)
                async for chunk in response.aiter_bytes():
                    for event in machine.feed(chunk):
                        yield event
                    if machine.done:
                        return
            machine.on_close()
        except httpx2.TransportError as exc:
            machine.on_network_error(exc, timed_out=isinstance(exc, httpx2.TimeoutException))
