"""A retried `flow` step starts a fresh child, on a real server: after a child's transient failure
(which fails the step retryably) and after a `STEP_TIMEOUT` (which cancels the child). A child's
other failures are not retried. A parent whose worker is lost takes its child over instead:
tests/server/test_subflows.py."""

from __future__ import annotations

import time
from typing import Any

import httpx

from noukai_server.runtime.child_runs import child_run_id
from tests.conftest import ServerProcess
from tests.server.test_execute_api import post
from tests.server.test_subflows import auth, events, put, run_info, trace_steps, wait_for

# The step waits 2 to 4 s before its retry: time for the test to change the child's draft, which
# the retry's fresh child is made from (a child keeps the document it was created with).
RETRY = {"max_attempts": 2, "initial_backoff_seconds": 4}


def start(server: ServerProcess, slug: str) -> str:
    response = post(server, f"/seq/dev/main/{slug}/jobs", {})
    assert response.status_code in (200, 202), response.text
    run_id: str = response.json()["executionId"]
    return run_id


def wait_until_ended(server: ServerProcess, run_id: str, status: str) -> dict[str, Any]:
    """`wait_for`, for a run that may not exist yet (a child the parent has still to create)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        response = httpx.get(f"{server.api_url}/runs/{run_id}", headers=auth(server), timeout=10)
        if response.status_code == 200 and response.json()["status"] == status:
            return run_info(server, run_id)
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never became {status}:\n{server.log_text()[-3000:]}")


def fast_child(slug: str) -> dict[str, Any]:
    return {"slug": slug, "steps": [{"id": "ask", "type": "llm", "model": "builtin:echo", "prompt": "fresh"}]}


def retry_codes(server: ServerProcess, run_id: str) -> list[str]:
    return [e["error"]["code"] for e in events(server, run_id) if e["eventType"] == "step_retrying"]


def test_a_child_that_fails_transiently_is_run_afresh_by_the_steps_retry(server: ServerProcess) -> None:
    flaky = {
        "slug": "rt-flaky-child",
        "retry": {"max_attempts": 1},  # its own step does not retry: the child fails at once
        "steps": [
            {
                "id": "ask",
                "type": "llm",
                "model": "builtin:flaky",
                "prompt": "hi",
                "params": {"fail_times": 9},
            }
        ],
    }
    parent = {
        "slug": "rt-flaky-parent",
        "steps": [{"id": "delegate", "type": "flow", "flow": "dev/main/rt-flaky-child", "retry": RETRY}],
    }
    assert put(server, flaky).status_code == 200
    assert put(server, parent).status_code == 200
    parent_id = start(server, "rt-flaky-parent")
    first = child_run_id(parent_id, "delegate", "0")
    assert wait_until_ended(server, first, "failed")["error"]["code"] == "PROVIDER_ERROR"
    assert put(server, fast_child("rt-flaky-child")).status_code == 200

    assert wait_for(server, parent_id, "completed")["result"] == "fresh"
    second = child_run_id(parent_id, "delegate", "0", attempt=2)
    assert second != first
    assert run_info(server, second)["status"] == "completed"
    assert run_info(server, first)["status"] == "failed"  # the failed child stays as it ended
    assert retry_codes(server, parent_id) == ["SUBFLOW_FAILED"]
    assert trace_steps(server, "rt-flaky-parent", parent_id) == [("delegate", 2, "completed")]
    nested = [e for e in events(server, parent_id) if e["eventType"] == "subflow_event"]
    assert [e["childRunId"] for e in nested if e["event"]["eventType"] == "run_started"] == [first, second]


def test_a_step_timeout_cancels_the_child_and_the_retry_runs_a_fresh_one(server: ServerProcess) -> None:
    slow = {
        "slug": "rt-slow-child",
        "steps": [
            {
                "id": "ask",
                "type": "llm",
                "model": "builtin:echo",
                "prompt": " ".join(f"w{i}" for i in range(100)),
                "params": {"token_delay_ms": 100},  # about 10 s: far past the step's timeout
            }
        ],
    }
    parent = {
        "slug": "rt-slow-parent",
        "steps": [
            {
                "id": "delegate",
                "type": "flow",
                "flow": "dev/main/rt-slow-child",
                "timeout_seconds": 1,
                "retry": RETRY,
            }
        ],
    }
    assert put(server, slow).status_code == 200
    assert put(server, parent).status_code == 200
    parent_id = start(server, "rt-slow-parent")
    first = child_run_id(parent_id, "delegate", "0")
    wait_until_ended(server, first, "cancelled")
    assert put(server, fast_child("rt-slow-child")).status_code == 200

    assert wait_for(server, parent_id, "completed")["result"] == "fresh"
    second = child_run_id(parent_id, "delegate", "0", attempt=2)
    assert run_info(server, second)["status"] == "completed"
    assert events(server, first)[-1]["eventType"] == "run_cancelled"
    assert retry_codes(server, parent_id) == ["STEP_TIMEOUT"]
    assert trace_steps(server, "rt-slow-parent", parent_id) == [("delegate", 2, "completed")]


def test_a_child_that_fails_for_good_is_not_retried(server: ServerProcess) -> None:
    failing = {
        "slug": "rt-broken-child",
        "steps": [{"id": "boom", "type": "template", "template": "{{ parameters.x.y.z }}"}],
    }
    parent = {
        "slug": "rt-broken-parent",
        "steps": [
            {
                "id": "call",
                "type": "flow",
                "flow": "dev/main/rt-broken-child",
                "inputs": {"x": {}},
                "retry": {"max_attempts": 3, "initial_backoff_seconds": 0},
            }
        ],
    }
    assert put(server, failing).status_code == 200
    assert put(server, parent).status_code == 200
    parent_id = start(server, "rt-broken-parent")
    info = wait_for(server, parent_id, "failed")
    assert info["error"]["code"] == "SUBFLOW_FAILED" and "TEMPLATE_ERROR" in info["error"]["message"]
    assert retry_codes(server, parent_id) == []
    again = httpx.get(
        f"{server.api_url}/runs/{child_run_id(parent_id, 'call', '0', attempt=2)}", headers=auth(server)
    )
    assert again.status_code == 404
