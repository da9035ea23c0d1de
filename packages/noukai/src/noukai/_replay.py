"""Sessions: capture (tag every run a piece of code starts with one session id) and replay (serve
those calls again from the recorded session, without running anything).

A scope lives in a context variable, so it follows the code through `await`s, tasks started
inside it and threads started with a copied context. `@trace` joins the scope already open (an
adapter's, typically), so the id the adapter reports is the id the calls were tagged with, and a
replayed request is served entirely from its recording.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
import uuid
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, ParamSpec, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from noukai._constants import REPLAY_ENV
from noukai._errors import (
    FlowExecutionError,
    NoukaiError,
    ReplayDisabledError,
    ReplayError,
    ReplayForbiddenError,
    ReplayInvalidSessionError,
    ReplayLeftoverError,
    ReplayMissError,
    ReplayNoSnapshotsError,
    ReplaySessionExpiredError,
    ReplaySessionNotFoundError,
)
from noukai._events import StreamEvent, event_from_payload
from noukai._models import ExecuteResult
from noukai._transport import AsyncTransport, Call, SyncTransport

P = ParamSpec("P")
R = TypeVar("R")
Trigger = Literal["execute", "step"]

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TRUTHY = frozenset({"1", "true", "yes", "on"})


def replay_enabled(environ: Mapping[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get(REPLAY_ENV, "")
    return value.strip().lower() in _TRUTHY


# -- the recorded session ---------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class SessionStep(_Model):
    step_id: str
    attempt: int = 1
    loop_index: int | None = None
    status: str = "completed"
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: int | None = None
    input_snapshot: dict[str, Any] | None = None
    output_snapshot: Any = None
    error_snapshot: dict[str, Any] | None = None
    truncated: bool = False


class SessionExecution(_Model):
    execution_id: str
    flow_id: str | None = None
    slug: str | None = None
    trigger_type: str | None = None
    status: str
    started_at: datetime | None = None
    completed_at: datetime | None = None
    trace_capture_mode: str | None = None
    snapshots_available: bool
    steps: list[SessionStep] = Field(default_factory=list)
    error_at_step: str | None = None


class Session(_Model):
    session_id: str
    executions: list[SessionExecution] = Field(default_factory=list)


def session_call(session_id: str) -> Call:
    if not _UUID.match(session_id):
        raise ReplayInvalidSessionError(f"session ids are UUIDs, got {session_id!r}", status_code=400)
    return Call("GET", f"/seq/sessions/{quote(session_id, safe='')}")


def session_from_body(body: Any) -> Session:
    try:
        session = Session.model_validate(body)
    except ValidationError as exc:
        raise ReplayInvalidSessionError(f"the server's session payload is malformed: {exc}") from exc
    missing = [e.execution_id for e in session.executions if not e.snapshots_available]
    if missing:
        raise ReplayNoSnapshotsError(
            f"runs {', '.join(missing)} kept no snapshots (trace_capture_mode off or metadata_only)",
            execution_id=missing[0],
        )
    return session


_FETCH_ERRORS: dict[int, type[ReplayError]] = {
    400: ReplayInvalidSessionError,
    403: ReplayForbiddenError,
    404: ReplaySessionNotFoundError,
    410: ReplaySessionExpiredError,
}


def fetch_error(error: NoukaiError) -> NoukaiError:
    cls = _FETCH_ERRORS.get(error.status_code or 0)
    if cls is None:
        return error
    return cls(
        error.message,
        status_code=error.status_code,
        code=error.code,
        request_id=error.request_id,
        response_body=error.response_body,
    )


def fetch_session(transport: SyncTransport, session_id: str) -> Session:
    try:
        return session_from_body(transport.request(session_call(session_id)).body)
    except NoukaiError as error:
        raise fetch_error(error) from error


async def afetch_session(transport: AsyncTransport, session_id: str) -> Session:
    try:
        return session_from_body((await transport.request(session_call(session_id))).body)
    except NoukaiError as error:
        raise fetch_error(error) from error


class Cassette:
    """A recorded session's runs, handed out in order per (slug, trigger)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._used: set[int] = set()
        self._taken: Counter[tuple[str, str]] = Counter()

    def take(self, slug: str, trigger: Trigger) -> SessionExecution:
        position = self._taken[(slug, trigger)]
        matches = [
            (index, e)
            for index, e in enumerate(self.session.executions)
            if e.slug == slug and e.trigger_type == trigger
        ]
        if position >= len(matches):
            raise ReplayMissError(
                f"session {self.session.session_id} has no {trigger} call #{position + 1} of '{slug}'"
            )
        self._taken[(slug, trigger)] += 1
        index, execution = matches[position]
        self._used.add(index)
        return execution

    def leftovers(self) -> list[SessionExecution]:
        return [e for i, e in enumerate(self.session.executions) if i not in self._used]


