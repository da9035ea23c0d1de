"""A cancelled job is told from a failed one: the job answer says "failed" (the published SDK
accepts only four statuses), with a `RUN_CANCELLED: ...` error; `poll()` and `wait()` report
"cancelled", from the run's own status or, when that cannot be read, from the error's code."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import httpx2
import pytest

import noukai
from tests.conftest import ServerProcess
from tests.sdk.conftest import fake_async_client, fake_client, json_response, put_slow_flow

ACCEPTED = {"executionId": "job-1", "status": "queued", "flowId": "f", "blockCount": 1}
CANCELLED_ERROR = "RUN_CANCELLED: the run was cancelled"


class Server:
    """Jobs answer `statuses` in turn; `GET /runs/job-1` answers `run`: a run status, or an
    (HTTP status, body) answer."""

    def __init__(self, *statuses: tuple[str, str | None], run: str | tuple[int, Any]) -> None:
        self.statuses = list(statuses)
        self.run = run
        self.paths: list[str] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.paths.append(request.url.path)
        if request.method == "POST":
            return json_response(202, ACCEPTED)
        if request.url.path == "/api/v1/runs/job-1":
            if isinstance(self.run, tuple):
                return json_response(*self.run)
            return json_response(200, {"executionId": "job-1", "status": self.run, "lastSeq": 4})
        status, error = self.statuses.pop(0)
        return json_response(200, {"executionId": "job-1", "status": status, "result": None, "error": error})


NOT_FOUND = (404, {"detail": {"code": "NOT_FOUND", "message": "no such route"}})
FORBIDDEN = (403, {"detail": {"code": "FORBIDDEN", "message": "no"}})


def test_wait_reports_a_cancelled_job_as_cancelled(slept: list[float]) -> None:
    server = Server(("running", None), ("failed", CANCELLED_ERROR), run="cancelled")
    with fake_client(server) as client:
        status = client.flow("g").execute_async(message="x").wait(timeout=60.0, poll_interval=1.0)
    assert status.status == "cancelled" and status.cancelled and status.done
    assert status.error == CANCELLED_ERROR and status.error_code == "RUN_CANCELLED"
    assert server.paths[-1] == "/api/v1/runs/job-1" and slept == [1.0]


def test_a_failed_job_stays_failed() -> None:
    server = Server(("failed", "PROVIDER_ERROR: upstream said no"), run="failed")
    with fake_client(server) as client:
        status = client.flow("g").execute_async(message="x").poll()
    assert status.status == "failed" and not status.cancelled and status.done
    assert status.error_code == "PROVIDER_ERROR"


def test_the_runs_status_is_preferred_to_the_error_text() -> None:
    server = Server(("failed", "INTERNAL_ERROR: stopped"), ("failed", CANCELLED_ERROR), run="cancelled")
    with fake_client(server) as client:
        job = client.flow("g").execute_async(message="x")
        assert job.poll().status == "cancelled"  # the run says so, whatever the error says
        server.run = "failed"
        assert job.poll().status == "failed"  # the run failed, whatever the error says


@pytest.mark.parametrize("run", [NOT_FOUND, FORBIDDEN, (200, {"unexpected": True})])
def test_without_the_run_the_error_code_decides(run: tuple[int, Any]) -> None:
    server = Server(("failed", CANCELLED_ERROR), ("failed", "TEMPLATE_ERROR: bad"), run=run)
    with fake_client(server) as client:
        job = client.flow("g").execute_async(message="x")
        assert job.poll().status == "cancelled"
        assert job.poll().status == "failed"


def test_only_a_failed_job_asks_the_run() -> None:
    server = Server(("pending", None), ("running", None), ("completed", None), run="cancelled")
    with fake_client(server) as client:
        job = client.flow("g").execute_async(message="x")
        assert [job.poll().status for _ in range(3)] == ["pending", "running", "completed"]
    assert "/api/v1/runs/job-1" not in server.paths


def test_error_code() -> None:
    def status(error: Any) -> noukai.JobStatus:
        return noukai.JobStatus(execution_id="j", status="failed", error=error)

    assert status("RUN_CANCELLED: the run was cancelled").error_code == "RUN_CANCELLED"
    assert status("STEP_TIMEOUT:late").error_code == "STEP_TIMEOUT"
    assert status("the run failed: badly").error_code is None
    assert status(None).error_code is None and status({"code": "X"}).error_code is None


@pytest.mark.anyio
async def test_async_wait_and_poll_report_a_cancelled_job(slept: list[float]) -> None:
    server = Server(
        ("running", None), ("failed", CANCELLED_ERROR), ("failed", CANCELLED_ERROR), run="cancelled"
    )
    async with fake_async_client(server) as client:
        job = await client.flow("g").execute_async(message="x")
        status = await job.wait(timeout=60.0, poll_interval=1.0)
        assert status.status == "cancelled" and status.error_code == "RUN_CANCELLED"
        server.run = NOT_FOUND
        assert (await job.poll()).cancelled  # by the error's code
    assert slept == [1.0]


@pytest.mark.anyio
async def test_async_failed_job_stays_failed() -> None:
    server = Server(("failed", "PROVIDER_ERROR: no"), run="failed")
    async with fake_async_client(server) as client:
        job = await client.flow("g").execute_async(message="x")
        assert (await job.poll()).status == "failed"


# Against a real server: a job cancelled while it runs.


def test_a_job_cancelled_on_a_real_server(server: ServerProcess, client: noukai.Noukai) -> None:
    slug = put_slow_flow(server, words=400, delay_ms=20)
    job = client.flow(slug).execute_async(message="go")
    deadline = time.monotonic() + 30
    while job.poll().status != "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    client.runs.cancel(job.execution_id)
    status = job.wait(timeout=30.0, poll_interval=0.05)
    assert status.status == "cancelled" and status.cancelled and status.done
    assert status.error_code == "RUN_CANCELLED"
    # The job answer itself keeps the contract's four statuses, for the published SDK.
    raw = httpx.get(
        f"{server.api_url}/seq/dev/main/{slug}/jobs/{job.execution_id}",
        headers={"Authorization": f"Bearer {server.dev_key}"},
        timeout=30,
    ).json()
    assert raw["status"] == "failed" and raw["error"].startswith("RUN_CANCELLED:")


@pytest.mark.anyio
async def test_an_async_job_cancelled_on_a_real_server(
    server: ServerProcess, aclient: noukai.AsyncNoukai
) -> None:
    slug = put_slow_flow(server, words=400, delay_ms=20)
    job = await aclient.flow(slug).execute_async(message="go")
    deadline = time.monotonic() + 30
    while (await job.poll()).status != "running" and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await aclient.runs.cancel(job.execution_id)
    status = await job.wait(timeout=30.0, poll_interval=0.05)
    assert status.status == "cancelled" and status.error_code == "RUN_CANCELLED"
