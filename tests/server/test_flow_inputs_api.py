"""Declared flow inputs over HTTP: bound before any run exists, on every way a run starts."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.server.test_execute_api import assert_error, post

INPUTS = {
    "name": {"type": "string", "description": "Who to greet"},
    "count": {"type": "integer", "default": 2},
    "loud": {"type": "boolean", "default": False},
    "tags": {"type": "array", "required": False},
}
STEPS = [
    {
        "id": "out",
        "type": "template",
        "template": {
            "name": "{{ parameters.name }}",
            "count": "{{ parameters.count }}",
            "loud": "{{ parameters.loud }}",
            "tags": "{{ parameters.tags }}",
        },
    }
]


def put(server: ServerProcess, document: dict[str, Any]) -> str:
    slug = f"inputs-{uuid.uuid4().hex[:8]}"
    server.put_flow(server.dev_key, "dev", "main", {"slug": slug, **document})
    return slug


@pytest.fixture(scope="module")
def declared(server: ServerProcess) -> str:
    return put(server, {"inputs": INPUTS, "steps": STEPS})


def execute(server: ServerProcess, slug: str, parameters: dict[str, Any]) -> httpx.Response:
    return post(server, f"/seq/dev/main/{slug}/execute", {"parameters": parameters})


def test_missing_optional_inputs_take_their_defaults(server: ServerProcess, declared: str) -> None:
    response = execute(server, declared, {"name": "Ada", "undeclared": {"kept": True}})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == {"name": "Ada", "count": 2, "loud": False, "tags": None}


def test_sent_values_are_used(server: ServerProcess, declared: str) -> None:
    response = execute(server, declared, {"name": "Ada", "count": 5, "loud": True, "tags": ["a"]})
    assert response.json()["result"] == {"name": "Ada", "count": 5, "loud": True, "tags": ["a"]}


def test_execute_refuses_a_missing_required_input(server: ServerProcess, declared: str) -> None:
    detail = assert_error(execute(server, declared, {"count": 1}), 422, "VALIDATION_ERROR")
    assert "missing required input 'name' (string)" in detail["message"]
    assert declared in detail["message"]


def test_execute_refuses_a_value_of_the_wrong_type(server: ServerProcess, declared: str) -> None:
    detail = assert_error(execute(server, declared, {"name": "Ada", "count": "2"}), 422, "VALIDATION_ERROR")
    assert "input 'count' must be of type 'integer', got string" in detail["message"]


def test_first_step_call_and_jobs_are_refused_the_same_way(server: ServerProcess, declared: str) -> None:
    step = post(
        server,
        f"/seq/dev/main/{declared}/step",
        {"stepIndex": 0, "parameters": {"loud": "yes"}, "runRemaining": True},
    )
    detail = assert_error(step, 422, "VALIDATION_ERROR")
    assert "missing required input 'name'" in detail["message"]
    assert "input 'loud' must be of type 'boolean', got string" in detail["message"]
    job = post(server, f"/seq/dev/main/{declared}/jobs", {"parameters": {}})
    assert "missing required input 'name'" in assert_error(job, 422, "VALIDATION_ERROR")["message"]


def test_a_job_runs_with_the_defaults(server: ServerProcess, declared: str) -> None:
    response = post(server, f"/seq/dev/main/{declared}/jobs", {"parameters": {"name": "Bo"}})
    assert response.status_code == 202, response.text
    run_id = response.json()["executionId"]
    deadline = time.monotonic() + 10
    while True:
        state = httpx.get(
            f"{server.api_url}/seq/dev/main/{declared}/jobs/{run_id}",
            headers={"Authorization": f"Bearer {server.dev_key}"},
        ).json()
        if state["status"] == "completed":
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    assert state["result"] == {"name": "Bo", "count": 2, "loud": False, "tags": None}


def test_the_step_protocol_runs_with_the_defaults(server: ServerProcess, declared: str) -> None:
    response = post(
        server,
        f"/seq/dev/main/{declared}/step",
        {"stepIndex": 0, "parameters": {"name": "Cy"}, "runRemaining": True},
    )
    assert response.status_code == 200, response.text
    assert '"count":2' in response.text.replace(" ", "")


def test_a_flow_without_inputs_behaves_as_before(server: ServerProcess) -> None:
    slug = put(server, {"steps": [{"id": "a", "type": "template", "template": "{{ parameters.verbose }}"}]})
    detail = assert_error(execute(server, slug, {}), 422, "TEMPLATE_ERROR")
    assert "'parameters' has no attribute 'verbose'" in detail["message"]
    assert execute(server, slug, {"verbose": "x", "other": 1}).json()["result"] == "x"


def test_pushing_a_flow_that_reads_an_undeclared_input_is_refused(server: ServerProcess) -> None:
    document = {
        "slug": f"inputs-{uuid.uuid4().hex[:8]}",
        "inputs": {"verbose": {"type": "boolean", "default": False}},
        "steps": [{"id": "a", "type": "template", "when": "{{ parameters.verbos }}", "template": "x"}],
    }
    response = httpx.put(
        f"{server.api_url}/flows/dev/main/{document['slug']}",
        json=document,
        headers={"Authorization": f"Bearer {server.dev_key}"},
    )
    detail = assert_error(response, 400, "INVALID_TREE")
    (issue,) = detail["issues"]
    assert issue["stepId"] == "a" and issue["field"] == "when"
    assert "parameters.verbos is not a declared input" in issue["message"]
    assert "declared inputs: verbose" in issue["message"]
