"""The OpenAPI document is a contract the server keeps: schemathesis reads `/openapi.json` from a real
server and sends every operation property-based requests, and every answer must be documented.

Checked on every answer: no 5xx (`not_a_server_error`), a documented status
(`status_code_conformance`), a documented media type (`content_type_conformance`) and a body that
validates against the documented schema (`response_schema_conformance`: JSON bodies whole, event
streams event by event, each event's `data` as JSON). Path parameters and bodies are drawn from
real values (flows, runs in every state, their steps, a session; bodies that run a flow) as well
as generated ones, so most requests reach real things rather than a 404 or a 400.

The server is this test's own (the generated requests save drafts, publish versions and cancel
runs), with short heartbeats, so that a run that outlasts one is answered through `/execute`'s
keep-alive path too. A stream that follows a waiting run never ends by itself: schemathesis reads
each event stream for `REQUEST_TIMEOUT` seconds at most, then cuts it and checks what it read.

Failures are collected rather than raised (no shrinking), so one run shows every distinct problem.
`NOUKAI_CONTRACT_EXAMPLES=200 NOUKAI_CONTRACT_SEED=<n>` searches harder with another seed.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode, Response
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ServerProcess
from tests.server.test_streams import STEP_BODY
from tests.server.test_tools_api import WEATHER
from tests.sse_client import iter_frames

MAX_EXAMPLES = int(os.environ.get("NOUKAI_CONTRACT_EXAMPLES", "12"))
"""Requests per operation."""
SEED = int(os.environ.get("NOUKAI_CONTRACT_SEED", "20261206"))
REQUEST_TIMEOUT = 1.5
"""Seconds: an event stream is read this long at most (one that follows a waiting run never ends)."""
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SERVER_ENV = {"NOUKAI_HEARTBEAT_SECONDS": "0.3", "NOUKAI_STREAM_LIFETIME_SECONDS": "1"}
SLUGS = ["echo", "greet", "three-steps", "assistant", "shout-all", "broken", "maybe", "counter"]
STEP_IDS = ["say", "hello", "shape", "one", "two", "agent", "prepare", "shout", "joined", "boom"]
RUN_BODIES: list[dict[str, Any]] = [
    {"message": "hi", "parameters": {"name": "Ada", "count": 2, "items": ["a", "b"], "polish": True}},
    {"message": "weather?", "tools": [WEATHER]},
    {"message": "hi", "messages": [{"role": "user", "content": "hi"}]},
    {"parameters": {"name": "Bo"}, "blockOverrides": {"say": {"temperature": 0.5}}},
]
"""Bodies that run the fixture flows (each fits some of them): completed, paused, failed runs."""
FLOW_DOCUMENTS: list[dict[str, Any]] = [
    {"steps": [{"id": "say", "type": "llm", "model": "builtin:echo", "prompt": "{{ message }}"}]},
    {"steps": [{"id": "hello", "type": "template", "template": "Hello, {{ parameters.name }}!"}]},
]


@dataclass
class World:
    """Real things for requests to name, made before the generated requests start."""

    paths: dict[str, list[Any]]
    """Values by path parameter name."""
    bodies: dict[str, list[Any]]
    """Bodies by the last segment of an operation's path."""
    org_key: str = ""
    """An org-wide admin key of `dev`: what belongs to the whole org (`/orgs/{org}/...`: keys,
    credits, usage) is refused to the dev key, which is limited to the `main` project."""


def _call(server: ServerProcess, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.dev_key}", **kwargs.pop("headers", {})}
    return httpx.request(method, f"{server.api_url}{path}", headers=headers, timeout=30, **kwargs)


