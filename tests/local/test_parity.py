"""Every example flow, run in-process and through `noukai serve` with the SDK: the same typed
events, in the same order, with the same payloads but for ids and times."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import noukai
from noukai_server.local import LocalFlow, load_flow
from tests.conftest import REPO_ROOT, ServerProcess

EXAMPLES = REPO_ROOT / "examples" / "flows"

CALLER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a word up.",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]


def answer_tools(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"role": "tool", "tool_call_id": call["id"], "content": f"found {call['id']}"} for call in calls]


CALLS: dict[str, list[dict[str, Any]]] = {
    "agent.yaml": [{"message": "count these words", "tools": CALLER_TOOLS, "tool_handler": answer_tools}],
    "echo.yaml": [{"message": "hello there"}],
    "foreach.yaml": [{"parameters": {"items": ["a", "b", 3]}}],
    "grade.yaml": [{"message": "helo wrld"}, {"message": "speling", "parameters": {"verbose": True}}],
}
"""The inputs each example runs with; every file in examples/flows must have an entry."""

VARYING = frozenset({"runId", "executionId", "flowId", "durationMs", "pausedAt"})
"""What differs between two runs of the same flow whatever runs them: ids and times."""


def comparable(event: noukai.StreamEvent) -> tuple[str, Any]:
    payload = event.model_dump(mode="json", by_alias=True)
    return event.type, _without_varying(payload)


def _without_varying(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_varying(v) for k, v in value.items() if k not in VARYING}
    if isinstance(value, list):
        return [_without_varying(v) for v in value]
    return value


def test_every_example_has_inputs() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(CALLS)


@pytest.fixture
def client(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[noukai.Noukai]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with noukai.Noukai(api_key=server.dev_key, base_url=server.base_url, org="dev", project="main") as sdk:
        yield sdk


def _served_events(
    server: ServerProcess, client: noukai.Noukai, path: Path, call: dict[str, Any]
) -> list[Any]:
    return _served_document_events(server, client, yaml.safe_load(path.read_text()), call)


def _served_document_events(
    server: ServerProcess, client: noukai.Noukai, document: dict[str, Any], call: dict[str, Any]
) -> list[Any]:
    """The SDK's events of a run of `document`, pushed to the server under a slug of its own."""
    slug = f"local-{document['slug']}-{uuid.uuid4().hex[:8]}"
    server.put_flow(server.dev_key, "dev", "main", {**document, "slug": slug})
    with client.flow(slug).events(run_remaining=True, **call) as stream:
        return list(stream)


@pytest.mark.parametrize(
    ("name", "index"),
    [(name, index) for name, calls in sorted(CALLS.items()) for index in range(len(calls))],
)
def test_an_example_streams_the_same_events_in_process_and_served(
    server: ServerProcess, client: noukai.Noukai, name: str, index: int
) -> None:
    call = CALLS[name][index]
    served = _served_events(server, client, EXAMPLES / name, call)
    with load_flow(EXAMPLES / name) as flow:
        local = list(flow.stream(**call))
    assert [type(e) for e in local] == [type(e) for e in served]
    assert [comparable(e) for e in local] == [comparable(e) for e in served]
    assert isinstance(local[-1], noukai.FlowCompleted)


def test_invoke_records_the_events_of_a_streamed_run() -> None:
    call = CALLS["agent.yaml"][0]
    with load_flow(EXAMPLES / "agent.yaml") as flow:
        streamed = list(flow.stream(**call))
        result = flow.invoke(**call)
    assert result.status == "completed"
    assert result.result == streamed[-1].result  # type: ignore[union-attr]
    # `invoke` is triggered as /execute is and a stream as /step is: only run_started says so.
    assert [comparable(e) for e in result.events[1:]] == [comparable(e) for e in streamed[1:]]
    started = result.events[0]
    assert isinstance(started, noukai.RunStarted) and started.trigger_type == "execute"
    assert started.run_id == result.run_id


def test_a_flow_loaded_from_text_or_data_runs_as_from_its_file() -> None:
    path = EXAMPLES / "grade.yaml"
    flows: list[LocalFlow] = [
        load_flow(path),
        load_flow(str(path)),
        load_flow(path.read_text()),
        load_flow(yaml.safe_load(path.read_text())),
    ]
    try:
        results = [[comparable(e) for e in flow.invoke("helo").events] for flow in flows]
    finally:
        for flow in flows:
            flow.close()
    assert all(result == results[0] for result in results)


def test_a_tool_pause_nobody_answers_ends_both_streams_alike(
    server: ServerProcess, client: noukai.Noukai
) -> None:
    call: dict[str, Any] = {"message": "count these words", "tools": CALLER_TOOLS}
    served = _served_events(server, client, EXAMPLES / "agent.yaml", call)
    with load_flow(EXAMPLES / "agent.yaml") as flow:
        local = list(flow.stream(**call))
    assert isinstance(local[-1], noukai.ToolCallsRequired)
    assert [comparable(e) for e in local] == [comparable(e) for e in served]


def test_a_failing_flow_fails_alike(server: ServerProcess, client: noukai.Noukai) -> None:
    document = yaml.safe_load((REPO_ROOT / "tests" / "fixtures" / "flows" / "broken.yaml").read_text())
    served = _served_document_events(server, client, document, {})
    with load_flow(document) as flow:
        local = list(flow.stream())
    assert [e.type for e in local][-2:] == ["step_error", "run_failed"]
    assert [comparable(e) for e in local] == [comparable(e) for e in served]
