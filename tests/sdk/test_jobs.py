"""`execute_async()` jobs against a fake queue."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

import noukai
from tests.sdk.conftest import fake_async_client, fake_client, json_response

ACCEPTED = {"executionId": "job-1", "status": "queued", "flowId": "f", "blockCount": 2}


class Queue:
    def __init__(self, *statuses: Any) -> None:
        self.statuses = list(statuses)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if request.method == "POST":
            return json_response(202, ACCEPTED)
        if request.url.path == "/api/v1/runs/job-1":  # a "failed" job's run: it did fail
            return json_response(200, {"executionId": "job-1", "status": "failed"})
        status = self.statuses.pop(0)
        if isinstance(status, httpx2.Response):
            return status
        return json_response(200, {"executionId": "job-1", "status": status, "result": "done", "error": None})


def test_submit_poll_and_wait(slept: list[float]) -> None:
    queue = Queue("pending", "running", "completed")
    with fake_client(queue) as client:
        job = client.flow("g").execute_async(message="long", trace=True, parameters={"n": 1}, version=3)
        assert job.execution_id == "job-1" and job.accepted.status == "queued"
        status = job.wait(timeout=600.0, poll_interval=5.0)
    assert status.status == "completed" and status.result == "done" and status.done
    assert slept == [5.0, 5.0]
    post = queue.requests[0]
    assert post.url.path == "/api/v1/seq/acme/spell/g/v3/jobs"
    assert json.loads(post.content) == {
        "message": "long",
        "parameters": {"n": 1},
        "iterationsUsed": 0,
        "accumulatedOutputs": {},
        "trace": True,
    }
    assert post.headers["idempotency-key"]
    assert [r.url.path for r in queue.requests[1:]] == ["/api/v1/seq/acme/spell/g/jobs/job-1"] * 3
    assert repr(job) == "<Job job-1>"


def test_a_failed_job_is_returned_not_raised() -> None:
    with fake_client(Queue("failed")) as client:
        status = client.flow("g").execute_async(message="x").poll()
    assert status.status == "failed" and status.done


def test_a_fresh_job_may_be_unknown_for_a_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = json_response(404, {"detail": {"code": "RUN_NOT_FOUND", "message": "not yet"}})
    with fake_client(Queue(missing, missing)) as client:
        job = client.flow("g").execute_async(message="x")
        assert job.poll().status == "pending"
        monkeypatch.setattr("noukai._jobs.time.monotonic", lambda: 1e12)
        with pytest.raises(noukai.FlowNotFoundError):
            job.poll()


def test_wait_times_out(slept: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("noukai._jobs.time.monotonic", lambda: sum(slept))  # time moves by sleeping
    with fake_client(Queue("running", "running", "running")) as client:
        job = client.flow("g").execute_async(message="x")
        with pytest.raises(noukai.APITimeoutError) as info:
            job.wait(timeout=2.0, poll_interval=1.5)
    assert info.value.execution_id == "job-1" and slept == [1.5, 0.5]
    with pytest.raises(ValueError):
        job.wait(timeout=0)


@pytest.mark.anyio
async def test_async_jobs(slept: list[float]) -> None:
    async with fake_async_client(Queue("running", "completed", "failed")) as client:
        job = await client.flow("g").execute_async(message="x")
        status = await job.wait(timeout=600.0)
        assert status.status == "completed" and slept == [2.0]
        assert (await job.poll()).status == "failed"
