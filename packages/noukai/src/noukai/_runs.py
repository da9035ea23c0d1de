"""Runs: `client.runs` (resumable events, state, cancel) and `flow.run(id)` (traces and more)."""

from __future__ import annotations

from typing import Literal, overload
from urllib.parse import quote

from noukai._constants import HEARTBEAT_SECONDS, MAX_RECONNECTS
from noukai._events import StreamEvent
from noukai._models import CancelResult, RunInfo, StepAttempts, StepTrace, Trace
from noukai._reconnect import ReconnectPolicy, StreamMachine
from noukai._streams import AsyncStream, Stream, adrive, drive
from noukai._transport import AsyncTransport, Call, SyncTransport

Attempt = int | Literal["latest", "all"]


def _run_path(execution_id: str) -> str:
    if not execution_id:
        raise ValueError("execution_id must not be empty")
    return f"/runs/{quote(execution_id, safe='')}"


def _events_machine(
    execution_id: str,
    since_id: int | None,
    types: list[str] | None,
    heartbeat_seconds: float,
    max_reconnects: int,
    first: Call | None = None,
) -> StreamMachine:
    if since_id is not None and (isinstance(since_id, bool) or since_id < 0):
        raise ValueError(f"since_id must be an event seq >= 0, got {since_id!r}")
    return StreamMachine(
        first=first,
        execution_id=execution_id,
        last_event_id=since_id,
        types=frozenset(types) if types is not None else None,
        policy=ReconnectPolicy(heartbeat_seconds=heartbeat_seconds, max_reconnects=max_reconnects),
    )


def _cancel_call(execution_id: str) -> Call:
    return Call("POST", f"{_run_path(execution_id)}/cancel", idempotent=True)


def _step_trace_call(
    base: str, step_id: str, attempt: Attempt, loop_index: int | None, timeout: float | None
) -> Call:
    params: dict[str, str] = {}
    if attempt != "latest":
        if attempt != "all" and (isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1):
            raise ValueError(f"attempt is 'latest', 'all' or an int >= 1, got {attempt!r}")
        params["attempt"] = str(attempt)
    if loop_index is not None:
        params["loop_index"] = str(loop_index)
    return Call("GET", f"{base}/steps/{quote(step_id, safe='')}/trace", params=params, timeout=timeout)


class Runs:
    """`client.runs`: any run by id, whichever flow it belongs to."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def events(
        self,
        execution_id: str,
        since_id: int | None = None,
        *,
        types: list[str] | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        max_reconnects: int = MAX_RECONNECTS,
    ) -> Stream[StreamEvent]:
        """The run's events after `since_id` (from the start without it), until its last event.
        Dropped connections, silent ones (no heartbeat for 3 intervals) and planned closes are
        resumed where they stopped, with nothing lost or repeated."""
        machine = _events_machine(execution_id, since_id, types, heartbeat_seconds, max_reconnects)
        return Stream(drive(self._transport, machine), machine)

    def retrieve(self, execution_id: str, *, timeout: float | None = None) -> RunInfo:
        answer = self._transport.request(Call("GET", _run_path(execution_id), timeout=timeout))
        return RunInfo.model_validate(answer.body)

    def cancel(self, execution_id: str) -> CancelResult:
        """Stop the run at its next safe point (idempotent; a finished run is left as it is)."""
        return CancelResult.model_validate(self._transport.request(_cancel_call(execution_id)).body)


class AsyncRuns:
    """`client.runs` of the async client."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    def events(
        self,
        execution_id: str,
        since_id: int | None = None,
        *,
        types: list[str] | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        max_reconnects: int = MAX_RECONNECTS,
    ) -> AsyncStream[StreamEvent]:
        """See `Runs.events`."""
        machine = _events_machine(execution_id, since_id, types, heartbeat_seconds, max_reconnects)
        return AsyncStream(adrive(self._transport, machine), machine)

    async def retrieve(self, execution_id: str, *, timeout: float | None = None) -> RunInfo:
        answer = await self._transport.request(Call("GET", _run_path(execution_id), timeout=timeout))
        return RunInfo.model_validate(answer.body)

    async def cancel(self, execution_id: str) -> CancelResult:
        return CancelResult.model_validate((await self._transport.request(_cancel_call(execution_id))).body)


class _RunBase:
    def __init__(self, base_path: str, execution_id: str) -> None:
        _run_path(execution_id)
        self._base = base_path
        """`/seq/{org}/{project}/{slug}/runs/{id}` (never with a version segment)."""
        self.execution_id = execution_id

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.execution_id}>"

    def _live_machine(self, heartbeat_seconds: float, max_reconnects: int) -> StreamMachine:
        first = Call("GET", f"{self._base}/trace/stream", headers={"Accept": "text/event-stream"})
        return _events_machine(self.execution_id, None, None, heartbeat_seconds, max_reconnects, first=first)


