"""Guards on a real server: an input guard and a step guard tripping, seen as typed `guard_tripped`
events over SSE through the SDK, the run's GUARD_FAILED error on `/execute`, and a guard refused at
push with its step, field and line."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import noukai
from tests.conftest import ServerProcess
from tests.server.test_execute_api import assert_error, post


@pytest.fixture
def client(server: ServerProcess) -> Iterator[noukai.Noukai]:
    with noukai.Noukai(api_key=server.dev_key, base_url=server.base_url, org="dev", project="main") as sdk:
        yield sdk


def push(server: ServerProcess, **document: Any) -> str:
    slug = f"guards-{uuid.uuid4().hex[:8]}"
    server.put_flow(server.dev_key, "dev", "main", {"slug": slug, **document})
    return slug


INPUT_GUARDED: dict[str, Any] = {
    "inputs": {"email": {"type": "string"}},
    "input_guards": [
        {
            "name": "email",
            "input": "parameters.email",
            "regex": {"pattern": "^[^@\\s]+@[^@\\s]+$", "mode": "fullmatch"},
        },
    ],
    "steps": [{"id": "greet", "type": "template", "template": "hello {{ parameters.email }}"}],
}
STEP_GUARDED: dict[str, Any] = {
    "steps": [
        {
            "id": "answer",
            "type": "llm",
            "model": "builtin:echo",
            "prompt": "{{ message }}",
            "retry": {"max_attempts": 2, "initial_backoff_seconds": 0.01},
            "guards": [
                {
                    "name": "no-digits",
                    "regex": {"pattern": "[0-9]", "expect": "no_match"},
                    "on_fail": "retry",
                },
            ],
        },
        {"id": "after", "type": "template", "template": "{{ steps.answer.output }}!"},
    ]
}


def test_an_input_guard_trips_before_any_step(server: ServerProcess, client: noukai.Noukai) -> None:
    slug = push(server, **INPUT_GUARDED)
    events = list(client.flow(slug).events(parameters={"email": "not an email"}))
    assert [e.type for e in events] == ["run_started", "guard_tripped", "run_failed"]
    tripped = events[1]
    assert isinstance(tripped, noukai.GuardTripped)
    assert (tripped.guard, tripped.kind, tripped.target, tripped.on_fail, tripped.input) == (
        "email",
        "regex",
        "input",
        "fail",
        "parameters.email",
    )
    assert tripped.reason == "the value does not match /^[^@\\s]+@[^@\\s]+$/ (fullmatch)"
    failed = events[2]
    assert isinstance(failed, noukai.RunFailed) and failed.code == "GUARD_FAILED"
    assert failed.message == f"input guard 'email' on parameters.email refused it (regex): {tripped.reason}"
    # A good input passes untouched.
    assert client.flow(slug).execute(parameters={"email": "a@b.c"}).result == "hello a@b.c"


def test_execute_answers_a_tripped_guard_with_its_code(server: ServerProcess) -> None:
    slug = push(server, **INPUT_GUARDED)
    response = post(server, f"/seq/dev/main/{slug}/execute", {"parameters": {"email": "nope"}})
    detail = assert_error(response, 422, "GUARD_FAILED")
    assert detail["message"].startswith("input guard 'email' on parameters.email refused it (regex):")


def test_a_step_guard_retries_then_fails_the_run(server: ServerProcess, client: noukai.Noukai) -> None:
    slug = push(server, **STEP_GUARDED)
    events = list(client.flow(slug).events(message="call 555 0100"))
    names = [e.type for e in events if e.type not in ("step_input", "step_output")]
    assert names == [
        "run_started",
        "step_started",
        "guard_tripped",
        "step_retrying",
        "step_started",
        "guard_tripped",
        "step_error",
        "run_failed",
    ]
    tripped = [e for e in events if isinstance(e, noukai.GuardTripped)]
    assert [(e.guard, e.target, e.step_id, e.step_index, e.attempt, e.on_fail) for e in tripped] == [
        ("no-digits", "step", "answer", 0, 1, "retry"),
        ("no-digits", "step", "answer", 0, 2, "retry"),
    ]
    assert tripped[0].reason == "the value matches /[0-9]/ at position 5"
    failed = [e for e in events if isinstance(e, noukai.StepFailed)]
    assert [(e.step_id, e.attempt, e.code) for e in failed] == [("answer", 2, "GUARD_FAILED")]
    with pytest.raises(noukai.FlowExecutionError) as caught:
        client.flow(slug).execute(message="room 101")
    assert caught.value.code == "GUARD_FAILED"
    # Without digits the step completes and the run goes on.
    assert client.flow(slug).execute(message="call me").result == "call me!"


def test_a_replacing_step_guard_lets_the_run_go_on(server: ServerProcess, client: noukai.Noukai) -> None:
    slug = push(
        server,
        steps=[
            {
                "id": "say",
                "type": "template",
                "template": "{{ message }}",
                "guards": [
                    {
                        "name": "short",
                        "condition": "{{ value | length <= 5 }}",
                        "on_fail": "replace",
                        "replacement": "{{ value[:5] }}…",
                    }
                ],
            }
        ],
    )
    events = list(client.flow(slug).events(message="a long message"))
    [tripped] = [e for e in events if isinstance(e, noukai.GuardTripped)]
    assert (tripped.on_fail, tripped.step_id) == ("replace", "say")
    assert events[-1].type == "flow_completed"
    assert isinstance(events[-1], noukai.FlowCompleted) and events[-1].result == "a lon…"


def test_a_bad_guard_is_refused_at_push_with_its_place(server: ServerProcess) -> None:
    document = {
        "slug": f"guards-{uuid.uuid4().hex[:8]}",
        "input_guards": [{"name": "again", "condition": "{{ value }}", "on_fail": "retry"}],
        "steps": [
            {"id": "s", "type": "template", "template": "x", "guards": [{"name": "g", "function": "no.such"}]}
        ],
    }
    response = httpx.put(
        f"{server.api_url}/flows/dev/main/{document['slug']}",
        json=document,
        headers={"Authorization": f"Bearer {server.dev_key}"},
    )
    detail = assert_error(response, 400, "INVALID_TREE")
    issues = [(i["stepId"], i["field"], i["message"]) for i in detail["issues"]]
    assert issues[0][:2] == (None, "input_guards[0]")
    assert "an input guard cannot retry" in issues[0][2]
    assert issues[1][:2] == ("s", "guards[0].function")
    assert "unknown function 'no.such'" in issues[1][2]


REDACTING: dict[str, Any] = {
    "input_guards": [
        {
            "name": "no-keys",
            "regex": {"pattern": "sk-[a-z]+", "expect": "no_match"},
            "on_fail": "replace",
            "replacement": "{{ value | replace('sk-', '') }}",
        }
    ],
    "steps": [
        {"id": "one", "type": "template", "template": "1 {{ message }}"},
        {"id": "two", "type": "template", "template": "2 {{ message }}"},
    ],
}


def settled(server: ServerProcess, run_id: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {server.dev_key}"}
    for _ in range(300):
        run: dict[str, Any] = httpx.get(f"{server.api_url}/runs/{run_id}", headers=headers).json()
        if run["status"] in ("completed", "failed", "cancelled"):
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end")


def test_a_replaced_input_holds_across_pauses_and_reruns(
    server: ServerProcess, client: noukai.Noukai
) -> None:
    slug = push(server, **REDACTING)
    # The SDK's event stream is the paced protocol: step two runs in a later segment of the run,
    # which must read the replaced message without checking the input again.
    events = list(client.flow(slug).events(message="use sk-secret"))
    assert [e.type for e in events].count("step_paused") == 1
    assert [e.type for e in events].count("guard_tripped") == 1
    completed = [e for e in events if isinstance(e, noukai.StepCompleted)]
    assert [e.output for e in completed] == ["1 use secret", "2 use secret"]
    # A rerun from step two starts after the input guards: it reads the replacement too.
    run_id = events[0].execution_id if isinstance(events[0], noukai.RunStarted) else None
    assert run_id is not None
    response = post(server, f"/runs/{run_id}/rerun", {"fromStep": "two"})
    assert response.status_code == 202, response.text
    assert settled(server, response.json()["executionId"])["result"] == "2 use secret"
