"""Provider paths through the whole server: the official openai and anthropic SDKs inside a real
`noukai serve`, talking to a fake provider over HTTP."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import ServerProcess
from tests.fakeprovider import FakeProvider, Reply
from tests.server.test_execute_api import assert_error


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    with FakeProvider(api_key="sk-right") as fake:
        yield fake


def step_events(server: ServerProcess, execution_id: str) -> list[dict[str, Any]]:
    with sqlite3.connect(server.data_dir / "noukai.db") as db:
        rows = db.execute(
            "SELECT data FROM run_events WHERE run_id = ? ORDER BY seq", (execution_id,)
        ).fetchall()
    return [orjson.loads(row[0]) for row in rows]


def run_flow(server: ServerProcess, model: str, message: str) -> httpx.Response:
    slug = f"p-{uuid.uuid4().hex[:8]}"
    server.put_flow(
        server.dev_key,
        "dev",
        "main",
        {
            "slug": slug,
            "steps": [
                {"id": "ask", "type": "llm", "model": model, "prompt": "{{ message }}", "system": "Be brief."}
            ],
        },
    )
    return httpx.post(
        f"{server.api_url}/seq/dev/main/{slug}/execute",
        json={"message": message},
        headers={"Authorization": f"Bearer {server.dev_key}"},
        timeout=30,
    )


@pytest.mark.parametrize(
    ("model", "env_prefix"),
    [("openai:gpt-4o-mini", "OPENAI"), ("anthropic:claude-3-5-haiku-latest", "ANTHROPIC")],
)
def test_streamed_chunks_usage_and_cost(
    make_server: Any, provider: FakeProvider, model: str, env_prefix: str
) -> None:
    base = provider.openai_base_url if env_prefix == "OPENAI" else provider.anthropic_base_url
    server = make_server({f"{env_prefix}_BASE_URL": base, f"{env_prefix}_API_KEY": "sk-right"})
    provider.script(Reply(chunks=["Bonjour", ", le", " monde"], usage=(12, 3)))
    response = run_flow(server, model, "Say hello in French")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"] == "Bonjour, le monde"
    events = step_events(server, body["executionId"])
    deltas = [e["outputData"] for e in events if e["eventType"] == "step_output"]
    assert deltas == ["Bonjour", ", le", " monde"]
    completed = next(e for e in events if e["eventType"] == "step_completed")
    assert completed["tokens"] == {"prompt": 12, "completion": 3, "total": 15}
    assert isinstance(completed["costUsd"], str) and float(completed["costUsd"]) > 0
    assert completed["model"].startswith(model.split(":")[0] + ":")
    sent = provider.requests[-1]
    assert "Say hello in French" in orjson.dumps(sent.body).decode()


@pytest.mark.parametrize(
    ("model", "env_prefix"),
    [("openai:gpt-4o-mini", "OPENAI"), ("anthropic:claude-3-5-haiku-latest", "ANTHROPIC")],
)
def test_a_rejected_operator_key_is_byok_key_rejected(
    make_server: Any, provider: FakeProvider, model: str, env_prefix: str
) -> None:
    base = provider.openai_base_url if env_prefix == "OPENAI" else provider.anthropic_base_url
    server = make_server({f"{env_prefix}_BASE_URL": base, f"{env_prefix}_API_KEY": "sk-wrong"})
    detail = assert_error(run_flow(server, model, "hi"), 502, "BYOK_KEY_REJECTED")
    assert detail["stepId"] == "ask"
    assert "sk-wrong" not in detail["message"]
    assert "sk-wrong" not in server.log_text()


def test_a_provider_without_a_key_says_which_variable_to_set(make_server: Any) -> None:
    server = make_server()
    detail = assert_error(run_flow(server, "openai:gpt-4o-mini", "hi"), 502, "BYOK_KEY_REJECTED")
    assert "OPENAI_API_KEY" in detail["message"]


def test_an_unknown_provider_is_refused_at_push_and_model_not_found_at_run(server: ServerProcess) -> None:
    slug = f"p-{uuid.uuid4().hex[:8]}"
    url = f"{server.api_url}/flows/dev/main/{slug}"
    headers = {"Authorization": f"Bearer {server.dev_key}"}
    step = {"id": "ask", "type": "llm", "model": "nosuch:model", "prompt": "{{ message }}"}
    detail = assert_error(httpx.put(url, json={"steps": [step]}, headers=headers), 400, "INVALID_TREE")
    assert "unknown provider 'nosuch'" in detail["message"]
    # A model given per request (a block override) is only known at run.
    httpx.put(url, json={"steps": [{**step, "model": "builtin:echo"}]}, headers=headers).raise_for_status()
    response = httpx.post(
        f"{server.api_url}/seq/dev/main/{slug}/execute",
        json={"message": "hi", "blockOverrides": {"ask": {"model": "nosuch:model"}}},
        headers=headers,
        timeout=30,
    )
    assert_error(response, 422, "MODEL_NOT_FOUND")


def test_reasoning_deltas_are_their_own_events(make_server: Any, provider: FakeProvider) -> None:
    server = make_server({"OPENAI_BASE_URL": provider.openai_base_url, "OPENAI_API_KEY": "sk-right"})
    provider.script(Reply(reasoning=["Let me", " think."], chunks=["42"], usage=(5, 2)))
    response = run_flow(server, "openai:gpt-4o-mini", "the answer?")
    assert response.json()["result"] == "42"
    events = step_events(server, response.json()["executionId"])
    reasoning = [e["delta"] for e in events if e["eventType"] == "step_reasoning"]
    assert reasoning == ["Let me", " think."]
    assert [e["outputData"] for e in events if e["eventType"] == "step_output"] == ["42"]