class Run(_RunBase):
    """One run of a flow (sync)."""

    def __init__(self, transport: SyncTransport, base_path: str, execution_id: str) -> None:
        super().__init__(base_path, execution_id)
        self._transport = transport
        self._runs = Runs(transport)

    def trace(self, *, timeout: float | None = None) -> Trace:
        """The run and the latest attempt of each step."""
        answer = self._transport.request(Call("GET", f"{self._base}/trace", timeout=timeout))
        return Trace.model_validate(answer.body)

    @overload
    def step_trace(
        self,
        step_id: str,
        *,
        attempt: Literal["all"],
        loop_index: int | None = None,
        timeout: float | None = None,
    ) -> StepAttempts: ...
    @overload
    def step_trace(
        self,
        step_id: str,
        *,
        attempt: int | Literal["latest"] = "latest",
        loop_index: int | None = None,
        timeout: float | None = None,
    ) -> StepTrace: ...
    def step_trace(
        self,
        step_id: str,
        *,
        attempt: Attempt = "latest",
        loop_index: int | None = None,
        timeout: float | None = None,
    ) -> StepTrace | StepAttempts:
        """One attempt of a step ("latest" or a number), or all of them (`attempt="all"`)."""
        call = _step_trace_call(self._base, step_id, attempt, loop_index, timeout)
        body = self._transport.request(call).body
        return StepAttempts.model_validate(body) if attempt == "all" else StepTrace.model_validate(body)

    def live_trace(
        self, *, heartbeat_seconds: float = HEARTBEAT_SECONDS, max_reconnects: int = MAX_RECONNECTS
    ) -> Stream[StreamEvent]:
        """The run's events so far, then live ones, until the run ends (resumed if dropped)."""
        machine = self._live_machine(heartbeat_seconds, max_reconnects)
        return Stream(drive(self._transport, machine), machine)

    def events(self, since_id: int | None = None, *, types: list[str] | None = None) -> Stream[StreamEvent]:
        return self._runs.events(self.execution_id, since_id, types=types)

    def retrieve(self) -> RunInfo:
        return self._runs.retrieve(self.execution_id)

    def cancel(self) -> CancelResult:
        return self._runs.cancel(self.execution_id)


class AsyncRun(_RunBase):
    """One run of a flow (async)."""

    def __init__(self, transport: AsyncTransport, base_path: str, execution_id: str) -> None:
        super().__init__(base_path, execution_id)
        self._transport = transport
        self._runs = AsyncRuns(transport)

    async def trace(self, *, timeout: float | None = None) -> Trace:
        answer = await self._transport.request(Call("GET", f"{self._base}/trace", timeout=timeout))
        return Trace.model_validate(answer.body)

    @overload
    async def step_trace(
        self,
        step_id: str,
        *,
        attempt: Literal["all"],
        loop_index: int | None = None,
        timeout: float | None = None,
    ) -> StepAttempts: ...
    @overload
    async def step_trace(
        self,
        step_id: str,
        *,
        attempt: int | Literal["latest"] = "latest",
        loop_index: int | None = None,
        timeout: float | None = None,
    ) -> StepTrace: ...
    async def step_trace(
        self,
        step_id: str,
        *,
        attempt: Attempt = "latest",
        loop_index: int | None = None,
        timeout: float | None = None,
    ) -> StepTrace | StepAttempts:
        call = _step_trace_call(self._base, step_id, attempt, loop_index, timeout)
        body = (await self._transport.request(call)).body
        return StepAttempts.model_validate(body) if attempt == "all" else StepTrace.model_validate(body)

    def live_trace(
        self, *, heartbeat_seconds: float = HEARTBEAT_SECONDS, max_reconnects: int = MAX_RECONNECTS
    ) -> AsyncStream[StreamEvent]:
        machine = self._live_machine(heartbeat_seconds, max_reconnects)
        return AsyncStream(adrive(self._transport, machine), machine)

    def events(
        self, since_id: int | None = None, *, types: list[str] | None = None
    ) -> AsyncStream[StreamEvent]:
        return self._runs.events(self.execution_id, since_id, types=types)

    async def retrieve(self) -> RunInfo:
        return await self._runs.retrieve(self.execution_id)

    async def cancel(self) -> CancelResult:
        return await self._runs.cancel(self.execution_id)
