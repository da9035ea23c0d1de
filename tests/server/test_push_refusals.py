"""Mistakes refused when a flow is pushed (PUT), each with a message that says what to write instead:
a YAML body sent without a YAML content type, a model of an unknown provider, and a python step
called with arguments its function does not take."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.server.test_execute_api import assert_error


def _url(server: ServerProcess, slug: str | None = None) -> str:
    return f"{server.api_url}/flows/dev/main/{slug or _slug()}"


def _slug() -> str:
    return f"f-{uuid.uuid4().hex[:10]}"


def _yaml_flow(slug: str) -> bytes:
    return f"slug: {slug}\nsteps:\n  - id: a\n    type: template\n    template: one\n".encode()


def _auth(server: ServerProcess, content_type: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {server.dev_key}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return headers


@pytest.mark.parametrize("content_type", [None, "application/json", "application/x-www-form-urlencoded"])
def test_a_yaml_body_without_a_yaml_content_type_is_told_to_send_one(
    server: ServerProcess, content_type: str | None
) -> None:
    slug = _slug()
    response = httpx.put(_url(server, slug), content=_yaml_flow(slug), headers=_auth(server, content_type))
    assert 400 <= response.status_code < 500, response.text
    message = response.json()["detail"]["message"]
    assert "looks like YAML" in message and "Content-Type: application/yaml" in message, message


@pytest.mark.parametrize("content_type", ["application/yaml", "text/yaml", "text/plain; charset=utf-8"])
def test_yaml_with_a_yaml_content_type_is_still_accepted(server: ServerProcess, content_type: str) -> None:
    slug = _slug()
    response = httpx.put(_url(server, slug), content=_yaml_flow(slug), headers=_auth(server, content_type))
    assert response.status_code == 200, response.text


def test_broken_json_is_still_invalid_json_without_a_yaml_hint(server: ServerProcess) -> None:
    response = httpx.put(_url(server), content=b'{"steps": [', headers=_auth(server, "application/json"))
    assert 400 <= response.status_code < 500, response.text
    assert "YAML" not in response.json()["detail"]["message"]


def _put(server: ServerProcess, steps: list[dict[str, Any]]) -> httpx.Response:
    return httpx.put(_url(server), json={"steps": steps}, headers=_auth(server))


def test_an_unknown_provider_is_refused_with_the_known_ones(server: ServerProcess) -> None:
    step = {"id": "ask", "type": "llm", "model": "mistral:large", "prompt": "hi"}
    detail = assert_error(_put(server, [step]), 400, "INVALID_TREE")
    message = detail["message"]
    assert "'ask'" in message and "'model'" in message and "'mistral'" in message, message
    for provider in ("builtin", "openai", "anthropic"):
        assert provider in message, message
    assert detail["issues"][0]["stepId"] == "ask" and detail["issues"][0]["field"] == "model"


def test_models_of_a_known_provider_are_not_checked_against_a_list(server: ServerProcess) -> None:
    step = {"id": "ask", "type": "llm", "model": "openai:some-model-of-next-year", "prompt": "hi"}
    assert _put(server, [step]).status_code == 200


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ({"secs": 1}, "'secs'"),
        ({"value": 1}, "'seconds'"),
    ],
)
def test_python_step_arguments_are_checked_against_the_signature(
    server: ServerProcess, args: dict[str, Any], needle: str
) -> None:
    step = {"id": "nap", "type": "python", "function": "time.sleep", "args": args}
    detail = assert_error(_put(server, [step]), 400, "INVALID_TREE")
    message = detail["message"]
    assert "'nap'" in message and "time.sleep" in message and needle in message, message
    assert "time.sleep(seconds: float, value: Any = None)" in message, message


def test_python_step_with_the_right_arguments_is_accepted(server: ServerProcess) -> None:
    step = {"id": "nap", "type": "python", "function": "time.sleep", "args": {"seconds": 0, "value": 1}}
    assert _put(server, [step]).status_code == 200
