"""Run and step traces over a real server: every StepTrace field strictly typed, attempts, loop
iterations, capture modes, the size cap, tenancy and every error path."""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.server.test_execute_api import assert_error, post

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
COST = re.compile(r"^\d+\.\d{6}$")
STATUSES = {"running", "completed", "failed", "skipped"}


def get(server: ServerProcess, path: str, key: str | None = None, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{server.api_url}{path}", params=params, headers={"Authorization": f"Bearer {key or server.dev_key}"}
    )


def run_trace(server: ServerProcess, run_id: str, slug: str = "echo") -> dict[str, Any]:
    response = get(server, f"/seq/dev/main/{slug}/runs/{run_id}/trace")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def step_trace(server: ServerProcess, run_id: str, step_id: str, **params: Any) -> httpx.Response:
    return get(server, f"/seq/dev/main/any/runs/{run_id}/steps/{step_id}/trace", **params)


def check_step_trace(trace: dict[str, Any]) -> None:
    """Every field of contract 2.6, with the exact type the published SDK validates."""
    assert isinstance(trace["stepId"], str)
    assert isinstance(trace["attempt"], int) and trace["attempt"] >= 1
    assert trace["status"] in STATUSES
    for name in ("startedAt", "completedAt"):
        if name in trace:
            assert ISO.match(trace[name]), trace[name]
    if "loopIndex" in trace:
        assert isinstance(trace["loopIndex"], int)
    if "durationMs" in trace:
        assert isinstance(trace["durationMs"], int) and trace["durationMs"] >= 0
    if "modelUsed" in trace:
        assert isinstance(trace["modelUsed"], str)
    assert set(trace["tokens"]) == {"prompt", "completion", "total"}
    assert all(isinstance(v, int) for v in trace["tokens"].values())
    assert trace["tokens"]["total"] == trace["tokens"]["prompt"] + trace["tokens"]["completion"]
    assert isinstance(trace["costUsd"], str) and COST.match(trace["costUsd"])
    for name in ("inputContext", "outputContext", "errorContext"):
        if name in trace:
            assert isinstance(trace[name], dict)
    for name in ("inputSizeBytes", "outputSizeBytes"):
        if name in trace:
            assert isinstance(trace[name], int) and trace[name] >= 0
    assert isinstance(trace["truncated"], bool)


def execute(server: ServerProcess, slug: str, body: dict[str, Any], status: int = 200) -> str:
    response = post(server, f"/seq/dev/main/{slug}/execute", body)
    assert response.status_code == status, response.text
    if status == 200:
        run_id: str = response.json()["executionId"]
        return run_id
    run_id = response.json()["detail"]["executionId"]
    return run_id


def new_flow(server: ServerProcess, document: dict[str, Any]) -> str:
    slug = f"{document.get('slug', 't')}-{uuid.uuid4().hex[:6]}"
    server.put_flow(server.dev_key, "dev", "main", {**document, "slug": slug})
    return slug


def test_run_trace_of_an_execute_run(server: ServerProcess) -> None:
    run_id = execute(server, "three-steps", {"message": "hi"})
    trace = run_trace(server, run_id)
    run = trace["flowRun"]
    assert run["id"] == run_id and isinstance(run["flowId"], str)
    assert (run["status"], run["triggerType"], run["stepCount"]) == ("completed", "execute", 3)
    assert ISO.match(run["startedAt"]) and ISO.match(run["completedAt"])
    assert isinstance(run["durationMs"], int)
    assert [s["stepId"] for s in trace["steps"]] == ["one", "two", "three"]
    for step in trace["steps"]:
        check_step_trace(step)
    one = trace["steps"][0]
    assert (one["status"], one["attempt"], one["modelUsed"]) == ("completed", 1, "builtin:echo")
    assert one["inputContext"] == {"model": "builtin:echo", "prompt": "one: hi"}
    assert one["outputContext"] == {"output": "one: hi"}
    assert one["tokens"] == {"prompt": 2, "completion": 2, "total": 4}
    assert one["inputSizeBytes"] == len('{"model":"builtin:echo","prompt":"one: hi"}')
    assert one["outputSizeBytes"] == len('"one: hi"')
    assert one["truncated"] is False
    assert datetime.fromisoformat(one["startedAt"]) <= datetime.fromisoformat(one["completedAt"])
    # The latest attempt without ?attempt is the same object the run trace lists.
    response = step_trace(server, run_id, "two")
    assert response.status_code == 200
    assert response.json() == trace["steps"][1]


