"""Replay sessions over a real server: what `X-Session-Id` records, and `GET /seq/sessions/{id}`
exactly as contract 6.2 describes it, with every error path."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.server.test_execute_api import assert_error, post
from tests.server.test_traces_api import ISO, new_flow

STEP_BODY = {
    "stepIndex": 0,
    "accumulatedOutputs": {},
    "parameters": {},
    "inputOverrides": {},
    "runRemaining": False,
    "iterationsUsed": 0,
    "trace": False,
}


def session(server: ServerProcess, session_id: str, key: str | None = None) -> httpx.Response:
    return httpx.get(
        f"{server.api_url}/seq/sessions/{session_id}",
        headers={"Authorization": f"Bearer {key or server.dev_key}"},
    )


def fetch(server: ServerProcess, session_id: str) -> dict[str, Any]:
    response = session(server, session_id)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def tagged(session_id: str) -> dict[str, str]:
    return {"X-Session-Id": session_id}


def run_steps(server: ServerProcess, slug: str, message: str, session_id: str, steps: int) -> str:
    """Drive the paced protocol the way the published SDK does: one /step call per step, each
    carrying the session header."""
    execution_id: str | None = None
    outputs: dict[str, Any] = {}
    for index in range(steps):
        body: dict[str, Any] = {**STEP_BODY, "stepIndex": index, "accumulatedOutputs": outputs}
        if execution_id is None:
            body["message"] = message
        else:
            body["executionId"] = execution_id
        with httpx.stream(
            "POST",
            f"{server.api_url}/seq/dev/main/{slug}/step",
            json=body,
            headers={"Authorization": f"Bearer {server.dev_key}", **tagged(session_id)},
        ) as r:
            text = r.read().decode()
        found = re.search(r'"executionId":"([0-9a-f-]{36})"', text)
        assert found is not None, text
        execution_id = found.group(1)
        for match in re.finditer(r"event: step_completed\ndata: (\{.*\})", text):
            import json

            payload = json.loads(match.group(1))
            outputs[payload["stepId"]] = payload["output"]
    assert execution_id is not None
    return execution_id


def wait_job(server: ServerProcess, slug: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        state: dict[str, Any] = httpx.get(
            f"{server.api_url}/seq/dev/main/{slug}/jobs/{run_id}",
            headers={"Authorization": f"Bearer {server.dev_key}"},
        ).json()
        if state["status"] in ("completed", "failed"):
            return state
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_session_records_one_entry_per_run_in_start_order(server: ServerProcess) -> None:
    sid = str(uuid.uuid4())
    executed = post(server, "/seq/dev/main/three-steps/execute", {"message": "a"}, headers=tagged(sid)).json()
    stepped = run_steps(server, "three-steps", "b", sid, steps=3)
    job = post(server, "/seq/dev/main/echo/v0/jobs", {"message": "c"}, headers=tagged(sid)).json()
    wait_job(server, "echo", job["executionId"])
    maybe = post(
        server,
        "/seq/dev/main/maybe/execute",
        {"message": "d", "parameters": {"polish": False}},
        headers=tagged(sid),
    ).json()
    # Not in the session: untagged calls, and calls tagged with another session.
    post(server, "/seq/dev/main/echo/execute", {"message": "untagged"})
    post(server, "/seq/dev/main/echo/execute", {"message": "other"}, headers=tagged(str(uuid.uuid4())))

    body = fetch(server, sid)
    assert body["sessionId"] == sid
    executions = body["executions"]
    assert [e["executionId"] for e in executions] == [
        executed["executionId"],
        stepped,
        job["executionId"],
        maybe["executionId"],
    ]
    assert [(e["slug"], e["triggerType"]) for e in executions] == [
        ("three-steps", "execute"),
        ("three-steps", "step"),
        ("echo", "job"),
        ("maybe", "execute"),
    ]
    for execution in executions:
        assert execution["status"] == "completed" and execution["errorAtStep"] is None
        assert execution["traceCaptureMode"] == "full" and execution["snapshotsAvailable"] is True
        assert ISO.match(execution["startedAt"]) and ISO.match(execution["completedAt"])
        assert isinstance(execution["flowId"], str)
        for step in execution["steps"]:
            assert isinstance(step["stepId"], str) and step["attempt"] == 1 and step["status"] == "completed"
            assert step["errorSnapshot"] is None and step["truncated"] is False
    starts = [e["startedAt"] for e in executions]
    assert starts == sorted(starts)
    first, paced, queued, skipping = executions
    assert [s["stepId"] for s in first["steps"]] == ["one", "two", "three"]
    assert [s["outputSnapshot"] for s in first["steps"]] == ["one: a", "two: one: a", "three: two: one: a"]
    assert first["steps"][-1]["outputSnapshot"] == executed["result"]
    assert first["steps"][0]["inputSnapshot"] == {"model": "builtin:echo", "prompt": "one: a"}
    assert [s["outputSnapshot"] for s in paced["steps"]] == ["one: b", "two: one: b", "three: two: one: b"]
    assert [s["outputSnapshot"] for s in queued["steps"]] == ["c"]
    # The skipped step is left out, so the last snapshot is the run's result.
    assert [s["stepId"] for s in skipping["steps"]] == ["draft"]
    assert skipping["steps"][-1]["outputSnapshot"] == maybe["result"] == "d"


def test_a_retried_step_appears_once_as_its_final_attempt(server: ServerProcess) -> None:
    slug = new_flow(
        server,
        {
            "slug": "flaky",
            "retry": {"initial_backoff_seconds": 0.01},
            "steps": [
                {
                    "id": "ask",
                    "type": "llm",
                    "model": "builtin:flaky",
                    "prompt": "{{ message }}",
                    "params": {"fail_times": 2},
                }
            ],
        },
    )
    sid = str(uuid.uuid4())
    result = post(server, f"/seq/dev/main/{slug}/execute", {"message": "x"}, headers=tagged(sid)).json()
    [execution] = fetch(server, sid)["executions"]
    [step] = execution["steps"]
    assert (step["stepId"], step["attempt"], step["status"]) == ("ask", 3, "completed")
    assert step["outputSnapshot"] == result["result"] == "x"


def test_a_failed_run_names_its_step_and_error(server: ServerProcess) -> None:
    sid = str(uuid.uuid4())
    response = post(
        server, "/seq/dev/main/broken/execute", {"parameters": {"config": {}}}, headers=tagged(sid)
    )
    detail = assert_error(response, 422, "TEMPLATE_ERROR")
    [execution] = fetch(server, sid)["executions"]
    assert (execution["status"], execution["errorAtStep"]) == ("failed", "boom")
    ok, boom = execution["steps"]
    assert (ok["status"], ok["outputSnapshot"]) == ("completed", "fine")
    assert boom["status"] == "failed" and boom["outputSnapshot"] is None
    assert boom["errorSnapshot"] == {"code": "TEMPLATE_ERROR", "message": detail["message"]}


@pytest.mark.parametrize(
    ("mode", "available"), [("full", True), ("redacted", True), ("metadata_only", False), ("off", False)]
)
def test_snapshots_follow_the_capture_mode(server: ServerProcess, mode: str, available: bool) -> None:
    slug = new_flow(
        server,
        {
            "slug": "cap",
            "trace_capture_mode": mode,
            "steps": [{"id": "say", "type": "llm", "model": "builtin:echo", "prompt": "{{ message }}"}],
        },
    )
    sid = str(uuid.uuid4())
    post(server, f"/seq/dev/main/{slug}/execute", {"message": "token nk_secret_value_1"}, headers=tagged(sid))
    [execution] = fetch(server, sid)["executions"]
    assert (execution["traceCaptureMode"], execution["snapshotsAvailable"]) == (mode, available)
    [step] = execution["steps"]
    expected = {"full": "token nk_secret_value_1", "redacted": "token [redacted]"}.get(mode)
    assert step["outputSnapshot"] == expected
    assert (step["inputSnapshot"] is not None) is available


def test_errors(server: ServerProcess) -> None:
    assert_error(session(server, str(uuid.uuid4())), 404, "SESSION_NOT_FOUND")
    assert_error(session(server, "not-even-a-uuid"), 404, "SESSION_NOT_FOUND")
    assert_error(session(server, "x" * 300), 404, "SESSION_NOT_FOUND")
    sid = str(uuid.uuid4())
    post(server, "/seq/dev/main/echo/execute", {"message": "mine"}, headers=tagged(sid))
    assert_error(session(server, sid, key=server.create_key("elsewhere")), 403, "FORBIDDEN")
    assert_error(session(server, sid, key=server.create_key("dev", "side")), 403, "FORBIDDEN")
    assert session(server, sid, key=server.create_key("dev", "main")).status_code == 200
    assert_error(session(server, sid, key="nk_nope"), 401, "UNAUTHENTICATED")


def test_a_session_id_shared_by_two_tenants_shows_each_its_own_runs(server: ServerProcess) -> None:
    other_key = server.create_key("shared-org")
    server.put_flow(
        other_key,
        "shared-org",
        "main",
        {
            "slug": "echo",
            "steps": [{"id": "say", "type": "llm", "model": "builtin:echo", "prompt": "{{ message }}"}],
        },
    )
    sid = str(uuid.uuid4())
    mine = post(server, "/seq/dev/main/echo/execute", {"message": "mine"}, headers=tagged(sid)).json()
    theirs = post(
        server, "/seq/shared-org/main/echo/execute", {"message": "theirs"}, key=other_key, headers=tagged(sid)
    ).json()
    assert [e["executionId"] for e in fetch(server, sid)["executions"]] == [mine["executionId"]]
    response = session(server, sid, key=other_key)
    assert [e["executionId"] for e in response.json()["executions"]] == [theirs["executionId"]]


def test_session_header_values(server: ServerProcess) -> None:
    # Any string is a session id (the SDK's session_id= kwarg is not validated); empty records nothing.
    post(server, "/seq/dev/main/echo/execute", {"message": "named"}, headers=tagged("my test session"))
    assert len(fetch(server, "my test session")["executions"]) >= 1
    response = post(server, "/seq/dev/main/echo/execute", {"message": "blank"}, headers=tagged(""))
    assert response.status_code == 200
    assert_error(session(server, "%20"), 404, "SESSION_NOT_FOUND")
    detail = assert_error(
        post(server, "/seq/dev/main/echo/execute", {"message": "long"}, headers=tagged("s" * 256)),
        422,
        "VALIDATION_ERROR",
    )
    assert "X-Session-Id" in detail["message"]


def test_sessions_expire(make_server: Any) -> None:
    server = make_server({"NOUKAI_SESSION_RETENTION_SECONDS": "1"})
    sid = str(uuid.uuid4())
    post(server, "/seq/dev/main/echo/execute", {"message": "brief"}, headers=tagged(sid))
    assert session(server, sid).status_code == 200
    time.sleep(1.2)
    assert_error(session(server, sid), 410, "SESSION_EXPIRED")