def _seed_world(server: ServerProcess) -> World:
    session = str(uuid.uuid4())
    runs: list[str] = []

    def execute(slug: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
        response = _call(server, "POST", f"/seq/dev/main/{slug}/execute", json=body, headers=headers)
        answer: dict[str, Any] = response.json()
        runs.append(answer.get("executionId") or answer["detail"]["executionId"])
        return answer

    execute("echo", {"message": "hi"}, **{"X-Session-Id": session})
    execute("greet", {"parameters": {"name": "Ada", "count": 2}}, **{"X-Session-Id": session})
    execute("shout-all", {"parameters": {"items": ["a", "b"]}})  # a `foreach` step
    execute("broken", {})  # failed
    paused = execute("assistant", {"message": "weather?", "tools": [WEATHER]})  # waiting for tools
    with httpx.stream(
        "POST",
        f"{server.api_url}/seq/dev/main/three-steps/step",
        json={**STEP_BODY, "message": "go", "runRemaining": False},
        headers={"Authorization": f"Bearer {server.dev_key}", "X-Session-Id": session},
        timeout=30,
    ) as stream:  # a paced run, waiting for its next /step
        started = next(f for f in iter_frames(stream) if f.event == "run_started")
    runs.append(json.loads(started.data)["executionId"])
    job = _call(server, "POST", "/seq/dev/main/greet/jobs", json={"parameters": {"name": "Job"}})
    runs.append(job.json()["executionId"])
    _call(server, "POST", "/flows/dev/main/echo/publish").raise_for_status()
    resume = {
        "executionId": paused["executionId"],
        "pausedAtStep": paused["pausedAtStep"],
        "iterationsUsed": paused["iterationsUsed"],
        "tools": [WEATHER],
        "toolCallMessages": paused["toolCallMessages"]
        + [{"role": "tool", "tool_call_id": c["id"], "content": "sunny"} for c in paused["toolCalls"]],
    }
    next_step = {**STEP_BODY, "executionId": runs[-2], "stepIndex": 1, "runRemaining": False}
    # Threads to read, fork and delete: enough that DELETEs leave live ones for the other calls.
    threads = [_call(server, "POST", "/threads", json={}).json()["threadId"] for _ in range(3 * MAX_EXAMPLES)]
    keys = [_call(server, "POST", "/orgs/dev/keys", json={"scope": "read"}).json()["id"] for _ in range(3)]
    return World(
        paths={
            "org": ["dev"],
            "project": ["main"],
            "slug": SLUGS,
            "version": ["v0", "v1"],
            "execution_id": runs,
            "step_id": STEP_IDS,
            "session_id": [session],
            "thread_id": threads,
            "key_id": keys,
        },
        bodies={
            "execute": [*RUN_BODIES, resume],
            "jobs": RUN_BODIES,
            "step": [{**STEP_BODY, **body} for body in RUN_BODIES] + [next_step],
            "{slug}": FLOW_DOCUMENTS,
            "fork": [{}, {"position": 0}],
            "keys": [{"scope": "read"}, {"scope": "run", "name": "ci", "expiresInSeconds": 3600}],
        },
        org_key=server.create_key("dev"),
    )


def _real_or_generated(world: World) -> list[Callable[..., Any]]:
    """Schema hooks: each path parameter and body is either generated or one of the world's."""

    def flatmap_path_parameters(context: Any, parameters: dict[str, Any] | None) -> Any:
        if not parameters:
            return st.just(parameters)
        return st.fixed_dictionaries(
            {name: _either(value, world.paths.get(name, [])) for name, value in parameters.items()}
        )

    def flatmap_body(context: Any, body: Any) -> Any:
        path = context.operation.path
        return _either(body, world.bodies.get(path.rsplit("/", 1)[-1], []))

    return [flatmap_path_parameters, flatmap_body]


def _either(generated: Any, real: list[Any]) -> st.SearchStrategy[Any]:
    """The generated value, or a real one of the same kind (a version number is an int on the
    flow API and a `vN` segment elsewhere)."""
    fitting = [value for value in real if type(value) is type(generated)]
    if isinstance(generated, int) and not isinstance(generated, bool):
        fitting = [1, 2]  # a published version number
    if not fitting:
        return st.just(generated)
    known = st.sampled_from(fitting)
    return st.integers(0, 7).flatmap(lambda i: known if i else st.just(generated))  # mostly real


def _describe(failure: Failure, case: Case[Any], response: Response) -> str:
    """One failure, short: what was sent (cut), what came back, what is wrong."""
    sent = f"{case.method} {case.formatted_path}"
    if case.query:
        sent += f" query={case.query!r}"[:300]
    if case.headers:
        sent += f" headers={case.headers!r}"[:300]
    if isinstance(case.body, (dict, list, str)):
        sent += f" body={json.dumps(case.body, ensure_ascii=False)}"[:700]
    answer = f"{response.status_code} {response.headers.get('content-type')} {response.content[:400]!r}"
    return f"[{failure.title}] {failure.message[:600]}\n    sent: {sent}\n    got: {answer}"


def test_every_answer_is_documented(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(env=SERVER_ENV)
    world = _seed_world(server)
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    schema.config.update(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {server.dev_key}"},
        request_timeout=REQUEST_TIMEOUT,
    )
    for hook in _real_or_generated(world):
        schema.hook(hook)
    failures: dict[str, list[str]] = {}
    answered: Counter[tuple[str, int]] = Counter()
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    for operation in operations:

        @seed(SEED)
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(GenerationMode.POSITIVE, hooks=schema.hooks))
        def exercise(case: Case[Any]) -> None:
            org_wide = case.path.startswith("/api/v1/orgs/")
            response = case.call(headers={"Authorization": f"Bearer {world.org_key}"} if org_wide else None)
            answered[(operation.label, response.status_code)] += 1
            try:
                case.validate_response(response, checks=CHECKS)
            except FailureGroup as group:
                found = [_describe(failure, case, response) for failure in group.exceptions]
            except Failure as failure:
                found = [_describe(failure, case, response)]
            else:
                return
            failures.setdefault(operation.label, []).extend(found)

        exercise()
    elapsed = time.monotonic() - started

    summary = f"{sum(answered.values())} requests over {len(operations)} operations in {elapsed:.1f}s"
    print(f"\n{summary}:", ", ".join(f"{op} {status}: {n}" for (op, status), n in sorted(answered.items())))
    server_errors = [f for found in failures.values() for f in found if f.startswith("[Server error]")]
    logged = [line for line in server.log_text().splitlines() if "Error" in line or "failed (request" in line]
    report = "\n\n".join(f"{op}:\n" + "\n".join(found[:5]) for op, found in failures.items())
    assert not failures, (
        f"{len(server_errors)} server errors, "
        f"{sum(map(len, failures.values())) - len(server_errors)} other violations ({summary}):\n"
        f"{report}\n\nserver log:\n" + "\n".join(logged[-40:])
    )
    # Every operation was exercised, and most reached something real.
    assert {label for label, _ in answered} == {operation.label for operation in operations}
    assert len(operations) >= 21
    successes = {label for (label, status), _ in answered.items() if status < 300}
    assert len(successes) >= len(operations) - 2, sorted(successes)
