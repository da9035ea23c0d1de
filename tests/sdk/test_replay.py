"""Sessions: capture tagging, `@trace`, scopes, and replay from a recorded session."""

from __future__ import annotations

import asyncio
import json
import uuid
import warnings
from typing import Any

import httpx2
import pytest

import noukai
from noukai._replay import current_scope, replayed_events
from tests.sdk.conftest import fake_async_client, fake_client, json_response

SID = "11111111-1111-4111-8111-111111111111"
RESULT = {"status": "completed", "result": "live", "executionId": "e1", "flowId": "f", "blockCount": 1}


def session(*executions: dict[str, Any]) -> dict[str, Any]:
    return {"sessionId": SID, "executions": list(executions)}


def execution(slug: str, trigger: str, *outputs: Any, **extra: Any) -> dict[str, Any]:
    return {
        "executionId": extra.pop("executionId", f"ex-{uuid.uuid4().hex[:6]}"),
        "flowId": "f",
        "slug": slug,
        "triggerType": trigger,
        "status": "completed",
        "snapshotsAvailable": True,
        "steps": [{"stepId": f"s-{n}", "outputSnapshot": out} for n, out in enumerate(outputs, 1)],
        **extra,
    }


class Backend:
    """`/execute` answers live; `/seq/sessions/{id}` answers `sessions[id]` (or a status)."""

    def __init__(self, sessions: dict[str, Any] | None = None) -> None:
        self.sessions = sessions or {}
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if request.url.path.startswith("/api/v1/seq/sessions/"):
            answer = self.sessions.get(request.url.path.rsplit("/", 1)[1], 404)
            if isinstance(answer, int):
                return json_response(answer, {"detail": {"code": "X", "message": f"status {answer}"}})
            return json_response(200, answer)
        return json_response(200, RESULT)

    def session_headers(self) -> list[str | None]:
        return [
            r.headers.get("x-session-id")
            for r in self.requests
            if not r.url.path.startswith("/api/v1/seq/sessions")
        ]


@pytest.fixture
def replay_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOUKAI_REPLAY_ENABLED", "true")


def test_trace_tags_every_call_with_one_session() -> None:
    backend = Backend()
    client = fake_client(backend)

    @noukai.trace
    def handle(message: str) -> tuple[str | None, str | None]:
        first = client.flow("grade-3").execute(message=message)
        second = client.flow("other").execute(message=message)
        assert isinstance(first, noukai.ExecuteResult) and isinstance(second, noukai.ExecuteResult)
        return first.session_id, second.session_id

    a, b = handle("x")
    assert a == b and a is not None and uuid.UUID(a)
    c, _ = handle("y")
    assert c != a  # one session per call of the decorated function
    assert backend.session_headers() == [a, a, c, c]
    assert current_scope() is None
    assert client.flow("g").execute(message="z").session_id is None  # outside: no header
    assert backend.session_headers()[-1] is None


def test_session_id_precedence() -> None:
    backend = Backend()
    client = fake_client(backend, session_id="client-default")
    client.flow("g").execute(message="x")
    client.flow("g").execute(message="x", session_id="explicit")
    with noukai.trace_scope_sync(session_id="scoped") as scope:
        assert scope.session_id == "scoped" and scope.mode == "capture"
        client.flow("g").execute(message="x")
        fake_client(backend).flow("g").execute(message="x")
    assert backend.session_headers() == ["client-default", "explicit", "client-default", "scoped"]


def test_nested_trace_joins_the_open_session() -> None:
    @noukai.trace
    def inner() -> str:
        scope = current_scope()
        assert scope is not None
        return scope.session_id

    @noukai.trace
    def outer() -> tuple[str, str]:
        scope = current_scope()
        assert scope is not None
        return scope.session_id, inner()

    a, b = outer()
    assert a == b


@pytest.mark.anyio
async def test_async_trace_follows_tasks() -> None:
    backend = Backend()
    client = fake_async_client(backend)

    @noukai.trace
    async def handle() -> set[str | None]:
        results = await asyncio.gather(
            client.flow("a").execute(message="1"), client.flow("b").execute(message="2")
        )
        return {r.session_id for r in results}

    ids = await handle()
    assert len(ids) == 1 and None not in ids
    assert set(backend.session_headers()) == ids
    async with noukai.trace_scope() as scope:
        await client.flow("a").execute(message="x")
    assert backend.session_headers()[-1] == scope.session_id


def test_trace_keeps_the_wrapped_function() -> None:
    @noukai.trace
    def documented(x: int) -> int:
        """Doubles."""
        return 2 * x

    assert documented(2) == 4 and documented.__doc__ == "Doubles." and documented.__name__ == "documented"


