"""Every event a real server writes matches its TypedDict in `noukai.types.events`, key for key.

A server (with the fake OpenAI provider, for reasoning deltas and scripted tool calls) runs flows
that between them make the engine and the runtime write every event type: streamed model steps,
templates, functions, `foreach`, skips, retries, failures, server and client tools, the paced step
protocol and both kinds of cancellation. Each run's log is read back through the native stream and
every entry is validated with pydantic, strictly and with unknown keys refused at every depth: a key
written but not in the schema, a key in the schema never written, or a wrong type fails. Every
event name of `EVENT_PAYLOADS` (and every optional key) must have been seen, so a new event type
without a schema, or without a scenario here, fails too.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import ConfigDict, TypeAdapter, ValidationError, with_config

from noukai.types import EVENT_PAYLOADS
from noukai.types import events as ev
from tests.conftest import ServerProcess, _server_env, free_port
from tests.fakeprovider import FakeProvider, FakeToolCall, Reply
from tests.sse_client import iter_frames

STRICT = ConfigDict(extra="forbid", strict=True)
"""Nested TypedDicts without a config of their own inherit this one: extras are refused at every
depth (checked by `test_the_checker_refuses_unknown_missing_and_mistyped_keys`)."""


def strict(payload: type) -> type:
    """`payload` with the STRICT config, as a subclass (the SDK's own TypedDict stays untouched)."""
    subclass = type(payload)(payload.__name__, (payload,), {"__module__": payload.__module__})
    return with_config(STRICT)(subclass)


ADAPTERS: dict[str, TypeAdapter[Any]] = {
    name: TypeAdapter(strict(payload)) for name, payload in EVENT_PAYLOADS.items()
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
STEP_BODY = {
    "accumulatedOutputs": {},
    "parameters": {},
    "inputOverrides": {},
    "iterationsUsed": 0,
    "trace": False,
}

Log = list[dict[str, Any]]


def validate(event: dict[str, Any]) -> None:
    """Raises if `event` is not exactly the payload of its `eventType`."""
    name = event.get("eventType")
    assert name in ADAPTERS, f"event type {name!r} has no schema in EVENT_PAYLOADS"
    ADAPTERS[name].validate_python(event)


# --- driving runs ----------------------------------------------------------------------------------


class Driver:
    def __init__(self, server: ServerProcess, provider: FakeProvider | None = None) -> None:
        self.server = server
        self.provider = provider
        self.headers = {"Authorization": f"Bearer {server.dev_key}"}

    def flow(self, *steps: dict[str, Any], **extra: Any) -> str:
        slug = f"schema-{uuid.uuid4().hex[:8]}"
        self.server.put_flow(
            self.server.dev_key, "dev", "main", {"slug": slug, "steps": list(steps), **extra}
        )
        return slug

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.server.api_url}{path}", json=body, headers=self.headers, timeout=30)

    def execute(self, slug: str, body: dict[str, Any]) -> dict[str, Any]:
        """`/execute`, answered or failed; returns the answer (or error detail) with `executionId`."""
        response = self.post(f"/seq/dev/main/{slug}/execute", body)
        answer: dict[str, Any] = response.json()
        return answer if response.status_code == 200 else answer["detail"]

    def step(self, slug: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """One `/step` call: the events of its segment."""
        with httpx.stream(
            "POST",
            f"{self.server.api_url}/seq/dev/main/{slug}/step",
            json={**STEP_BODY, **body},
            headers=self.headers,
            timeout=30,
        ) as response:
            assert response.status_code == 200, response.read()
            return [frame.json for frame in iter_frames(response) if frame.id is not None]

    def status(self, run_id: str) -> str:
        run = httpx.get(f"{self.server.api_url}/runs/{run_id}", headers=self.headers).json()
        return str(run["status"])

    def wait_status(self, run_id: str, *statuses: str) -> None:
        deadline = time.monotonic() + 15
        while self.status(run_id) not in statuses:
            assert time.monotonic() < deadline, f"run {run_id} never became {statuses}"
            time.sleep(0.02)

    def cancel(self, run_id: str) -> None:
        response = httpx.post(f"{self.server.api_url}/runs/{run_id}/cancel", headers=self.headers)
        assert response.status_code == 200, response.text

    def log(self, run_id: str) -> Log:
        """The run's whole log through the native stream (the run must have ended)."""
        with httpx.stream(
            "GET", f"{self.server.api_url}/runs/{run_id}/events", headers=self.headers, timeout=30
        ) as response:
            assert response.status_code == 200, response.read()
            events = []
            for frame in iter_frames(response):
                if frame.id is not None:
                    assert frame.event == frame.json["eventType"] and frame.id == frame.json["seq"]
                    events.append(frame.json)
        assert events[-1]["eventType"] in ("flow_completed", "run_failed", "run_cancelled"), events[-1]
        return events


def scenarios(driver: Driver) -> dict[str, Log]:
    """Run one flow per scenario to its end; the log of each, by scenario."""
    runs: dict[str, str] = {}
    openai = "openai:gpt-4o-mini"

    # Model steps streaming text and reasoning, alone and in a `foreach`.
    assert driver.provider is not None
    driver.provider.script(
        Reply(reasoning=["Let me", " think."], chunks=["4", "2"], usage=(5, 2)),
        Reply(reasoning=["Hm."], chunks=["x!"], usage=(3, 1)),
    )
    slug = driver.flow(
        {"id": "ask", "type": "llm", "model": openai, "prompt": "{{ message }}", "system": "Be brief."},
        {"id": "each", "type": "llm", "model": openai, "foreach": "{{ parameters.items }}",
         "prompt": "{{ item }}"},
    )  # fmt: skip
    runs["reasoning"] = driver.execute(slug, {"message": "the answer?", "parameters": {"items": ["x"]}})[
        "executionId"
    ]

    # Templates, a function in a `foreach`, a model in a `foreach`, and a skipped step.
    slug = driver.flow(
        {"id": "shout", "type": "python", "foreach": "{{ parameters.items }}", "function": "text.upper",
         "args": {"text": "{{ item }}"}},
        {"id": "echo", "type": "llm", "model": "builtin:echo", "foreach": "{{ parameters.items }}",
         "prompt": "say {{ item }}"},
        {"id": "skip", "type": "template", "when": "{{ parameters.never }}", "template": "never"},
        {"id": "shape", "name": "Shape it", "type": "template",
         "template": {"joined": "{{ steps.shout.output | join(', ') }}"}},
    )  # fmt: skip
    runs["templates"] = driver.execute(
        slug, {"message": "m", "parameters": {"items": ["a", "b"], "never": False}}
    )["executionId"]

    # A transient failure retried (alone, and in a `foreach`), then success.
    retry = {"initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.02}
    slug = driver.flow(
        {"id": "flaky", "type": "llm", "model": "builtin:flaky", "prompt": "{{ message }}",
         "params": {"fail_times": 1, "fail_after_words": 1}},
        {"id": "each", "type": "llm", "model": "builtin:flaky", "foreach": "{{ parameters.items }}",
         "prompt": "{{ item }}", "params": {"fail_times": 1}},
        retry=retry,
    )  # fmt: skip
    runs["retried"] = driver.execute(slug, {"message": "hi there", "parameters": {"items": ["p", "q"]}})[
        "executionId"
    ]

    # Failures: a template error (step_error, run_failed), and one in a `foreach` iteration.
    runs["failed"] = driver.execute("broken", {"message": "x", "parameters": {"config": {}}})["executionId"]
    slug = driver.flow(
        {"id": "each", "type": "llm", "model": "builtin:flaky", "foreach": "{{ parameters.items }}",
         "prompt": "{{ item }}", "params": {"fail_with": "bad_request"}},
    )  # fmt: skip
    runs["failed_in_loop"] = driver.execute(slug, {"message": "x", "parameters": {"items": ["p"]}})[
        "executionId"
    ]

    # Server-side tools: one that works, and calls that fail (bad arguments, unknown tool).
    runs["server_tool"] = driver.execute("counter", {"message": "a b"})["executionId"]
    driver.provider.script(
        Reply(tool_calls=[FakeToolCall("add", "{not json", id="c1"), FakeToolCall("nope", {}, id="c2")]),
        Reply.text("done"),
    )
    slug = driver.flow({"id": "act", "type": "agent", "model": openai, "prompt": "add", "tools": ["add"]})
    runs["tool_errors"] = driver.execute(slug, {"message": "x"})["executionId"]

    # Client-side tools: two pauses (one per agent step), each answered.
    paused = driver.execute("assistant", {"message": "weather?", "tools": [WEATHER]})
    assert paused["status"] == "tool_calls_required", paused
    for _ in range(2):
        results = [{"role": "tool", "tool_call_id": c["id"], "content": "sunny"} for c in paused["toolCalls"]]
        paused = driver.execute(
            "assistant",
            {
                "tools": [WEATHER],
                "executionId": paused["executionId"],
                "pausedAtStep": paused["pausedAtStep"],
                "toolCallMessages": paused["toolCallMessages"] + results,
            },
        )
    assert paused["status"] == "completed", paused
    runs["client_tools"] = paused["executionId"]

    # The paced step protocol, one step per call to the end.
    first = driver.step("three-steps", {"stepIndex": 0, "message": "go", "runRemaining": False})
    assert first[-1]["eventType"] == "step_paused"
    run_id = first[0]["executionId"]
    driver.step("three-steps", {"executionId": run_id, "stepIndex": 1, "runRemaining": False})
    driver.step("three-steps", {"executionId": run_id, "stepIndex": 2, "runRemaining": False})
    runs["paced"] = run_id

    # Cancelled while waiting for its next /step call (the API writes run_cancelled) ...
    first = driver.step("three-steps", {"stepIndex": 0, "message": "go", "runRemaining": False})
    run_id = first[0]["executionId"]
    driver.wait_status(run_id, "waiting")
    driver.cancel(run_id)
    runs["cancelled_waiting"] = run_id

    # ... and while a step streams (the worker writes it).
    slug = driver.flow(
        {"id": "slow", "type": "llm", "model": "builtin:echo", "prompt": " ".join(["w"] * 400),
         "params": {"token_delay_ms": 25}},
    )  # fmt: skip
    run_id = driver.post(f"/seq/dev/main/{slug}/jobs", {"message": "x"}).json()["executionId"]
    driver.wait_status(run_id, "running")
    time.sleep(0.2)
    driver.cancel(run_id)
    driver.wait_status(run_id, "cancelled")
    runs["cancelled_running"] = run_id

    # Guards tripping on the input and on a step's output, both replacing what they refused.
    slug = driver.flow(
        {"id": "say", "type": "template", "template": "{{ message }}",
         "guards": [{"name": "short", "condition": "{{ value | length < 3 }}", "on_fail": "replace",
                     "replacement": "ok"}]},
        input_guards=[{"name": "polite", "regex": {"pattern": "please"}, "on_fail": "replace",
                       "replacement": "please {{ value }}"}],
    )  # fmt: skip
    runs["guarded"] = driver.execute(slug, {"message": "hi"})["executionId"]

    # Flows running flows: a `flow` step (subflow_event), and an agent's `flow:` tool (flow_transfer).
    child = driver.flow({"id": "inner", "type": "llm", "model": "builtin:echo", "prompt": "{{ message }}"})
    slug = driver.flow({"id": "outer", "type": "flow", "flow": f"dev/main/{child}", "message": "deep"})
    runs["subflow"] = driver.execute(slug, {})["executionId"]
    tool = f"flow:dev/main/{child}"
    slug = driver.flow(
        {"id": "boss", "type": "agent", "model": "builtin:test", "prompt": "go", "tools": [tool]}
    )
    runs["flow_tool"] = driver.execute(slug, {})["executionId"]

    return {name: driver.log(run_id) for name, run_id in runs.items()}


# --- the tests -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    with FakeProvider(api_key="sk-right") as fake:
        yield fake


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory, provider: FakeProvider) -> Iterator[dict[str, Log]]:
    env = {**_server_env(), "OPENAI_BASE_URL": provider.openai_base_url, "OPENAI_API_KEY": "sk-right"}
    server = ServerProcess(free_port(), tmp_path_factory.mktemp("schema"), env)
    server.start()
    try:
        yield scenarios(Driver(server, provider))
    finally:
        server.stop()


def test_every_event_matches_its_schema(logs: dict[str, Log]) -> None:
    problems = []
    for scenario, log in logs.items():
        for event in log:
            try:
                validate(event)
            except (ValidationError, AssertionError) as exc:
                problems.append(f"{scenario} seq {event.get('seq')} {event.get('eventType')}: {exc}")
    assert problems == [], "\n".join(problems)


def test_every_event_type_and_optional_key_is_seen(logs: dict[str, Log]) -> None:
    seen: dict[str, set[str]] = {}
    for log in logs.values():
        for event in log:
            seen.setdefault(event["eventType"], set()).update(event)
    assert sorted(set(EVENT_PAYLOADS) - set(seen)) == [], "event types no scenario here produced"
    never = sorted(
        f"{name}.{key}"
        for name, payload in EVENT_PAYLOADS.items()
        for key in getattr(payload, "__optional_keys__", frozenset())
        if key not in seen.get(name, set())
    )
    assert never == [], "optional keys no scenario here produced"


def test_the_scenarios_tell_their_stories(logs: dict[str, Log]) -> None:
    """The events validated above are the ones each scenario is about."""

    def kinds(scenario: str) -> list[str]:
        return [event["eventType"] for event in logs[scenario]]

    assert "step_reasoning" in kinds("reasoning") and kinds("reasoning")[-1] == "flow_completed"
    assert kinds("templates").count("step_progress") == 4
    assert "step_retrying" in kinds("retried") and kinds("retried")[-1] == "flow_completed"
    assert kinds("failed")[-2:] == ["step_error", "run_failed"]
    assert [e.get("loopIndex") for e in logs["failed_in_loop"] if e["eventType"] == "step_error"] == [0]
    errors = [e for e in logs["tool_errors"] if e["eventType"] == "tool_call_completed"]
    assert [("error" in e, "result" in e) for e in errors] == [(True, False), (True, False)]
    assert kinds("client_tools").count("step_paused_for_tool_calls") == 2
    assert kinds("paced").count("step_paused") == 2 and kinds("paced")[-1] == "flow_completed"
    assert kinds("cancelled_waiting")[-2:] == ["step_paused", "run_cancelled"]
    assert "step_output" in kinds("cancelled_running") and kinds("cancelled_running")[-1] == "run_cancelled"


def test_the_checker_refuses_unknown_missing_and_mistyped_keys(logs: dict[str, Log]) -> None:
    completed = next(e for e in logs["reasoning"] if e["eventType"] == "step_completed")
    paused = next(e for e in logs["client_tools"] if e["eventType"] == "step_paused_for_tool_calls")
    validate(completed)
    validate(paused)
    broken = [
        {**completed, "surprise": 1},  # a key the schema does not know
        {**completed, "tokens": {**completed["tokens"], "cached": 0}},  # ... nested
        {**paused, "toolCalls": [{**paused["toolCalls"][0], "index": 0}]},  # ... in a list
        {k: v for k, v in completed.items() if k != "durationMs"},  # a required key missing
        {**completed, "attempt": "1"},  # a wrong type (strict: no coercion)
        {**completed, "eventType": "step_finished"},  # a name without a schema
    ]
    for event in broken:
        with pytest.raises((ValidationError, AssertionError)):
            validate(event)


def test_an_interrupted_attempt_is_reported_in_schema(make_server: Any) -> None:
    """A worker lost mid-step (the server killed): the step's retry event, written when the run is
    claimed again, has no `durationMs` and a zero backoff, and still matches its schema."""
    server: ServerProcess = make_server({"NOUKAI_LEASE_SECONDS": "2"})
    driver = Driver(server)
    slug = driver.flow(
        {"id": "slow", "type": "llm", "model": "builtin:echo", "prompt": "{{ message }}",
         "params": {"token_delay_ms": 20}},
    )  # fmt: skip
    run_id = driver.post(f"/seq/dev/main/{slug}/jobs", {"message": " ".join(["w"] * 150)}).json()[
        "executionId"
    ]
    driver.wait_status(run_id, "running")
    time.sleep(0.5)
    server.restart(kill=True)
    driver.headers = {"Authorization": f"Bearer {server.dev_key}"}
    driver.wait_status(run_id, "completed")
    log = driver.log(run_id)
    for event in log:
        validate(event)
    [retrying] = [e for e in log if e["eventType"] == "step_retrying"]
    assert retrying["error"]["code"] == "STEP_INTERRUPTED"
    assert (retrying["attempt"], retrying["nextAttempt"], retrying["backoffMs"]) == (1, 2, 0)
    assert "durationMs" not in retrying


def test_every_name_of_the_vocabulary_has_a_schema() -> None:
    names = {value for key, value in vars(ev).items() if key.isupper() and isinstance(value, str)}
    assert names == set(EVENT_PAYLOADS)
