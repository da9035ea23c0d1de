"""Flows: `execute()` (with its tool loop), `steps()`, `events()`, `execute_async()` and `run()`.

`_FlowBase` holds everything both clients share: addressing, request bodies, answers, session
and replay decisions. `Flow` and `AsyncFlow` only send, sleep and await.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import quote

from noukai._constants import DEFAULT_MAX_TOOL_ROUNDS, HEARTBEAT_SECONDS, MAX_RECONNECTS, SESSION_HEADER
from noukai._errors import FlowExecutionError, NoukaiError, ReplayMissError, make_error
from noukai._events import (
    RunCancelled,
    RunFailed,
    StepCompleted,
    StreamEvent,
    ToolCallsRequired,
)
from noukai._jobs import AsyncJob, Job
from noukai._metadata import metadata_body
from noukai._models import AsyncPausedResult, ExecuteResult, JobAccepted, PausedResult, _PausedFields
from noukai._reconnect import ReconnectPolicy
from noukai._replay import (
    Cassette,
    TraceScope,
    afetch_session,
    current_scope,
    fetch_session,
    replayed_events,
    replayed_result,
)
from noukai._runs import AsyncRun, Run
from noukai._stepping import StepDriver
from noukai._streams import AsyncStream, Stream, adrive, drive
from noukai._tools import (
    AsyncToolHandler,
    ToolHandler,
    check_results,
    check_rounds,
    check_sync_handler,
    resume_request,
)
from noukai._transport import AsyncTransport, Call, SyncTransport
from noukai.types.errors import status_for_code
from noukai.types.wire import ExecuteRequest, StepRequest

Version = int | Literal["draft", "production"]
Multitask = Literal["reject", "enqueue"]
"""What a new turn does when its thread is busy: fail with 409 THREAD_BUSY, or wait its turn."""
PausedT = TypeVar("PausedT", bound=_PausedFields)


def version_segment(version: Version | None) -> str:
    """`None`/"production": the base path (latest published, else the draft); "draft": `/v0`;
    N: `/vN`."""
    if version is None or version == "production":
        return ""
    if version == "draft":
        return "/v0"
    if isinstance(version, bool) or not isinstance(version, int):
        raise TypeError(f"version must be 'draft', 'production' or an int, got {version!r}")
    if version < 0:
        raise ValueError(f"version must be >= 0, got {version}")
    return f"/v{version}"


def resolve_flow(
    identifier: str | None,
    *,
    org: str | None,
    project: str | None,
    slug: str | None,
    default_org: str | None,
    default_project: str | None,
) -> tuple[str, str, str]:
    """The three ways to name a flow: "slug" (client defaults), "org/project/slug", or keywords."""
    if identifier is not None:
        if org is not None or project is not None or slug is not None:
            raise ValueError("name the flow either as a string or with org=/project=/slug=, not both")
        parts = identifier.split("/")
        if len(parts) == 3 and all(parts):
            return parts[0], parts[1], parts[2]
        if len(parts) == 1 and parts[0]:
            if default_org is None or default_project is None:
                raise ValueError(
                    f"'{identifier}' is a short slug: create the client with org= and project= "
                    "or pass 'org/project/slug'"
                )
            return default_org, default_project, parts[0]
        raise ValueError(f"a flow is 'slug' or 'org/project/slug', got {identifier!r}")
    if not slug or "/" in slug:
        raise ValueError("pass the flow as 'org/project/slug' or with slug=")
    if (org is None) != (project is None):
        raise ValueError("pass org and project together (or neither, to use the client's defaults)")
    org, project = (org, project) if org is not None else (default_org, default_project)
    if not org or not project:
        raise ValueError(f"slug '{slug}' needs org and project (here or on the client)")
    return org, project, slug


def execute_request(
    *,
    message: str | None,
    messages: list[dict[str, Any]] | None,
    parameters: dict[str, Any] | None,
    block_overrides: dict[str, dict[str, Any]] | None,
    attachments: list[dict[str, Any]] | None,
    tools: list[dict[str, Any]] | None,
    tool_choice: str | dict[str, Any] | None,
    trace: bool,
    thread_id: str | None = None,
    multitask: Multitask | None = None,
) -> ExecuteRequest:
    if message is not None and messages:
        raise ValueError("pass message or messages, not both")
    for entry in messages or []:
        role = entry.get("role") if isinstance(entry, dict) else None
        if role not in ("user", "assistant", "tool"):
            raise ValueError(f"messages roles are user, assistant or tool, got {role!r}")
    return ExecuteRequest(
        message=message,
        messages=messages or None,
        parameters=dict(parameters or {}),
        block_overrides=block_overrides,
        attachments=attachments,
        tools=tools,
        tool_choice=tool_choice,
        trace=trace,
        thread_id=thread_id,
        multitask=multitask,
    )


def failed_run_error(body: dict[str, Any]) -> NoukaiError:
    """A run that failed after the server had committed to a 200 (a long `/execute`): the same
    error a quicker failure gets from its status."""
    raw = body.get("error")
    error: dict[str, Any] = raw if isinstance(raw, dict) else {}
    code = error.get("code") if isinstance(error.get("code"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    execution_id = body.get("executionId") if isinstance(body.get("executionId"), str) else None
    step_id = error.get("stepId") if isinstance(error.get("stepId"), str) else None
    status = status_for_code(code) if code else 500
    return make_error(
        status,
        message or f"run {execution_id} failed",
        code=code,
        execution_id=execution_id,
        step_id=step_id,
        response_body=body,
    )


def run_outcome_error(event: RunFailed | RunCancelled) -> FlowExecutionError:
    if isinstance(event, RunCancelled):
        return FlowExecutionError(
            f"run {event.execution_id} was cancelled", code="RUN_CANCELLED", execution_id=event.execution_id
        )
    step_id = (event.error or {}).get("stepId")
    return FlowExecutionError(
        event.message or f"run {event.execution_id} failed",
        code=event.code,
        execution_id=event.execution_id,
        step_id=step_id if isinstance(step_id, str) else None,
    )


@dataclass(frozen=True)
class _Session:
    """Where a call's session comes from: the id to send, and the cassette when replaying."""

    session_id: str | None
    scope: TraceScope | None
    replay_from: str | None
    """The session to replay from, when replaying."""
    explicit: bool


