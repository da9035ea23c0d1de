"""Run handles and `client.runs` against a fake server."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

import noukai
from tests.sdk.conftest import fake_async_client, fake_client, json_response

STEP = {
    "stepId": "s-1",
    "attempt": 2,
    "status": "completed",
    "startedAt": "2026-06-05T00:00:00Z",
    "durationMs": 12,
    "tokens": {"prompt": 1, "completion": 2, "total": 3},
    "costUsd": "0.000150",
}
TRACE = {"flowRun": {"id": "run-1", "flowId": "f", "status": "completed", "stepCount": 1}, "steps": [STEP]}


class Server:
    def __init__(self) -> None:
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        path = request.url.path
        if path.endswith("/runs/run-1/trace"):
            return json_response(200, TRACE)
        if "/steps/" in path:
            if request.url.params.get("attempt") == "all":
                return json_response(200, {"stepId": "s-1", "attempts": [{**STEP, "attempt": 1}, STEP]})
            return json_response(200, STEP)
        if path.endswith("/cancel"):
            return json_response(
                200, {"executionId": "run-1", "status": "cancelled", "cancelRequested": True}
            )
        return json_response(200, {"executionId": "run-1", "status": "running", "lastSeq": 4, "cursor": 1})


def query(request: httpx2.Request) -> dict[str, Any]:
    return dict(request.url.params)


def test_traces() -> None:
    server = Server()
    with fake_client(server) as client:
        run = client.flow("g").run("run-1")
        trace = run.trace()
        assert trace.summary.id == "run-1" and trace.steps[0].cost_usd == "0.000150"
        assert trace.steps[0].tokens is not None and trace.steps[0].started_at is not None
        latest = run.step_trace("s-1")
        assert isinstance(latest, noukai.StepTrace) and latest.attempt == 2
        all_attempts = run.step_trace("s-1", attempt="all")
        assert isinstance(all_attempts, noukai.StepAttempts) and len(all_attempts.attempts) == 2
        run.step_trace("s-1", attempt=1, loop_index=3)
        with pytest.raises(ValueError):
            run.step_trace("s-1", attempt=0)
    paths = [r.url.path for r in server.requests]
    assert paths[0] == "/api/v1/seq/acme/spell/g/runs/run-1/trace"
    assert paths[1] == "/api/v1/seq/acme/spell/g/runs/run-1/steps/s-1/trace"
    assert [query(r) for r in server.requests[1:]] == [
        {},
        {"attempt": "all"},
        {"attempt": "1", "loop_index": "3"},
    ]
    assert repr(run) == "<Run run-1>"


def test_state_and_cancel() -> None:
    server = Server()
    with fake_client(server) as client:
        run = client.flow("g").run("run-1")
        assert run.retrieve().status == "running" and not run.retrieve().terminal
        cancelled = run.cancel()
        assert cancelled.status == "cancelled" and cancelled.cancel_requested
        assert client.runs.cancel("run-1").execution_id == "run-1"
        with pytest.raises(ValueError):
            client.runs.retrieve("")
        with pytest.raises(ValueError):
            client.runs.events("run-1", since_id=-1)
    assert server.requests[2].method == "POST" and server.requests[2].url.path == "/api/v1/runs/run-1/cancel"


@pytest.mark.anyio
async def test_async_runs() -> None:
    server = Server()
    async with fake_async_client(server) as client:
        run = client.flow("g").run("run-1")
        assert (await run.trace()).flow_run.status == "completed"
        assert isinstance(await run.step_trace("s-1", attempt="all"), noukai.StepAttempts)
        assert isinstance(await run.step_trace("s-1", attempt="latest"), noukai.StepTrace)
        assert (await run.retrieve()).last_seq == 4
        assert (await run.cancel()).status == "cancelled"
