"""A server killed mid-run (SIGKILL) loses nothing: after a restart every queued job completes, and
the step that was cut off runs again as attempt 2, which its trace shows beside attempt 1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests._services import fresh_postgres_database
from tests.conftest import ServerProcess
from tests.server.test_execute_api import post

WORDS = 60
DELAY_MS = 50  # the slow step streams for about 3 s


def auth(server: ServerProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.dev_key}"}


def job_state(server: ServerProcess, slug: str, run_id: str) -> dict[str, Any]:
    state: dict[str, Any] = httpx.get(
        f"{server.api_url}/seq/dev/main/{slug}/jobs/{run_id}", headers=auth(server), timeout=5
    ).json()
    return state


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_args(request: pytest.FixtureRequest) -> Iterator[tuple[str, ...]]:
    if request.param == "sqlite":
        yield ()
        return
    with fresh_postgres_database() as url:
        yield ("--database-url", url)


def test_jobs_survive_a_killed_server(database_args: tuple[str, ...], make_server: Any) -> None:
    # One run at a time, so the quick jobs are still queued when the server dies; a short lease,
    # so the killed server's run is claimable again two seconds after its last heartbeat.
    server: ServerProcess = make_server(
        {"NOUKAI_LEASE_SECONDS": "2"}, extra_args=("--concurrency", "1", *database_args)
    )
    text = " ".join(f"w{i}" for i in range(WORDS))
    server.put_flow(
        server.dev_key,
        "dev",
        "main",
        {
            "slug": "slow-echo",
            "steps": [
                {"id": "intro", "type": "template", "template": "start"},
                {
                    "id": "slow",
                    "type": "llm",
                    "model": "builtin:echo",
                    "prompt": "{{ message }}",
                    "params": {"token_delay_ms": DELAY_MS},
                },
                {
                    "id": "outro",
                    "type": "template",
                    "template": "{{ steps.intro.output }}: {{ steps.slow.output }}",
                },
            ],
        },
    )
    slow = post(server, "/seq/dev/main/slow-echo/jobs", {"message": text}).json()["executionId"]
    quick = [
        post(server, "/seq/dev/main/three-steps/jobs", {"message": f"q{n}"}).json()["executionId"]
        for n in range(3)
    ]

    # Kill the server while the slow step is streaming its answer.
    deadline = time.monotonic() + 15
    while True:
        trace = httpx.get(
            f"{server.api_url}/seq/dev/main/slow-echo/runs/{slow}/trace", headers=auth(server)
        ).json()
        if any(step["stepId"] == "slow" and step["status"] == "running" for step in trace["steps"]):
            break
        assert time.monotonic() < deadline, trace
        time.sleep(0.05)
    time.sleep(0.5)
    assert job_state(server, "slow-echo", slow)["status"] == "running"
    assert all(job_state(server, "three-steps", run_id)["status"] == "pending" for run_id in quick)
    server.restart(kill=True)

    deadline = time.monotonic() + 60
    pending = {slow: "slow-echo", **{run_id: "three-steps" for run_id in quick}}
    results: dict[str, Any] = {}
    while pending:
        for run_id, slug in list(pending.items()):
            state = job_state(server, slug, run_id)
            assert state["status"] != "failed", state
            if state["status"] == "completed":
                results[run_id] = state["result"]
                del pending[run_id]
        assert time.monotonic() < deadline, f"still pending: {pending}\n{server.log_text()[-3000:]}"
        time.sleep(0.1)

    assert results[slow] == f"start: {text}"
    assert [results[run_id] for run_id in quick] == [f"three: two: one: q{n}" for n in range(3)]

    steps = httpx.get(
        f"{server.api_url}/seq/dev/main/slow-echo/runs/{slow}/steps/slow/trace",
        params={"attempt": "all"},
        headers=auth(server),
    ).json()
    first, second = steps["attempts"]
    assert (first["attempt"], first["status"]) == (1, "failed")
    assert first["errorContext"]["code"] == "STEP_INTERRUPTED"
    assert (second["attempt"], second["status"]) == (2, "completed")
    assert second["outputContext"] == {"output": text}
    trace = httpx.get(
        f"{server.api_url}/seq/dev/main/slow-echo/runs/{slow}/trace", headers=auth(server)
    ).json()
    assert [(s["stepId"], s["attempt"], s["status"]) for s in trace["steps"]] == [
        ("intro", 1, "completed"),
        ("slow", 2, "completed"),
        ("outro", 1, "completed"),
    ]
    assert trace["flowRun"]["status"] == "completed"
    # Quick jobs that never started before the crash ran once.
    for run_id in quick:
        quick_trace = httpx.get(
            f"{server.api_url}/seq/dev/main/three-steps/runs/{run_id}/trace", headers=auth(server)
        ).json()
        assert {s["attempt"] for s in quick_trace["steps"]} == {1}