@pytest.mark.anyio
async def test_concurrent_same_slug_calls_warn() -> None:
    async def slow(request: httpx2.Request) -> httpx2.Response:
        await asyncio.sleep(0.01)
        return json_response(200, RESULT)

    client = noukai.AsyncNoukai(
        api_key="nk_x",
        base_url="http://fake",
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(slow)),
    )
    async with noukai.trace_scope():
        with pytest.warns(UserWarning, match="concurrent calls to 'g'"):
            await asyncio.gather(
                client.flow("a/b/g").execute(message="1"), client.flow("a/b/g").execute(message="2")
            )
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            await asyncio.gather(
                client.flow("a/b/g").execute(message="1"), client.flow("a/b/h").execute(message="2")
            )


def test_replay_serves_calls_from_the_recording(replay_on: None) -> None:
    recorded = session(
        execution("grade-3", "execute", {"score": 1}, "final", executionId="ex-1"),
        execution("grade-3", "execute", "second"),
        execution("grade-3", "step", "one", "two"),
    )
    backend = Backend({SID: recorded})
    client = fake_client(backend)
    with noukai.trace_scope_sync(client._transport, replay_session_id=SID) as scope:
        assert scope.mode == "replay" and scope.session_id == SID
        first = client.flow("grade-3").execute(message="anything")
        second = client.flow("grade-3").execute(message="else")
        events = list(client.flow("grade-3").events(message="x"))
    assert isinstance(first, noukai.ExecuteResult)
    assert (first.result, first.execution_id, first.block_count, first.session_id) == (
        "final",
        "ex-1",
        2,
        SID,
    )
    assert second.result == "second"
    assert [e.type for e in events] == [
        "run_started",
        "step_started",
        "step_completed",
        "step_paused",
        "step_started",
        "step_completed",
        "flow_completed",
    ]
    assert events[-1].result == "two"  # type: ignore[union-attr]
    assert [r.url.path for r in backend.requests] == [f"/api/v1/seq/sessions/{SID}"]  # nothing live


def test_replay_steps_and_failures(replay_on: None) -> None:
    failed = execution("g", "execute", "ok", "partial", errorAtStep="s-2", status="failed")
    failed["steps"][-1]["errorSnapshot"] = {"code": "TEMPLATE_ERROR", "message": "undefined"}
    stepped = execution("g", "step", "a", "b")
    failed_steps = execution("g", "step", "a", errorAtStep="s-1", status="failed")
    failed_steps["steps"][0]["errorSnapshot"] = {"code": "X", "message": "m"}
    backend = Backend({SID: session(failed, stepped, failed_steps)})
    client = fake_client(backend)
    with noukai.trace_scope_sync(client, replay_session_id=SID):
        with pytest.raises(noukai.FlowExecutionError) as info:
            client.flow("g").execute(message="x")
        assert (info.value.code, info.value.step_id) == ("TEMPLATE_ERROR", "s-2")
        assert [s.output for s in client.flow("g").steps(message="x")] == ["a", "b"]
        with pytest.raises(noukai.FlowExecutionError):
            list(client.flow("g").steps(message="x"))


def test_replay_run_remaining_and_cancelled() -> None:
    from noukai._replay import SessionExecution

    entry = SessionExecution.model_validate(execution("g", "step", "a", "b"))
    assert "step_paused" not in [e.type for e in replayed_events(entry, run_remaining=True)]
    cancelled = SessionExecution.model_validate({**execution("g", "execute"), "status": "cancelled"})
    from noukai._replay import replayed_result

    with pytest.raises(noukai.FlowExecutionError) as info:
        replayed_result(cancelled, SID)
    assert info.value.code == "RUN_CANCELLED"
    empty = SessionExecution.model_validate(execution("g", "execute"))
    assert replayed_result(empty, SID).block_count == 1