def replayed_result(execution: SessionExecution, session_id: str) -> ExecuteResult:
    """What `execute()` answered when the run was recorded (or the error it raised)."""
    failure = _failure(execution)
    if failure is not None:
        raise failure
    steps = execution.steps
    return ExecuteResult(
        status="completed",
        result=steps[-1].output_snapshot if steps else None,
        execution_id=execution.execution_id,
        flow_id=execution.flow_id or "",
        block_count=len(steps) or 1,
        session_id=session_id,
    )


def _failure(execution: SessionExecution) -> FlowExecutionError | None:
    if execution.error_at_step is None and execution.status not in ("failed", "cancelled"):
        return None
    step = next((s for s in execution.steps if s.step_id == execution.error_at_step), None)
    snapshot = (step.error_snapshot if step else None) or {}
    code = snapshot.get("code") if isinstance(snapshot.get("code"), str) else None
    message = snapshot.get("message") if isinstance(snapshot.get("message"), str) else None
    return FlowExecutionError(
        message or f"the recorded run {execution.execution_id} ended as {execution.status}",
        code=code or ("RUN_CANCELLED" if execution.status == "cancelled" else None),
        execution_id=execution.execution_id,
        step_id=execution.error_at_step,
    )


def replayed_events(execution: SessionExecution, *, run_remaining: bool) -> list[StreamEvent]:
    """The events a live `events()` call yielded for the recorded run, rebuilt from its snapshots."""
    run_id = execution.execution_id
    steps = execution.steps
    payloads: list[tuple[str, dict[str, Any]]] = [
        (
            "run_started",
            {"runId": run_id, "executionId": run_id, "flowId": execution.flow_id, "stepCount": len(steps)},
        )
    ]
    for index, step in enumerate(steps):
        payloads.append(("step_started", {"stepId": step.step_id, "stepIndex": index}))
        if step.error_snapshot is not None or step.step_id == execution.error_at_step:
            error = step.error_snapshot or {"code": None, "message": "the recorded step failed"}
            payloads.append(("step_error", {"stepId": step.step_id, "stepIndex": index, "error": error}))
            error_with_step = {**error, "stepId": step.step_id}
            payloads.append(
                ("run_failed", {"runId": run_id, "executionId": run_id, "error": error_with_step})
            )
            break
        payloads.append(
            (
                "step_completed",
                {
                    "stepId": step.step_id,
                    "stepIndex": index,
                    "output": step.output_snapshot,
                    "durationMs": step.duration_ms,
                },
            )
        )
        if not run_remaining and index + 1 < len(steps):
            payloads.append(
                ("step_paused", {"stepId": step.step_id, "stepIndex": index, "nextStepIndex": index + 1})
            )
    else:
        result = steps[-1].output_snapshot if steps else None
        payloads.append(("flow_completed", {"runId": run_id, "executionId": run_id, "result": result}))
    return [event_from_payload(name, data, seq=n) for n, (name, data) in enumerate(payloads, start=1)]


# -- scopes -----------------------------------------------------------------------------------


@dataclass
class TraceScope:
    """An open session: `session_id` tags the calls made inside it; in `"replay"` mode they are
    served from the recording instead."""

    session_id: str
    mode: Literal["capture", "replay"] = "capture"
    cassette: Cassette | None = None
    _in_flight: Counter[str] = field(default_factory=Counter)

    @contextlib.contextmanager
    def track(self, slug: str) -> Iterator[None]:
        """Mark a call to `slug` as in flight (warns when two overlap: their order is undefined)."""
        self._in_flight[slug] += 1
        if self._in_flight[slug] > 1:
            warnings.warn(
                f"concurrent calls to '{slug}' in one Noukai session: replay order is undefined",
                UserWarning,
                stacklevel=4,
            )
        try:
            yield
        finally:
            self._in_flight[slug] -= 1

    def check_leftovers(self) -> None:
        if self.cassette is None:
            return
        left = self.cassette.leftovers()
        if left:
            names = ", ".join(f"{e.trigger_type} '{e.slug}'" for e in left)
            raise ReplayLeftoverError(f"the recorded session has calls the code did not make: {names}")


_scope: ContextVar[TraceScope | None] = ContextVar("noukai_trace_scope", default=None)


def current_scope() -> TraceScope | None:
    """The innermost open session, if any."""
    return _scope.get()


def _sync_transport(source: object) -> SyncTransport:
    transport = getattr(source, "_transport", source)
    if isinstance(transport, SyncTransport):
        return transport
    raise TypeError("replay in sync code needs a Noukai client (or its ._transport)")


def _async_transport(source: object) -> AsyncTransport | SyncTransport:
    transport = getattr(source, "_transport", source)
    if isinstance(transport, AsyncTransport | SyncTransport):
        return transport
    raise TypeError("replay needs a Noukai or AsyncNoukai client (or its ._transport)")


