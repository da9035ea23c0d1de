"""Step retries through a real server: /execute, /step and jobs all see a transiently failing
model succeed on a later attempt, and the log tells the story attempt by attempt."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from tests.conftest import ServerProcess
from tests.server.test_execute_api import assert_error, post
from tests.sse_client import iter_frames


def flaky_flow(server: ServerProcess, fail_times: int, **retry: Any) -> str:
    slug = f"flaky-{uuid.uuid4().hex[:8]}"
    server.put_flow(
        server.dev_key,
        "dev",
        "main",
        {
            "slug": slug,
            "retry": {"initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.05, **retry},
            "steps": [
                {
                    "id": "ask",
                    "type": "llm",
                    "model": "builtin:flaky",
                    "prompt": "{{ message }}",
                    "params": {"fail_times": fail_times},
                },
                {"id": "shape", "type": "template", "template": "<{{ steps.ask.output }}>"},
            ],
        },
    )
    return slug


def events(server: ServerProcess, run_id: str) -> list[dict[str, Any]]:
    with httpx.stream(
        "GET", f"{server.api_url}/runs/{run_id}/events", headers={"Authorization": f"Bearer {server.dev_key}"}
    ) as response:
        return [frame.json for frame in iter_frames(response) if frame.event]


def test_execute_succeeds_after_retries(server: ServerProcess) -> None:
    slug = flaky_flow(server, 2)
    response = post(server, f"/seq/dev/main/{slug}/execute", {"message": "hi there"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"] == "<hi there>"
    log = events(server, body["executionId"])
    ask = [
        (e["eventType"], e["attempt"])
        for e in log
        if e.get("stepId") == "ask" and e["eventType"] in ("step_started", "step_retrying", "step_completed")
    ]
    assert ask == [
        ("step_started", 1),
        ("step_retrying", 1),
        ("step_started", 2),
        ("step_retrying", 2),
        ("step_started", 3),
        ("step_completed", 3),
    ]
    retrying = [e for e in log if e["eventType"] == "step_retrying"]
    assert [r["nextAttempt"] for r in retrying] == [2, 3]
    assert all(r["error"]["code"] == "PROVIDER_ERROR" and isinstance(r["backoffMs"], int) for r in retrying)
    assert all("attempt" in e for e in log if e["eventType"].startswith("step_"))


def test_execute_fails_when_attempts_run_out(server: ServerProcess) -> None:
    slug = flaky_flow(server, 5, max_attempts=2)
    detail = assert_error(
        post(server, f"/seq/dev/main/{slug}/execute", {"message": "x"}), 502, "PROVIDER_ERROR"
    )
    assert detail["stepId"] == "ask"
    log = events(server, detail["executionId"])
    assert [e["attempt"] for e in log if e["eventType"] == "step_started"] == [1, 2]
    [error] = [e for e in log if e["eventType"] == "step_error"]
    assert error["attempt"] == 2


def test_step_protocol_streams_every_attempt_in_one_segment(server: ServerProcess) -> None:
    slug = flaky_flow(server, 1)
    body = {
        "stepIndex": 0,
        "accumulatedOutputs": {},
        "message": "seg",
        "parameters": {},
        "inputOverrides": {},
        "runRemaining": False,
        "iterationsUsed": 0,
        "trace": False,
    }
    with httpx.stream(
        "POST",
        f"{server.api_url}/seq/dev/main/{slug}/step",
        json=body,
        headers={"Authorization": f"Bearer {server.dev_key}"},
    ) as response:
        kinds = [(f.event, f.json.get("attempt")) for f in iter_frames(response) if f.event]
    assert kinds[0] == ("run_started", None)
    assert ("step_retrying", 1) in kinds
    assert kinds[-2:] == [("step_completed", 2), ("step_paused", None)]


def test_a_job_polls_running_through_its_retries(server: ServerProcess) -> None:
    slug = flaky_flow(server, 1)
    run_id = post(server, f"/seq/dev/main/{slug}/jobs", {"message": "job"}).json()["executionId"]
    deadline = time.monotonic() + 15
    while True:
        state = httpx.get(
            f"{server.api_url}/seq/dev/main/{slug}/jobs/{run_id}",
            headers={"Authorization": f"Bearer {server.dev_key}"},
        ).json()
        if state["status"] in ("completed", "failed"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert state == {"executionId": run_id, "status": "completed", "result": "<job>", "error": None}