def test_retried_steps_show_every_attempt(server: ServerProcess) -> None:
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
                    "params": {"fail_times": 1},
                }
            ],
        },
    )
    run_id = execute(server, slug, {"message": "again"})
    [latest] = run_trace(server, run_id, slug)["steps"]
    assert (latest["attempt"], latest["status"]) == (2, "completed")
    everything = step_trace(server, run_id, "ask", attempt="all").json()
    assert everything["stepId"] == "ask"
    first, second = everything["attempts"]
    for trace in (first, second):
        check_step_trace(trace)
    assert (first["attempt"], first["status"]) == (1, "failed")
    assert first["errorContext"] == {
        "code": "PROVIDER_ERROR",
        "message": "builtin:flaky fails attempt 1 of 1 on purpose",
    }
    assert isinstance(first["backoffMs"], int) and "outputContext" not in first
    assert first["costUsd"] == "0.000000" and first["tokens"]["total"] == 0
    assert second["outputContext"] == {"output": "again"} and "errorContext" not in second
    assert step_trace(server, run_id, "ask", attempt="1").json() == first
    assert step_trace(server, run_id, "ask", attempt="latest").json() == second
    assert step_trace(server, run_id, "ask").json() == second
    assert_error(step_trace(server, run_id, "ask", attempt="3"), 404, "ATTEMPT_NOT_FOUND")


@pytest.mark.parametrize("value", ["abc", "0", "-1", "1.5", " 1", "99999999999", "ALL", "²"])
def test_bad_attempt_values(server: ServerProcess, value: str) -> None:
    run_id = execute(server, "echo", {"message": "x"})
    detail = assert_error(step_trace(server, run_id, "say", attempt=value), 422, "VALIDATION_ERROR")
    assert "attempt" in detail["message"]


@pytest.mark.parametrize("value", ["-1", "x", "1.5"])
def test_bad_loop_index_values(server: ServerProcess, value: str) -> None:
    run_id = execute(server, "echo", {"message": "x"})
    assert_error(step_trace(server, run_id, "say", loop_index=value), 422, "VALIDATION_ERROR")


def test_foreach_iterations(server: ServerProcess) -> None:
    run_id = execute(server, "shout-all", {"parameters": {"items": ["a", "b", "c"]}})
    trace = step_trace(server, run_id, "shout").json()
    check_step_trace(trace)
    assert trace["outputContext"] == {"output": ["A", "B", "C"]} and trace["iterations"] == 3
    assert trace["inputContext"] == {
        "iterations": [{"function": "text.upper", "args": {"text": t}} for t in "abc"]
    }
    one = step_trace(server, run_id, "shout", loop_index="1").json()
    check_step_trace(one)
    assert (one["loopIndex"], one["status"], one["attempt"]) == (1, "completed", 1)
    assert one["outputContext"] == {"output": "B"}
    assert one["inputContext"] == {"function": "text.upper", "args": {"text": "b"}}
    every = step_trace(server, run_id, "shout", loop_index="2", attempt="all").json()
    assert [a["loopIndex"] for a in every["attempts"]] == [2]
    assert_error(step_trace(server, run_id, "shout", loop_index="3"), 404, "ATTEMPT_NOT_FOUND")
    assert_error(step_trace(server, run_id, "joined", loop_index="0"), 404, "ATTEMPT_NOT_FOUND")