@dataclass(frozen=True)
class _StepOptions:
    """The options of `events()`/`steps()` that shape the `/step` request and its driver, built
    once from the public signature and passed down. The tool handler (typed differently by each
    client) and the session id (resolved against the client and the trace scope) travel apart."""

    message: str | None
    parameters: dict[str, Any] | None
    block_overrides: dict[str, dict[str, Any]] | None
    attachments: list[dict[str, Any]] | None
    input_overrides: dict[str, Any] | None
    tools: list[dict[str, Any]] | None
    tool_choice: str | dict[str, Any] | None
    trace: bool
    version: Version | None
    run_remaining: bool
    max_tool_rounds: int
    heartbeat_seconds: float
    max_reconnects: int
    thread_id: str | None = None
    multitask: Multitask | None = None
    metadata: dict[str, str] | None = None


def _check_handler(handler: object | None) -> None:
    """The async client's check: any callable (sync or async) or None."""
    if handler is not None and not callable(handler):
        raise TypeError(f"tool_handler must be callable, got {type(handler).__name__}")


class _FlowBase:
    def __init__(self, org: str, project: str, slug: str, *, default_session_id: str | None) -> None:
        self.org = org
        self.project = project
        self.slug = slug
        self._default_session_id = default_session_id

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.org}/{self.project}/{self.slug}>"

    def _path(self, action: str, version: Version | None = None) -> str:
        base = "/".join(quote(part, safe="") for part in (self.org, self.project, self.slug))
        return f"/seq/{base}{version_segment(version)}/{action}"

    def _session(self, session_id: str | None) -> _Session:
        scope = current_scope()
        sid = session_id or self._default_session_id or (scope.session_id if scope else None)
        replaying = scope is not None and scope.mode == "replay"
        replay_from = (session_id or scope.session_id) if replaying and scope else None
        return _Session(sid, scope, replay_from, session_id is not None)

    def _tracking(self, session: _Session) -> contextlib.AbstractContextManager[None]:
        return session.scope.track(self.slug) if session.scope else contextlib.nullcontext()

    @staticmethod
    def _headers(session_id: str | None, idempotency_key: str | None = None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if session_id is not None:
            headers[SESSION_HEADER] = session_id
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    def _execute_call(
        self,
        request: ExecuteRequest,
        version: Version | None,
        timeout: float | None,
        session_id: str | None,
        idempotency_key: str | None,
        metadata: dict[str, str] | None = None,
    ) -> Call:
        body = request.model_dump(by_alias=True, exclude_none=True)
        if metadata is not None:
            body["metadata"] = metadata
        return Call(
            "POST",
            self._path("execute", version),
            json=body,
            headers=self._headers(session_id, idempotency_key or str(uuid.uuid4())),
            timeout=timeout,
        )

    def _resume_call(self, request: ExecuteRequest, version: Version | None, timeout: float | None) -> Call:
        # Resumes carry no session header (the run already belongs to its session) and are not
        # retried: the server does not promise that a repeated resume is harmless.
        return Call(
            "POST",
            self._path("execute", version),
            json=request.model_dump(by_alias=True, exclude_none=True),
            timeout=timeout,
        )

    @staticmethod
    def _answer(body: Any, session_id: str | None, paused_cls: type[PausedT]) -> ExecuteResult | PausedT:
        if not isinstance(body, dict):
            raise FlowExecutionError(f"the server answered with {type(body).__name__}, not a JSON object")
        status = body.get("status")
        if status == "tool_calls_required":
            return paused_cls.model_validate({**body, "sessionId": session_id})
        if status == "failed":
            raise failed_run_error(body)
        return ExecuteResult.model_validate({**body, "sessionId": session_id})

    def _step_driver(self, options: _StepOptions, session_id: str | None) -> StepDriver:
        request = StepRequest(
            message=options.message,
            parameters=dict(options.parameters or {}),
            attachments=options.attachments,
            input_overrides=dict(options.input_overrides or {}),
            block_overrides=options.block_overrides,
            run_remaining=options.run_remaining,
            tools=options.tools,
            tool_choice=options.tool_choice,
            trace=options.trace,
            thread_id=options.thread_id,
            multitask=options.multitask,
        )
        return StepDriver(
            path=self._path("step", options.version),
            request=request,
            metadata=options.metadata,
            session_id=session_id,
            max_tool_rounds=options.max_tool_rounds,
            policy=ReconnectPolicy(
                heartbeat_seconds=options.heartbeat_seconds, max_reconnects=options.max_reconnects
            ),
        )

    def _stream_start(self, options: _StepOptions, session_id: str | None) -> tuple[_Session, StepDriver]:
        """The session and the step driver of a new `events()`/`steps()` stream (pure: no I/O)."""
        session = self._session(session_id)
        return session, self._step_driver(options, session.session_id)

    def _execute_start(
        self,
        *,
        message: str | None,
        messages: list[dict[str, Any]] | None,
        parameters: dict[str, Any] | None,
        block_overrides: dict[str, dict[str, Any]] | None,
        attachments: list[dict[str, Any]] | None,
        tools: list[dict[str, Any]] | None,
        tool_choice: str | dict[str, Any] | None,
        trace: bool,
        version: Version | None,
        session_id: str | None,
        thread_id: str | None = None,
        multitask: Multitask | None = None,
    ) -> tuple[ExecuteRequest, _Session]:
        """The request and the session of an `execute()` (pure: no I/O)."""
        version_segment(version)  # refuse a bad version before anything else
        request = execute_request(
            message=message,
            messages=messages,
            parameters=parameters,
            block_overrides=block_overrides,
            attachments=attachments,
            tools=tools,
            tool_choice=tool_choice,
            trace=trace,
            thread_id=thread_id,
            multitask=multitask,
        )
        return request, self._session(session_id)

    @staticmethod
    def _resume_body(
        request: ExecuteRequest, paused: _PausedFields, outputs: list[dict[str, Any]]
    ) -> ExecuteRequest:
        return resume_request(
            request,
            execution_id=paused.execution_id,
            paused_at_step=paused.paused_at_step,
            iterations_used=paused.iterations_used,
            tool_call_messages=paused.tool_call_messages,
            accumulated_outputs=paused.accumulated_outputs,
            tool_results=outputs,
        )

    def _job_submission(
        self,
        message: str | None,
        parameters: dict[str, Any] | None,
        block_overrides: dict[str, dict[str, Any]] | None,
        trace: bool,
        version: Version | None,
        timeout: float | None,
        session_id: str | None,
        idempotency_key: str | None,
        thread_id: str | None = None,
        multitask: Multitask | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Call:
        """The `/jobs` call both clients send (pure: no I/O), with a fresh idempotency key."""
        version_segment(version)
        tags = metadata_body(metadata)
        session = self._session(session_id)
        self._replay_miss_for_jobs(session)
        request = execute_request(
            message=message,
            messages=None,
            parameters=parameters,
            block_overrides=block_overrides,
            attachments=None,
            tools=None,
            tool_choice=None,
            trace=trace,
            thread_id=thread_id,
            multitask=multitask,
        )
        headers = self._headers(session.session_id, idempotency_key or str(uuid.uuid4()))
        return self._jobs_call(self._path("jobs", version), request, timeout, headers, tags)

    @staticmethod
    def _jobs_call(
        path: str,
        request: ExecuteRequest,
        timeout: float | None,
        headers: dict[str, str],
        metadata: dict[str, str] | None = None,
    ) -> Call:
        body = request.model_dump(
            by_alias=True,
            exclude_none=True,
            include={
                "message",
                "parameters",
                "block_overrides",
                "iterations_used",
                "accumulated_outputs",
                "trace",
                "thread_id",
                "multitask",
            },
        )
        if metadata is not None:
            body["metadata"] = metadata
        return Call("POST", path, json=body, headers=headers, timeout=timeout)

    def _replay_miss_for_jobs(self, session: _Session) -> None:
        if session.replay_from is not None:
            raise ReplayMissError(
                f"execute_async() of '{self.slug}' cannot be replayed (jobs are not recorded)"
            )


def _filter(event: StreamEvent, steps_only: bool) -> tuple[bool, NoukaiError | None]:
    """Whether to yield `event`, and the error `steps()` raises instead of ending quietly."""
    if not steps_only:
        return True, None
    if isinstance(event, RunFailed | RunCancelled):
        return False, run_outcome_error(event)
    if isinstance(event, ToolCallsRequired):
        return False, FlowExecutionError(
            "the flow paused for tool calls: pass tool_handler= to steps(), or use events()",
            code="TOOL_CALLS_REQUIRED",
            execution_id=event.execution_id,
        )
    return isinstance(event, StepCompleted), None


class Flow(_FlowBase):
    """A flow, for the sync client."""

    def __init__(
        self, transport: SyncTransport, org: str, project: str, slug: str, *, default_session_id: str | None
    ) -> None:
        super().__init__(org, project, slug, default_session_id=default_session_id)
        self._transport = transport

    def execute(
        self,
        *,
        message: str | None = None,
        messages: list[dict[str, Any]] | None = None,
        parameters: dict[str, Any] | None = None,
        block_overrides: dict[str, dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        trace: bool = False,
        version: Version | None = None,
        timeout: float | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        tool_handler: ToolHandler | None = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        session_id: str | None = None,
        idempotency_key: str | None = None,
        thread_id: str | None = None,
        multitask: Multitask | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ExecuteResult | PausedResult:
        """Run the flow and wait for its result. With `tool_handler`, tool pauses are answered
        and resumed until the flow finishes (at most `max_tool_rounds` rounds)."""
        check_sync_handler(tool_handler)
        tags = metadata_body(metadata)
        request, session = self._execute_start(
            message=message,
            messages=messages,
            parameters=parameters,
            block_overrides=block_overrides,
            attachments=attachments,
            tools=tools,
            tool_choice=tool_choice,
            trace=trace,
            version=version,
            session_id=session_id,
            thread_id=thread_id,
            multitask=multitask,
        )
        with self._tracking(session):
            if session.replay_from is not None:
                return replayed_result(
                    self._cassette(session).take(self.slug, "execute"), session.replay_from
                )
            call = self._execute_call(request, version, timeout, session.session_id, idempotency_key, tags)
            result = self._answer(self._transport.request(call).body, session.session_id, PausedResult)
            rounds = 0
            while isinstance(result, PausedResult) and tool_handler is not None:
                check_rounds(rounds, max_tool_rounds, result.execution_id)
                outputs = check_results(tool_handler(result.tool_calls))
                rounds += 1
                result = self._resume(request, result, outputs, version, timeout)
            return self._with_resumer(result, request, version, timeout)

    def _resume(
        self,
        request: ExecuteRequest,
        paused: PausedResult,
        outputs: list[dict[str, Any]],
        version: Version | None,
        timeout: float | None,
    ) -> ExecuteResult | PausedResult:
        body = self._resume_body(request, paused, outputs)
        answer = self._transport.request(self._resume_call(body, version, timeout)).body
        return self._answer(answer, paused.session_id, PausedResult)

    def _with_resumer(
        self,
        result: ExecuteResult | PausedResult,
        request: ExecuteRequest,
        version: Version | None,
        timeout: float | None,
    ) -> ExecuteResult | PausedResult:
        if isinstance(result, PausedResult):

            def resumer(paused: PausedResult, outputs: list[dict[str, Any]]) -> ExecuteResult | PausedResult:
                answer = self._resume(request, paused, check_results(outputs), version, timeout)
                return self._with_resumer(answer, request, version, timeout)

            result._resumer = resumer
        return result

    def _cassette(self, session: _Session) -> Cassette:
        assert session.scope is not None
        assert session.replay_from is not None
        if session.explicit:
            # An explicit session_id inside a replay scope replays that session instead: fetched
            # once for this call.
            return Cassette(fetch_session(self._transport, session.replay_from))
        assert session.scope.cassette is not None
        return session.scope.cassette

    def events(
        self,
        *,
        message: str | None = None,
        parameters: dict[str, Any] | None = None,
        block_overrides: dict[str, dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        input_overrides: dict[str, Any] | None = None,
        trace: bool = False,
        version: Version | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        tool_handler: ToolHandler | None = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        run_remaining: bool = False,
        session_id: str | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        max_reconnects: int = MAX_RECONNECTS,
        thread_id: str | None = None,
        multitask: Multitask | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Stream[StreamEvent]:
        """Every event of a new run. By default the server pauses after each step and the stream
        advances it; `run_remaining=True` runs all steps in one response. Dropped connections
        are resumed from the run's log."""
        options = _StepOptions(
            message=message,
            parameters=parameters,
            block_overrides=block_overrides,
            attachments=attachments,
            input_overrides=input_overrides,
            tools=tools,
            tool_choice=tool_choice,
            trace=trace,
            version=version,
            run_remaining=run_remaining,
            max_tool_rounds=max_tool_rounds,
            heartbeat_seconds=heartbeat_seconds,
            max_reconnects=max_reconnects,
            thread_id=thread_id,
            multitask=multitask,
            metadata=metadata_body(metadata),
        )
        return self._stream(options, tool_handler, session_id, steps_only=False)

    def steps(
        self,
        *,
        message: str | None = None,
        parameters: dict[str, Any] | None = None,
        block_overrides: dict[str, dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        input_overrides: dict[str, Any] | None = None,
        trace: bool = False,
        version: Version | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        tool_handler: ToolHandler | None = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        session_id: str | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        max_reconnects: int = MAX_RECONNECTS,
        thread_id: str | None = None,
        multitask: Multitask | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Stream[StepCompleted]:
        """One `StepCompleted` per finished step; raises `FlowExecutionError` if the run fails."""
        options = _StepOptions(
            message=message,
            parameters=parameters,
            block_overrides=block_overrides,
            attachments=attachments,
            input_overrides=input_overrides,
            tools=tools,
            tool_choice=tool_choice,
            trace=trace,
            version=version,
            run_remaining=False,
            max_tool_rounds=max_tool_rounds,
            heartbeat_seconds=heartbeat_seconds,
            max_reconnects=max_reconnects,
            thread_id=thread_id,
            multitask=multitask,
            metadata=metadata_body(metadata),
        )
        stream: Stream[Any] = self._stream(options, tool_handler, session_id, steps_only=True)
        return stream

    def _stream(
        self, options: _StepOptions, handler: ToolHandler | None, session_id: str | None, *, steps_only: bool
    ) -> Stream[StreamEvent]:
        check_sync_handler(handler)
        session, driver = self._stream_start(options, session_id)
        return Stream(self._iterate(driver, handler, session, steps_only), driver)

    def _iterate(
        self, driver: StepDriver, handler: ToolHandler | None, session: _Session, steps_only: bool
    ) -> Generator[StreamEvent, None, None]:
        with self._tracking(session):
            for event in self._events(driver, handler, session):
                wanted, error = _filter(event, steps_only)
                if error is not None:
                    raise error
                if wanted:
                    yield event

    def _events(
        self, driver: StepDriver, handler: ToolHandler | None, session: _Session
    ) -> Iterator[StreamEvent]:
        if session.replay_from is not None:
            yield from replayed_events(
                self._cassette(session).take(self.slug, "step"), run_remaining=driver.request.run_remaining
            )
            return
        while (machine := driver.next_segment()) is not None:
            for event in drive(self._transport, machine):
                driver.observe(event, machine)
                if isinstance(event, ToolCallsRequired) and handler is not None:
                    driver.check_tool_round()
                    driver.supply_tool_results(check_results(handler(event.tool_calls)))
                    continue
                if isinstance(event, ToolCallsRequired):
                    event._on_resume = driver.supply_tool_results
                yield event

    def execute_async(
        self,
        *,
        message: str | None = None,
        parameters: dict[str, Any] | None = None,
        block_overrides: dict[str, dict[str, Any]] | None = None,
        trace: bool = False,
        version: Version | None = None,
        timeout: float | None = None,
        session_id: str | None = None,
        idempotency_key: str | None = None,
        thread_id: str | None = None,
        multitask: Multitask | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Job:
        """Submit the run to the server's job queue; `job.wait()` / `job.poll()` get its result."""
        call = self._job_submission(
            message,
            parameters,
            block_overrides,
            trace,
            version,
            timeout,
            session_id,
            idempotency_key,
            thread_id,
            multitask,
            metadata,
        )
        submitted = time.monotonic()
        answer = self._transport.request(call)
        accepted = JobAccepted.model_validate(answer.body)
        return Job(self._transport, self._path("jobs"), accepted, submitted_at=submitted)

    def run(self, execution_id: str) -> Run:
        """A handle on one run of this flow: traces, live trace, events, cancel."""
        return Run(self._transport, self._path(f"runs/{quote(execution_id, safe='')}"), execution_id)


class AsyncFlow(_FlowBase):
    """A flow, for the async client."""

    def __init__(
        self, transport: AsyncTransport, org: str, project: str, slug: str, *, default_session_id: str | None
    ) -> None:
        super().__init__(org, project, slug, default_session_id=default_session_id)
        self._transport = transport

    async def execute(
        self,
        *,
        message: str | None = None,
        messages: list[dict[str, Any]] | None = None,
        parameters: dict[str, Any] | None = None,
        block_overrides: dict[str, dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        trace: bool = False,
        version: Version | None = None,
        timeout: float | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        tool_handler: AsyncToolHandler | None = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        session_id: str | None = None,
        idempotency_key: str | None = None,
        thread_id: str | None = None,
        multitask: Multitask | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ExecuteResult | AsyncPausedResult:
        """Run the flow and wait for its result. `tool_handler` may be sync or async."""
        _check_handler(tool_handler)
        tags = metadata_body(metadata)
        request, session = self._execute_start(
            message=message,
            messages=messages,
            parameters=parameters,
            block_overrides=block_overrides,
            attachments=attachments,
            tools=tools,
            tool_choice=tool_choice,
            trace=trace,
            version=version,
            session_id=session_id,
            thread_id=thread_id,
            multitask=multitask,
        )
        with self._tracking(session):
            if session.replay_from is not None:
                cassette = await self._cassette(session)
                return replayed_result(cassette.take(self.slug, "execute"), session.replay_from)
            call = self._execute_call(request, version, timeout, session.session_id, idempotency_key, tags)
            answer = await self._transport.request(call)
            result = self._answer(answer.body, session.session_id, AsyncPausedResult)
            rounds = 0
            while isinstance(result, AsyncPausedResult) and tool_handler is not None:
                check_rounds(rounds, max_tool_rounds, result.execution_id)
                outputs = check_results(await _call_handler(tool_handler, result.tool_calls))
                rounds += 1
                result = await self._resume(request, result, outputs, version, timeout)
            return self._with_resumer(result, request, version, timeout)

    async def _resume(
        self,
        request: ExecuteRequest,
        paused: AsyncPausedResult,
        outputs: list[dict[str, Any]],
        version: Version | None,
        timeout: float | None,
    ) -> ExecuteResult | AsyncPausedResult:
        body = self._resume_body(request, paused, outputs)
        answer = await self._transport.request(self._resume_call(body, version, timeout))
        return self._answer(answer.body, paused.session_id, AsyncPausedResult)

    def _with_resumer(
        self,
        result: ExecuteResult | AsyncPausedResult,
        request: ExecuteRequest,
        version: Version | None,
        timeout: float | None,
    ) -> ExecuteResult | AsyncPausedResult:
        if isinstance(result, AsyncPausedResult):

            async def resumer(
                paused: AsyncPausedResult, outputs: list[dict[str, Any]]
            ) -> ExecuteResult | AsyncPausedResult:
                answer = await self._resume(request, paused, check_results(outputs), version, timeout)
                return self._with_resumer(answer, request, version, timeout)

            result._resumer = resumer
        return result

    async def _cassette(self, session: _Session) -> Cassette:
        assert session.scope is not None
        assert session.replay_from is not None
        if session.explicit:
            return Cassette(await afetch_session(self._transport, session.replay_from))
        assert session.scope.cassette is not None
        return session.scope.cassette

    def events(
        self,
        *,
        message: str | None = None,
        parameters: dict[str, Any] | None = None,
        block_overrides: dict[str, dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        input_overrides: dict[str, Any] | None = None,
        trace: bool = False,
        version: Version | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        tool_handler: AsyncToolHandler | None = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        run_remaining: bool = False,
        session_id: str | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        max_reconnects: int = MAX_RECONNECTS,
        thread_id: str | None = None,
        multitask: Multitask | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> AsyncStream[StreamEvent]:
        """Every event of a new run (see `Flow.events`); `async for` it."""
        options = _StepOptions(
            message=message,
            parameters=parameters,
            block_overrides=block_overrides,
            attachments=attachments,
            input_overrides=input_overrides,
            tools=tools,
            tool_choice=tool_choice,
            trace=trace,
            version=version,
            run_remaining=run_remaining,
            max_tool_rounds=max_tool_rounds,
            heartbeat_seconds=heartbeat_seconds,
            max_reconnects=max_reconnects,
            thread_id=thread_id,
            multitask=multitask,
            metadata=metadata_body(metadata),
        )
        return self._stream(options, tool_handler, session_id, steps_only=False)

    def steps(
        self,
        *,
        message: str | None = None,
        parameters: dict[str, Any] | None = None,
        block_overrides: dict[str, dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        input_overrides: dict[str, Any] | None = None,
        trace: bool = False,
        version: Version | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        tool_handler: AsyncToolHandler | None = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        session_id: str | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        max_reconnects: int = MAX_RECONNECTS,
        thread_id: str | None = None,
        multitask: Multitask | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> AsyncStream[StepCompleted]:
        """One `StepCompleted` per finished step; raises `FlowExecutionError` if the run fails."""
        options = _StepOptions(
            message=message,
            parameters=parameters,
            block_overrides=block_overrides,
            attachments=attachments,
            input_overrides=input_overrides,
            tools=tools,
            tool_choice=tool_choice,
            trace=trace,
            version=version,
            run_remaining=False,
            max_tool_rounds=max_tool_rounds,
            heartbeat_seconds=heartbeat_seconds,
            max_reconnects=max_reconnects,
            thread_id=thread_id,
            multitask=multitask,
            metadata=metadata_body(metadata),
        )
        stream: AsyncStream[Any] = self._stream(options, tool_handler, session_id, steps_only=True)
        return stream

    def _stream(
        self,
        options: _StepOptions,
        handler: AsyncToolHandler | None,
        session_id: str | None,
        *,
        steps_only: bool,
    ) -> AsyncStream[StreamEvent]:
        _check_handler(handler)
        session, driver = self._stream_start(options, session_id)
        return AsyncStream(self._iterate(driver, handler, session, steps_only), driver)

    async def _iterate(
        self, driver: StepDriver, handler: AsyncToolHandler | None, session: _Session, steps_only: bool
    ) -> AsyncGenerator[StreamEvent, None]:
        with self._tracking(session):
            async for event in self._events(driver, handler, session):
                wanted, error = _filter(event, steps_only)
                if error is not None:
                    raise error
                if wanted:
                    yield event

    async def _events(
        self, driver: StepDriver, handler: AsyncToolHandler | None, session: _Session
    ) -> AsyncGenerator[StreamEvent, None]:
        if session.replay_from is not None:
            cassette = await self._cassette(session)
            for replayed in replayed_events(
                cassette.take(self.slug, "step"), run_remaining=driver.request.run_remaining
            ):
                yield replayed
            return
        while (machine := driver.next_segment()) is not None:
            async for event in adrive(self._transport, machine):
                driver.observe(event, machine)
                if isinstance(event, ToolCallsRequired) and handler is not None:
                    driver.check_tool_round()
                    driver.supply_tool_results(check_results(await _call_handler(handler, event.tool_calls)))
                    continue
                if isinstance(event, ToolCallsRequired):
                    event._on_resume = driver.supply_tool_results
                yield event

    async def execute_async(
        self,
        *,
        message: str | None = None,
        parameters: dict[str, Any] | None = None,
        block_overrides: dict[str, dict[str, Any]] | None = None,
        trace: bool = False,
        version: Version | None = None,
        timeout: float | None = None,
        session_id: str | None = None,
        idempotency_key: str | None = None,
        thread_id: str | None = None,
        multitask: Multitask | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> AsyncJob:
        """Submit the run to the server's job queue (server-side async, not Python async)."""
        call = self._job_submission(
            message,
            parameters,
            block_overrides,
            trace,
            version,
            timeout,
            session_id,
            idempotency_key,
            thread_id,
            multitask,
            metadata,
        )
        submitted = time.monotonic()
        accepted = JobAccepted.model_validate((await self._transport.request(call)).body)
        return AsyncJob(self._transport, self._path("jobs"), accepted, submitted_at=submitted)

    def run(self, execution_id: str) -> AsyncRun:
        return AsyncRun(self._transport, self._path(f"runs/{quote(execution_id, safe='')}"), execution_id)


async def _call_handler(handler: AsyncToolHandler, calls: list[dict[str, Any]]) -> Any:
    outcome = handler(calls)
    if hasattr(outcome, "__await__"):
        return await outcome
    return outcome
