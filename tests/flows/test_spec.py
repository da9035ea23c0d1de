"""FlowSpec and the step models: every step type parses, documents round-trip, helpers answer."""

from __future__ import annotations

import json

import pytest

from noukai_server.flows import (
    AgentStep,
    FlowSpec,
    LlmStep,
    PythonStep,
    TemplateStep,
    load_flow,
)

ALL_TYPES = """
slug: all-types
name: All types
description: One step of each type.
trace_capture_mode: redacted
steps:
  - id: ask
    name: Ask
    type: llm
    model: openai:gpt-4o-mini
    system: "Be brief."
    prompt: "{{ message }}"
    temperature: 0.5
    max_tokens: 100
    output: json
    params: {top_p: 0.9}
    timeout_seconds: 30
  - id: act
    type: agent
    model: anthropic:claude-3-5-haiku-latest
    prompt: "Use tools on {{ steps.ask.output }}"
    tools: [search, lookup]
    max_iterations: 5
  - id: shape
    type: template
    when: true
    template: {answer: "{{ steps.act.output }}", list: ["{{ run.id }}", 3, null]}
  - id: score
    type: python
    function: grading.score
    foreach: "{{ parameters.items }}"
    args: {text: "{{ item }}", index: "{{ loop.index }}", fixed: 2}
"""


def test_every_step_type_parses() -> None:
    spec = load_flow(ALL_TYPES)
    ask, act, shape, score = spec.steps
    assert isinstance(ask, LlmStep)
    assert (ask.model, ask.output, ask.temperature, ask.max_tokens) == (
        "openai:gpt-4o-mini",
        "json",
        0.5,
        100,
    )
    assert ask.params == {"top_p": 0.9}
    assert ask.timeout_seconds == 30
    assert isinstance(act, AgentStep)
    assert act.tools == ["search", "lookup"]
    assert act.max_iterations == 5
    assert isinstance(shape, TemplateStep)
    assert shape.when is True
    assert shape.template == {"answer": "{{ steps.act.output }}", "list": ["{{ run.id }}", 3, None]}
    assert isinstance(score, PythonStep)
    assert score.function == "grading.score"
    assert spec.trace_capture_mode == "redacted"


def test_defaults() -> None:
    spec = load_flow(
        "slug: d\nsteps:\n"
        "  - {id: a, type: llm, model: 'builtin:echo', prompt: hi}\n"
        "  - {id: b, type: agent, model: 'myvllm:llama3', prompt: hi}\n"
    )
    llm, agent = spec.steps
    assert isinstance(llm, LlmStep)
    assert isinstance(agent, AgentStep)
    assert spec.trace_capture_mode == "full"
    assert spec.name is None
    assert spec.description is None
    assert (llm.output, llm.params, llm.system, llm.when, llm.foreach) == ("text", {}, None, None, None)
    assert (agent.tools, agent.max_iterations) == ([], 10)


def test_to_document_round_trips_and_is_json() -> None:
    spec = load_flow(ALL_TYPES)
    document = spec.to_document()
    assert load_flow(document) == spec
    assert load_flow(json.dumps(document), filename="flow.json") == spec
    assert json.loads(json.dumps(document)) == document


def test_to_document_is_canonical() -> None:
    document = load_flow(
        "steps: [{prompt: hi, model: 'builtin:echo', type: llm, id: a, output: text}]\nslug: c"
    ).to_document()
    # Defaults are left out; `id` and `type` lead every step.
    assert document == {
        "slug": "c",
        "steps": [{"id": "a", "type": "llm", "model": "builtin:echo", "prompt": "hi"}],
    }
    assert list(document["steps"][0])[:2] == ["id", "type"]


def test_to_document_keeps_null_template_and_false_when() -> None:
    spec = load_flow("slug: n\nsteps: [{id: a, type: template, template: null, when: false}]")
    document = spec.to_document()
    assert document["steps"][0]["template"] is None
    assert document["steps"][0]["when"] is False
    assert load_flow(document) == spec


def test_step_index() -> None:
    spec = load_flow(ALL_TYPES)
    assert spec.step_index("ask") == 0
    assert spec.step_index("score") == 3
    with pytest.raises(KeyError):
        spec.step_index("nope")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ message }}", True),
        ("{% for m in messages %}{{ m.content }}{% endfor %}", True),
        ("{{ parameters.x }}", False),
        ("{% set message = 'x' %}{{ message }}", False),
    ],
)
def test_uses_message(template: str, expected: bool) -> None:
    spec = load_flow({"slug": "u", "steps": [{"id": "a", "type": "template", "template": {"k": [template]}}]})
    assert spec.uses_message() is expected


def test_uses_message_looks_at_every_template_field() -> None:
    for field in ("when", "foreach"):
        spec = load_flow(
            {"slug": "u", "steps": [{"id": "a", "type": "template", "template": 1, field: "{{ message }}"}]}
        )
        assert spec.uses_message()
    spec = load_flow(
        {
            "slug": "u",
            "steps": [{"id": "a", "type": "python", "function": "f", "args": {"x": "{{ messages }}"}}],
        }
    )
    assert spec.uses_message()
    spec = load_flow(
        {
            "slug": "u",
            "steps": [{"id": "a", "type": "llm", "model": "b:c", "prompt": "x", "system": "{{ message }}"}],
        }
    )
    assert spec.uses_message()


def test_uses_message_skips_broken_templates_of_hand_built_specs() -> None:
    spec = FlowSpec(slug="h", steps=[TemplateStep(id="a", template="{{ message ")])
    assert spec.uses_message() is False


def test_specs_are_immutable() -> None:
    spec = load_flow(ALL_TYPES)
    with pytest.raises(ValueError):
        spec.slug = "other"  # type: ignore[misc]