def _check_replay_request(replay_session_id: str | None, transport: object, *, strict: bool) -> bool:
    """Whether to replay. A replay asked for in code without the env gate raises; one asked for by
    an inbound header (`strict=False`) is ignored, so a stray header in production does nothing."""
    if replay_session_id is None:
        return False
    if not replay_enabled():
        if strict:
            raise ReplayDisabledError(f"replay needs {REPLAY_ENV}=true in the environment")
        return False
    if transport is None:
        raise TypeError("replay needs transport= (a Noukai client or its ._transport)")
    return True


@contextlib.contextmanager
def trace_scope_sync(
    transport: object | None = None,
    *,
    replay_session_id: str | None = None,
    session_id: str | None = None,
) -> Iterator[TraceScope]:
    """Open a session for sync code: capture (a new id, or `session_id`), or replay
    `replay_session_id` (needs `NOUKAI_REPLAY_ENABLED`)."""
    if _check_replay_request(replay_session_id, transport, strict=True):
        assert replay_session_id is not None
        session = fetch_session(_sync_transport(transport), replay_session_id)
        scope = TraceScope(replay_session_id, "replay", Cassette(session))
    else:
        scope = TraceScope(session_id or str(uuid.uuid4()))
    with _entered(scope):
        yield scope


@contextlib.asynccontextmanager
async def trace_scope(
    transport: object | None = None,
    *,
    replay_session_id: str | None = None,
    session_id: str | None = None,
) -> AsyncIterator[TraceScope]:
    """Open a session for async code: capture (a new id, or `session_id`), or replay
    `replay_session_id` (needs `NOUKAI_REPLAY_ENABLED`)."""
    if _check_replay_request(replay_session_id, transport, strict=True):
        assert replay_session_id is not None
        session = await open_replay(transport, replay_session_id)
        scope = TraceScope(replay_session_id, "replay", Cassette(session))
    else:
        scope = TraceScope(session_id or str(uuid.uuid4()))
    with _entered(scope):
        yield scope


async def open_replay(transport: object, session_id: str) -> Session:
    resolved = _async_transport(transport)
    if isinstance(resolved, AsyncTransport):
        return await afetch_session(resolved, session_id)
    import anyio.to_thread

    # A sync client in async code: fetch on a worker thread rather than block the event loop.
    return await anyio.to_thread.run_sync(fetch_session, resolved, session_id)


def request_scope_sync(client: object | None, replay_session_id: str | None) -> TraceScope:
    """The scope of one inbound request (adapters): replay when the header asks for it and the
    env gate is on, capture otherwise. A client that is async is read through a one-off sync
    transport with its configuration (a sync framework has no event loop to await on)."""
    if not _check_replay_request(replay_session_id, client, strict=False):
        return TraceScope(str(uuid.uuid4()))
    assert replay_session_id is not None
    transport = getattr(client, "_transport", client)
    if isinstance(transport, AsyncTransport):
        with contextlib.closing(SyncTransport(transport.config)) as one_off:
            session = fetch_session(one_off, replay_session_id)
    else:
        session = fetch_session(_sync_transport(transport), replay_session_id)
    return TraceScope(replay_session_id, "replay", Cassette(session))


async def request_scope(client: object | None, replay_session_id: str | None) -> TraceScope:
    """`request_scope_sync` for async frameworks."""
    if not _check_replay_request(replay_session_id, client, strict=False):
        return TraceScope(str(uuid.uuid4()))
    assert replay_session_id is not None
    session = await open_replay(client, replay_session_id)
    return TraceScope(replay_session_id, "replay", Cassette(session))


def enter_scope(scope: TraceScope) -> Token[TraceScope | None]:
    return _scope.set(scope)


def exit_scope(token: Token[TraceScope | None]) -> None:
    try:
        _scope.reset(token)
    except ValueError:  # a framework ran the teardown in another context
        _scope.set(None)


@contextlib.contextmanager
def _entered(scope: TraceScope) -> Iterator[None]:
    token = _scope.set(scope)
    try:
        yield
    finally:
        _scope.reset(token)
    scope.check_leftovers()  # only reached when the body did not raise


def trace(fn: Callable[P, R]) -> Callable[P, R]:
    """Run `fn` (sync or async) inside a session: every Noukai call it makes is tagged with one
    session id. Inside an open session (an adapter's, an outer `@trace`) it joins that one."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            if current_scope() is not None:
                return await fn(*args, **kwargs)
            with _entered(TraceScope(str(uuid.uuid4()))):
                return await fn(*args, **kwargs)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        if current_scope() is not None:
            return fn(*args, **kwargs)
        with _entered(TraceScope(str(uuid.uuid4()))):
            return fn(*args, **kwargs)

    return wrapper