def test_failed_and_skipped_steps(server: ServerProcess) -> None:
    run_id = execute(server, "broken", {"parameters": {"config": {}}}, status=422)
    trace = run_trace(server, run_id, "broken")
    assert trace["flowRun"]["status"] == "failed"
    assert trace["flowRun"]["error"]["code"] == "TEMPLATE_ERROR"
    ok, boom = trace["steps"]
    check_step_trace(boom)
    assert ok["status"] == "completed"
    assert boom["status"] == "failed" and boom["errorContext"]["code"] == "TEMPLATE_ERROR"
    run_id = execute(server, "maybe", {"message": "m", "parameters": {"polish": False}})
    draft, polish = run_trace(server, run_id, "maybe")["steps"]
    check_step_trace(polish)
    assert (draft["status"], polish["status"]) == ("completed", "skipped")
    assert "outputContext" not in polish


def test_unknown_steps_runs_and_other_tenants(server: ServerProcess) -> None:
    run_id = execute(server, "echo", {"message": "mine"})
    detail = assert_error(step_trace(server, run_id, "nope"), 404, "STEP_NOT_FOUND")
    assert "not a step" in detail["message"]
    for missing in (str(uuid.uuid4()), "not-a-uuid"):
        assert_error(get(server, f"/seq/dev/main/echo/runs/{missing}/trace"), 404, "RUN_NOT_FOUND")
        assert_error(step_trace(server, missing, "say"), 404, "RUN_NOT_FOUND")
    # Another org's key, on its own org's path: the run does not exist for it.
    other = server.create_key("elsewhere")
    assert_error(
        get(server, f"/seq/elsewhere/main/echo/runs/{run_id}/trace", key=other), 404, "RUN_NOT_FOUND"
    )
    assert_error(
        get(server, f"/seq/elsewhere/main/x/runs/{run_id}/steps/say/trace", key=other), 404, "RUN_NOT_FOUND"
    )
    # Our key on their path: refused before anything is looked up.
    assert_error(get(server, f"/seq/elsewhere/main/echo/runs/{run_id}/trace"), 403, "FORBIDDEN")
    # A key for another project of the same org.
    project_key = server.create_key("dev", "side")
    assert_error(
        get(server, f"/seq/dev/side/echo/runs/{run_id}/trace", key=project_key), 404, "RUN_NOT_FOUND"
    )
    assert_error(get(server, f"/seq/dev/main/echo/runs/{run_id}/trace", key="nk_bad"), 401, "UNAUTHENTICATED")


def test_runs_resolve_by_id_alone_and_unstarted_steps_are_not_found(server: ServerProcess) -> None:
    run_id = post(server, "/seq/dev/main/three-steps/v0/execute", {"message": "v0"}).json()["executionId"]
    assert run_trace(server, run_id, "some-other-slug")["flowRun"]["id"] == run_id
    body = {
        "stepIndex": 0,
        "accumulatedOutputs": {},
        "message": "paced",
        "parameters": {},
        "inputOverrides": {},
        "runRemaining": False,
        "iterationsUsed": 0,
        "trace": False,
    }
    with httpx.stream(
        "POST",
        f"{server.api_url}/seq/dev/main/three-steps/step",
        json=body,
        headers={"Authorization": f"Bearer {server.dev_key}"},
    ) as response:
        text = response.read().decode()
    paced = re.search(r'"executionId":"([0-9a-f-]{36})"', text)
    assert paced is not None
    trace = run_trace(server, paced.group(1), "three-steps")
    assert trace["flowRun"]["status"] == "waiting" and trace["flowRun"]["triggerType"] == "step"
    assert "completedAt" not in trace["flowRun"]
    assert [s["stepId"] for s in trace["steps"]] == ["one"]
    detail = assert_error(step_trace(server, paced.group(1), "two"), 404, "STEP_NOT_FOUND")
    assert "has not started" in detail["message"]


