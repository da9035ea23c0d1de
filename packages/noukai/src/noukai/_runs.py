"""Runs: `client.runs` (list, resumable events, state, cancel, rerun) and `flow.run(id)` (traces)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, overload
from urllib.parse import quote

from noukai._constants import HEARTBEAT_SECONDS, MAX_RECONNECTS
from noukai._events import StreamEvent
from noukai._metadata import metadata_body
from noukai._models import CancelResult, RunInfo, RunPage, StepAttempts, StepTrace, Trace
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


def _instant(name: str, value: datetime) -> str:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).isoformat()


@dataclass(frozen=True)
class _RunFilters:
    """The query of `GET /runs` (pure: built and checked once, then sent page after page)."""

    params: dict[str, str | list[str]]

    @classmethod
    def of(
        cls,
        *,
        org: str | None,
        project: str | None,
        flow: str | None,
        version: int | None,
        status: str | Sequence[str] | None,
        trigger: str | None,
        since: datetime | None,
        until: datetime | None,
        session: str | None,
        thread: str | None,
        metadata: Mapping[str, str] | None,
    ) -> _RunFilters:
        params: dict[str, str | list[str]] = {}
        for name, text in (
            ("org", org),
            ("project", project),
            ("flow", flow),
            ("trigger", trigger),
            ("session", session),
            ("thread", thread),
        ):
            if text is not None:
                params[name] = text
        if version is not None:
            if isinstance(version, bool) or not isinstance(version, int) or version < 0:
                raise ValueError(f"version must be an int >= 0 (0: the draft), got {version!r}")
            params["version"] = str(version)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            if not statuses or not all(isinstance(one, str) and one for one in statuses):
                raise ValueError(f"status is a run status or a sequence of them, got {status!r}")
            params["status"] = ",".join(statuses)
        if since is not None:
            params["since"] = _instant("since", since)
        if until is not None:
            params["until"] = _instant("until", until)
        tags = metadata_body(metadata)
        if tags:
            params["metadata"] = [f"{key}:{value}" for key, value in tags.items()]
        return cls(params)

    def call(self, limit: int | None, cursor: str | None, timeout: float | None) -> Call:
        params = dict(self.params)
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ValueError(f"limit must be an int >= 1, got {limit!r}")
            params["limit"] = str(limit)
        if cursor is not None:
            params["cursor"] = cursor
        return Call("GET", "/runs", params=params, timeout=timeout)


def _rerun_call(execution_id: str, from_step: str | int | None, metadata: Mapping[str, str] | None) -> Call:
    body: dict[str, Any] = {}
    if from_step is not None:
        if isinstance(from_step, bool) or not isinstance(from_step, str | int):
            raise TypeError(f"from_step is a step id or a 0-based step index, got {from_step!r}")
        if isinstance(from_step, int) and from_step < 0:
            raise ValueError(f"from_step index must be >= 0, got {from_step}")
        body["fromStep"] = from_step
    tags = metadata_body(metadata)
    if tags is not None:
        body["metadata"] = tags
    # Not retried after a lost answer: a second POST would start a second rerun.
    return Call("POST", f"{_run_path(execution_id)}/rerun", json=body)


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

    def list(
        self,
        *,
        org: str | None = None,
        project: str | None = None,
        flow: str | None = None,
        version: int | None = None,
        status: str | Sequence[str] | None = None,
        trigger: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        session: str | None = None,
        thread: str | None = None,
        metadata: Mapping[str, str] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        timeout: float | None = None,
    ) -> RunPage:
        """One page of runs, newest first, that match every filter given (none: all the key may
        read). `version` 0 is the draft; `status` one status or several; `since` (inclusive) and
        `until` (exclusive) bound the creation time (a naive datetime is UTC); `metadata` pairs
        must all match. Pass `next_cursor` as `cursor` for the next page."""
        filters = _RunFilters.of(
            org=org,
            project=project,
            flow=flow,
            version=version,
            status=status,
            trigger=trigger,
            since=since,
            until=until,
            session=session,
            thread=thread,
            metadata=metadata,
        )
        return RunPage.model_validate(self._transport.request(filters.call(limit, cursor, timeout)).body)

    def iter(
        self,
        *,
        org: str | None = None,
        project: str | None = None,
        flow: str | None = None,
        version: int | None = None,
        status: str | Sequence[str] | None = None,
        trigger: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        session: str | None = None,
        thread: str | None = None,
        metadata: Mapping[str, str] | None = None,
        page_size: int | None = None,
        cursor: str | None = None,
    ) -> Iterator[RunInfo]:
        """Every matching run, newest first, fetching the pages (`page_size` runs each) as the
        iteration reaches them; the filters are those of `list()`."""
        filters = _RunFilters.of(
            org=org,
            project=project,
            flow=flow,
            version=version,
            status=status,
            trigger=trigger,
            since=since,
            until=until,
            session=session,
            thread=thread,
            metadata=metadata,
        )
        # The first call is built here, so that a bad filter fails at the call, not at the loop.
        return self._pages(filters, page_size, filters.call(page_size, cursor, None))

    def _pages(self, filters: _RunFilters, page_size: int | None, call: Call) -> Iterator[RunInfo]:
        while True:
            page = RunPage.model_validate(self._transport.request(call).body)
            yield from page.runs
            if page.next_cursor is None:
                return
            call = filters.call(page_size, page.next_cursor, None)

    def rerun(
        self,
        execution_id: str,
        *,
        from_step: str | int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> RunInfo:
        """Start a new run of the same flow version with the same inputs, linked to this one
        (`rerun_of`), queued like a job. With `from_step` (a step id or a 0-based index) the
        earlier steps are not run again: their recorded outputs are reused. `metadata` replaces
        the original's (which is kept without it)."""
        answer = self._transport.request(_rerun_call(execution_id, from_step, metadata))
        return RunInfo.model_validate(answer.body)


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

    async def list(
        self,
        *,
        org: str | None = None,
        project: str | None = None,
        flow: str | None = None,
        version: int | None = None,
        status: str | Sequence[str] | None = None,
        trigger: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        session: str | None = None,
        thread: str | None = None,
        metadata: Mapping[str, str] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        timeout: float | None = None,
    ) -> RunPage:
        """See `Runs.list`."""
        filters = _RunFilters.of(
            org=org,
            project=project,
            flow=flow,
            version=version,
            status=status,
            trigger=trigger,
            since=since,
            until=until,
            session=session,
            thread=thread,
            metadata=metadata,
        )
        answer = await self._transport.request(filters.call(limit, cursor, timeout))
        return RunPage.model_validate(answer.body)

    def iter(
        self,
        *,
        org: str | None = None,
        project: str | None = None,
        flow: str | None = None,
        version: int | None = None,
        status: str | Sequence[str] | None = None,
        trigger: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        session: str | None = None,
        thread: str | None = None,
        metadata: Mapping[str, str] | None = None,
        page_size: int | None = None,
        cursor: str | None = None,
    ) -> AsyncIterator[RunInfo]:
        """See `Runs.iter`; `async for run in client.runs.iter(...)`."""
        filters = _RunFilters.of(
            org=org,
            project=project,
            flow=flow,
            version=version,
            status=status,
            trigger=trigger,
            since=since,
            until=until,
            session=session,
            thread=thread,
            metadata=metadata,
        )
        return self._pages(filters, page_size, filters.call(page_size, cursor, None))

    async def _pages(self, filters: _RunFilters, page_size: int | None, call: Call) -> AsyncIterator[RunInfo]:
        while True:
            page = RunPage.model_validate((await self._transport.request(call)).body)
            for run in page.runs:
                yield run
            if page.next_cursor is None:
                return
            call = filters.call(page_size, page.next_cursor, None)

    async def rerun(
        self,
        execution_id: str,
        *,
        from_step: str | int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> RunInfo:
        """See `Runs.rerun`."""
        answer = await self._transport.request(_rerun_call(execution_id, from_step, metadata))
        return RunInfo.model_validate(answer.body)


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