def test_replay_misses_and_leftovers(replay_on: None) -> None:
    backend = Backend({SID: session(execution("g", "execute", "x"), execution("g", "job", "y"))})
    client = fake_client(backend)
    with (
        pytest.raises(noukai.ReplayLeftoverError, match="job 'g'"),
        noukai.trace_scope_sync(client, replay_session_id=SID),
    ):
        client.flow("g").execute(message="x")
    with noukai.trace_scope_sync(client, replay_session_id=SID) as scope:
        with pytest.raises(noukai.ReplayMissError):
            client.flow("other").execute(message="x")
        with pytest.raises(noukai.ReplayMissError):
            client.flow("g").execute_async(message="x")
        assert scope.cassette is not None
        scope.cassette._used.update({0, 1})  # consume, so that the exit check passes
    with pytest.raises(RuntimeError), noukai.trace_scope_sync(client, replay_session_id=SID):
        raise RuntimeError("the body's error wins over leftovers")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (400, noukai.ReplayInvalidSessionError),
        (403, noukai.ReplayForbiddenError),
        (404, noukai.ReplaySessionNotFoundError),
        (410, noukai.ReplaySessionExpiredError),
        (500, noukai.FlowExecutionError),
        ({"executions": []}, noukai.ReplayInvalidSessionError),
        ({"sessionId": SID, "executions": [{"executionId": "e"}]}, noukai.ReplayInvalidSessionError),
        (session({**execution("g", "execute"), "snapshotsAvailable": False}), noukai.ReplayNoSnapshotsError),
    ],
)
def test_session_fetch_errors(
    replay_on: None, answer: Any, error: type[Exception], slept: list[float]
) -> None:
    client = fake_client(Backend({SID: answer}), max_retries=0)
    with pytest.raises(error), noukai.trace_scope_sync(client, replay_session_id=SID):
        pass


def test_replay_gate_and_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    client = fake_client(Backend({SID: session()}))
    with pytest.raises(noukai.ReplayDisabledError), noukai.trace_scope_sync(client, replay_session_id=SID):
        pass
    monkeypatch.setenv("NOUKAI_REPLAY_ENABLED", "1")
    with (
        pytest.raises(noukai.ReplayInvalidSessionError),
        noukai.trace_scope_sync(client, replay_session_id="abc"),
    ):
        pass
    with pytest.raises(TypeError), noukai.trace_scope_sync(replay_session_id=SID):
        pass
    with (
        pytest.raises(TypeError),
        noukai.trace_scope_sync(fake_async_client(Backend()), replay_session_id=SID),
    ):
        pass
    for value in ("true", "YES", "on", "1"):
        monkeypatch.setenv("NOUKAI_REPLAY_ENABLED", value)
        with noukai.trace_scope_sync(client, replay_session_id=SID) as scope:
            assert scope.mode == "replay"


def test_explicit_session_id_inside_a_replay_scope(replay_on: None) -> None:
    other = "22222222-2222-4222-8222-222222222222"
    backend = Backend(
        {
            SID: session(execution("g", "execute", "scoped")),
            other: {"sessionId": other, "executions": [execution("g", "execute", "other")]},
        }
    )
    client = fake_client(backend)
    with noukai.trace_scope_sync(client, replay_session_id=SID):
        assert client.flow("g").execute(message="x", session_id=other).result == "other"
        assert client.flow("g").execute(message="x", session_id=other).result == "other"  # one-shot fetches
        assert client.flow("g").execute(message="x").result == "scoped"
    fetched = [r.url.path.rsplit("/", 1)[1] for r in backend.requests]
    assert fetched == [SID, other, other]


@pytest.mark.anyio
async def test_async_replay(replay_on: None, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = Backend({SID: session(execution("g", "execute", "r1"), execution("g", "step", "a"))})
    client = fake_async_client(backend)
    async with noukai.trace_scope(client._transport, replay_session_id=SID):
        result = await client.flow("g").execute(message="x")
        steps = [s.output async for s in client.flow("g").steps(message="x")]
    assert result.result == "r1" and steps == ["a"]
    sync_client = fake_client(backend)
    async with noukai.trace_scope(sync_client, replay_session_id=SID) as scope:  # fetched on a thread
        assert scope.mode == "replay"
        await client.flow("g").execute(message="x")
        [s async for s in client.flow("g").steps(message="x")]
    other = "22222222-2222-4222-8222-222222222222"
    backend.sessions[other] = {"sessionId": other, "executions": [execution("g", "execute", "o")]}
    async with noukai.trace_scope(client, replay_session_id=SID) as scope:
        assert (await client.flow("g").execute(message="x", session_id=other)).result == "o"
        assert scope.cassette is not None
        scope.cassette._used.update({0, 1})
    monkeypatch.delenv("NOUKAI_REPLAY_ENABLED")
    with pytest.raises(noukai.ReplayDisabledError):
        async with noukai.trace_scope(client, replay_session_id=SID):
            pass


def test_replay_mode_from_a_json_fixture(replay_on: None) -> None:
    body = json.dumps(session(execution("g", "execute", {"answer": 1}))).encode()
    client = fake_client(lambda r: httpx2.Response(200, content=body))
    with noukai.trace_scope_sync(client, replay_session_id=SID):
        assert client.flow("g").execute(message="x").result == {"answer": 1}
