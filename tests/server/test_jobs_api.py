"""Jobs over HTTP: 202 on submit, the four wire states on poll, and the error paths."""

from __future__ import annotations

import time
import uuid

import httpx

from tests.conftest import ServerProcess
from tests.server.test_execute_api import assert_error, post


def poll(server: ServerProcess, run_id: str, slug: str = "echo") -> httpx.Response:
    return httpx.get(
        f"{server.api_url}/seq/dev/main/{slug}/jobs/{run_id}",
        headers={"Authorization": f"Bearer {server.dev_key}"},
    )


def test_submit_answers_202_and_poll_reaches_completed(server: ServerProcess) -> None:
    response = post(server, "/seq/dev/main/echo/jobs", {"message": "job one", "parameters": {}})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] in ("pending", "running")
    assert body["blockCount"] == 1 and body["flowId"]
    deadline = time.monotonic() + 10
    while (state := poll(server, body["executionId"]).json())["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert state == {
        "executionId": body["executionId"],
        "status": "completed",
        "result": "job one",
        "error": None,
    }


def test_draft_jobs_and_idempotency(server: ServerProcess) -> None:
    key = f"idem-{uuid.uuid4()}"
    first = post(server, "/seq/dev/main/echo/v0/jobs", {"message": "once"}, headers={"Idempotency-Key": key})
    second = post(server, "/seq/dev/main/echo/v0/jobs", {"message": "once"}, headers={"Idempotency-Key": key})
    assert first.json()["executionId"] == second.json()["executionId"]


def test_a_blank_idempotency_key_is_none_and_a_long_one_is_refused(server: ServerProcess) -> None:
    """Found by the contract test: both were 500s (the store refuses them)."""
    for path in ("/seq/dev/main/echo/jobs", "/seq/dev/main/echo/execute"):
        blank = [post(server, path, {"message": "x"}, headers={"Idempotency-Key": ""}) for _ in range(2)]
        assert [r.status_code for r in blank] in ([202, 202], [200, 200]), [r.text for r in blank]
        assert blank[0].json()["executionId"] != blank[1].json()["executionId"]
        long = post(server, path, {"message": "x"}, headers={"Idempotency-Key": "k" * 256})
        assert "Idempotency-Key" in assert_error(long, 422, "VALIDATION_ERROR")["message"]
    longest = post(
        server, "/seq/dev/main/echo/jobs", {"message": "x"}, headers={"Idempotency-Key": "k" * 255}
    )
    assert longest.status_code == 202, longest.text


def test_job_errors(server: ServerProcess) -> None:
    assert_error(
        post(
            server,
            "/seq/dev/main/echo/jobs",
            {"message": "x", "tools": [{"type": "function", "function": {"name": "f"}}]},
        ),
        400,
        "TOOLS_REQUIRE_SYNC_EXECUTE",
    )
    assert_error(post(server, "/seq/dev/main/echo/jobs", {}), 400, "MISSING_MESSAGE")
    assert_error(post(server, "/seq/dev/main/nope/jobs", {"message": "x"}), 404, "FLOW_NOT_FOUND")
    assert_error(poll(server, str(uuid.uuid4())), 404, "RUN_NOT_FOUND")
    run_id = post(server, "/seq/dev/main/echo/jobs", {"message": "mine"}).json()["executionId"]
    other = server.create_key("elsewhere")
    response = httpx.get(
        f"{server.api_url}/seq/elsewhere/main/echo/jobs/{run_id}",
        headers={"Authorization": f"Bearer {other}"},
    )
    assert_error(response, 404, "RUN_NOT_FOUND")
