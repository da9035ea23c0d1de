"""apply_block_overrides: what a request may change per step, and every way it can get that wrong."""

from __future__ import annotations

from typing import Any

import pytest

from noukai_server.flows import (
    AgentStep,
    FlowSpec,
    LlmStep,
    OverrideError,
    PythonStep,
    TemplateStep,
    apply_block_overrides,
    load_flow,
)

SPEC = load_flow(
    {
        "slug": "o",
        "steps": [
            {
                "id": "ask",
                "type": "llm",
                "model": "builtin:echo",
                "prompt": "{{ message }}",
                "params": {"a": 1},
            },
            {"id": "act", "type": "agent", "model": "builtin:test", "prompt": "go", "tools": ["search"]},
            {"id": "shape", "type": "template", "template": "{{ steps.ask.output }}"},
            {"id": "call", "type": "python", "function": "f", "args": {"x": 1}},
        ],
    }
)


def fail(overrides: dict[str, Any]) -> OverrideError:
    with pytest.raises(OverrideError) as caught:
        apply_block_overrides(SPEC, overrides)
    assert caught.value.code == "INVALID_OVERRIDE"
    assert str(caught.value) == caught.value.message
    return caught.value


def test_llm_fields_are_overridden() -> None:
    spec = apply_block_overrides(
        SPEC,
        {
            "ask": {
                "model": "openai:gpt-4o-mini",
                "temperature": 0.1,
                "maxTokens": 50,
                "system": "Be terse.",
                "prompt": "Say {{ message }}",
                "params": {"b": 2},
            }
        },
    )
    ask = spec.steps[0]
    assert isinstance(ask, LlmStep)
    assert (ask.model, ask.temperature, ask.max_tokens, ask.system, ask.prompt) == (
        "openai:gpt-4o-mini",
        0.1,
        50,
        "Be terse.",
        "Say {{ message }}",
    )
    assert ask.params == {"b": 2}  # replaced, not merged
    assert SPEC.steps[0].model == "builtin:echo"  # type: ignore[union-attr]  # the original is untouched
    assert spec.steps[1:] == SPEC.steps[1:]


def test_agent_template_and_python_fields() -> None:
    spec = apply_block_overrides(
        SPEC,
        {
            "act": {"max_tokens": 9, "temperature": 2},
            "shape": {"template": {"k": "{{ message }}"}},
            "call": {"args": {"y": "{{ parameters.y }}"}},
        },
    )
    act, shape, call = spec.steps[1:]
    assert isinstance(act, AgentStep)
    assert (act.max_tokens, act.temperature, act.tools) == (9, 2, ["search"])
    assert isinstance(shape, TemplateStep)
    assert shape.template == {"k": "{{ message }}"}
    assert isinstance(call, PythonStep)
    assert call.args == {"y": "{{ parameters.y }}"}


def test_system_can_be_cleared() -> None:
    with_system = apply_block_overrides(SPEC, {"ask": {"system": "x"}})
    cleared = apply_block_overrides(with_system, {"ask": {"system": None}})
    assert cleared.steps[0].system is None  # type: ignore[union-attr]


def test_no_overrides_returns_the_same_spec() -> None:
    assert apply_block_overrides(SPEC, {}) is SPEC


def test_empty_overrides_for_a_step_keep_it() -> None:
    spec = apply_block_overrides(SPEC, {"ask": {}})
    assert isinstance(spec, FlowSpec)
    assert spec == SPEC


def test_unknown_step() -> None:
    err = fail({"nope": {"prompt": "x"}})
    assert err.message == "blockOverrides: unknown step 'nope'; steps: ask, act, shape, call"
    assert (err.step_id, err.field) == ("nope", None)


def test_fields_must_be_an_object() -> None:
    err = fail({"ask": "prompt"})
    assert err.message == "blockOverrides for step 'ask' must be an object"


@pytest.mark.parametrize(
    ("step_id", "field", "allowed"),
    [
        ("ask", "tools", "max_tokens, model, params, prompt, system, temperature"),
        ("ask", "id", "max_tokens, model, params, prompt, system, temperature"),
        ("ask", "output", "max_tokens, model, params, prompt, system, temperature"),
        ("act", "max_iterations", "max_tokens, model, params, prompt, system, temperature"),
        ("shape", "prompt", "template"),
        ("shape", "when", "template"),
        ("call", "function", "args"),
    ],
)
def test_disallowed_fields(step_id: str, field: str, allowed: str) -> None:
    err = fail({step_id: {field: "x"}})
    step_type = SPEC.steps[SPEC.step_index(step_id)].type
    assert err.message == (
        f"blockOverrides for step {step_id!r}: field {field!r} cannot be overridden on a {step_type} step; "
        f"allowed: {allowed}"
    )
    assert (err.step_id, err.field) == (step_id, field)


def test_camel_and_snake_case_for_the_same_field() -> None:
    err = fail({"ask": {"max_tokens": 5, "maxTokens": 6}})
    assert err.message == "blockOverrides for step 'ask': 'max_tokens' and 'maxTokens' both set 'max_tokens'"


@pytest.mark.parametrize(
    ("fields", "field", "expected"),
    [
        ({"temperature": 3}, "temperature", "must be less than or equal to 2 (got 3)"),
        ({"maxTokens": 0}, "max_tokens", "must be greater than 0 (got 0)"),
        ({"model": "gpt-4o"}, "model", "a model is 'provider:model'"),
        ({"model": None}, "model", "must be a valid string"),
        ({"prompt": "{{ mesage }}"}, "prompt", "unknown name 'mesage'"),
        ({"prompt": "{{ steps.shape.output }}"}, "prompt", "steps.shape is a later step"),
        ({"system": "{% if %}"}, "system", "template syntax error"),
        ({"params": [1]}, "params", "must be a valid dictionary"),
    ],
)
def test_invalid_values(fields: dict[str, Any], field: str, expected: str) -> None:
    err = fail({"ask": fields})
    assert err.message.startswith(f"invalid blockOverrides: step 'ask' (steps[0]), field '{field}': ")
    assert expected in err.message
    assert (err.step_id, err.field) == ("ask", field)


def test_invalid_template_and_args_values() -> None:
    assert fail({"shape": {"template": "{{ item }}"}}).field == "template"
    err = fail({"call": {"args": {"x": "{{ nope }}"}}})
    assert err.field == "args.x"
    assert "unknown name 'nope'" in err.message