def test_a_running_step(server: ServerProcess) -> None:
    slug = new_flow(
        server,
        {
            "slug": "nap",
            "steps": [
                {
                    "id": "nap",
                    "type": "python",
                    "function": "time.sleep",
                    "args": {"seconds": 1.5, "value": 1},
                }
            ],
        },
    )
    run_id = post(server, f"/seq/dev/main/{slug}/jobs", {"parameters": {}}).json()["executionId"]
    deadline = time.monotonic() + 10
    while not (steps := run_trace(server, run_id, slug)["steps"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    check_step_trace(steps[0])
    assert steps[0]["status"] == "running" and "completedAt" not in steps[0]
    assert run_trace(server, run_id, slug)["flowRun"]["status"] == "running"


SECRET = "use sk-live1234567890 please"


@pytest.mark.parametrize(
    ("mode", "expected_input", "expected_output", "sizes"),
    [
        (
            "full",
            {"model": "builtin:echo", "prompt": SECRET},
            {"output": {"apiKey": "k", "text": SECRET, "email": "e"}},
            True,
        ),
        (
            "redacted",
            {"model": "builtin:echo", "prompt": "use [redacted] please"},
            {"output": {"apiKey": "[redacted]", "text": "use [redacted] please", "email": "[redacted]"}},
            True,
        ),
        ("metadata_only", None, None, True),
        ("off", None, None, False),
    ],
)
def test_capture_modes(
    server: ServerProcess, mode: str, expected_input: Any, expected_output: Any, sizes: bool
) -> None:
    slug = new_flow(
        server,
        {
            "slug": f"cap-{mode.replace('_', '-')}",
            "trace_capture_mode": mode,
            "redact_fields": ["email"],
            "steps": [
                {"id": "say", "type": "llm", "model": "builtin:echo", "prompt": "{{ message }}"},
                {
                    "id": "shape",
                    "type": "template",
                    "template": {"apiKey": "k", "text": "{{ steps.say.output }}", "email": "e"},
                },
            ],
        },
    )
    run_id = execute(server, slug, {"message": SECRET})
    say, shape = run_trace(server, run_id, slug)["steps"]
    check_step_trace(say)
    check_step_trace(shape)
    assert say.get("inputContext") == expected_input
    assert shape.get("outputContext") == expected_output
    assert ("inputSizeBytes" in say) is sizes and ("outputSizeBytes" in shape) is sizes
    if sizes:
        assert say["inputSizeBytes"] == len(f'{{"model":"builtin:echo","prompt":"{SECRET}"}}')


def test_error_context_per_mode(server: ServerProcess) -> None:
    for mode, expected in [("metadata_only", {"code": "PROVIDER_BAD_REQUEST"}), ("off", None)]:
        slug = new_flow(
            server,
            {
                "slug": "err",
                "trace_capture_mode": mode,
                "steps": [
                    {
                        "id": "ask",
                        "type": "llm",
                        "model": "builtin:flaky",
                        "prompt": "x",
                        "params": {"fail_with": "bad_request"},
                    }
                ],
            },
        )
        run_id = execute(server, slug, {}, status=502)
        [ask] = run_trace(server, run_id, slug)["steps"]
        assert ask["status"] == "failed" and ask.get("errorContext") == expected


def test_contexts_are_capped(make_server: Any) -> None:
    server = make_server({"NOUKAI_TRACE_CONTEXT_MAX_BYTES": "300"})
    long = " ".join(f"word{i}" for i in range(400))
    run_id = execute(server, "echo", {"message": long})
    [say] = run_trace(server, run_id)["steps"]
    check_step_trace(say)
    assert say["truncated"] is True
    assert say["outputSizeBytes"] == len(long) + 2 and say["inputSizeBytes"] > 300
    assert len(say["outputContext"]["output"]) < 300 and say["outputContext"]["output"].endswith("…")
    assert say["inputContext"]["model"] == "builtin:echo"


def test_pruned_logs_answer_410(make_server: Any) -> None:
    server = make_server(
        {"NOUKAI_EVENT_RETENTION_SECONDS": "0.2", "NOUKAI_RETENTION_INTERVAL_SECONDS": "0.2"}
    )
    run_id = execute(server, "echo", {"message": "soon gone"})
    deadline = time.monotonic() + 10
    while (response := get(server, f"/seq/dev/main/echo/runs/{run_id}/trace")).status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert_error(response, 410, "EVENTS_EXPIRED")
    assert_error(step_trace(server, run_id, "say"), 410, "EVENTS_EXPIRED")
