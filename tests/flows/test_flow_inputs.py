"""Declared flow inputs: the `inputs:` section, its checks at push, and binding a run's parameters."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from noukai_server.flows import (
    FlowInput,
    FlowSpec,
    FlowValidationError,
    InputError,
    TemplateEngine,
    bind_parameters,
    build_context,
    load_flow,
    load_flow_file,
)

ROOT = Path(__file__).resolve().parents[2]
ENGINE = TemplateEngine()


def flow(inputs: Any, *templates: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    steps = [{"id": f"s{i}", "type": "template", "template": source} for i, source in enumerate(templates)]
    document: dict[str, Any] = {
        "slug": "f",
        "steps": steps or [{"id": "s0", "type": "template", "template": "x"}],
    }
    if inputs is not None:
        document["inputs"] = inputs
    return {**document, **(extra or {})}


def problems(document: dict[str, Any] | str) -> list[str]:
    with pytest.raises(FlowValidationError) as caught:
        load_flow(document)
    return [str(issue) for issue in caught.value.issues]


# --- the document --------------------------------------------------------------------------------


def test_inputs_are_parsed_with_required_following_the_default() -> None:
    spec = load_flow(
        flow(
            {
                "name": {"type": "string", "description": "Who to greet"},
                "count": {"type": "integer", "default": 2},
                "tags": {"type": "array", "required": False},
                "extra": {"type": "object", "default": None},
                "ratio": {"type": "number", "required": True},
            }
        )
    )
    assert list(spec.inputs) == ["name", "count", "tags", "extra", "ratio"]
    required = {name: declared.is_required for name, declared in spec.inputs.items()}
    assert required == {"name": True, "count": False, "tags": False, "extra": False, "ratio": True}
    assert spec.inputs["name"].description == "Who to greet"
    assert spec.inputs["count"].has_default and spec.inputs["extra"].has_default
    assert not spec.inputs["tags"].has_default


def test_inputs_round_trip_as_written() -> None:
    inputs = {
        "name": {"type": "string"},
        "nothing": {"type": "string", "default": None},
        "flags": {"type": "object", "default": {"a": [1]}, "description": "d"},
    }
    spec = load_flow(flow(inputs))
    document = spec.to_document()
    assert document["inputs"] == inputs
    assert load_flow(document) == spec


def test_a_flow_without_inputs_has_none_and_documents_none() -> None:
    spec = load_flow(flow(None, "{{ parameters.anything }}"))
    assert spec.inputs == {}
    assert "inputs" not in spec.to_document()
    assert load_flow(flow({}, "{{ parameters.anything }}")).inputs == {}


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        ({"bad-name": {"type": "string"}}, "field 'inputs[\"bad-name\"]': invalid input name 'bad-name'"),
        ({"1st": {"type": "string"}}, "invalid input name '1st'"),
        ({"n": {"type": "int"}}, "field 'inputs.n.type': unknown input type 'int'; expected one of: string,"),
        ({"n": {}}, "field 'inputs.n.type': required field is missing"),
        (
            {"n": {"type": "integer", "default": "x"}},
            "field 'inputs.n': default must be of type 'integer', got string",
        ),
        ({"n": {"type": "integer", "default": True}}, "default must be of type 'integer', got boolean"),
        ({"n": {"type": "string", "default": "x", "required": True}}, "an input with a default is optional"),
        ({"n": {"type": "string", "typ": 1}}, "field 'inputs.n.typ': unknown field;"),
        (
            {"n": "string"},
            "field 'inputs.n': an input must be a mapping such as {type: string}, got a string",
        ),
        (["n"], "field 'inputs': inputs must map each input name to its declaration, got a list"),
        ({"n": {"type": "string", "required": "yes"}}, "field 'inputs.n.required'"),
    ],
)
def test_bad_input_declarations_are_located(inputs: Any, needle: str) -> None:
    assert any(needle in text for text in problems(flow(inputs))), problems(flow(inputs))


# --- the push-time check: templates read declared inputs only ------------------------------------


def test_reading_an_undeclared_parameter_names_step_field_and_declared_inputs() -> None:
    document = flow(
        {"verbose": {"type": "boolean", "default": False}, "name": {"type": "string"}},
        "ok {{ parameters.name }}",
        "{{ parameters.verbos }}",
    )
    (issue,) = problems(document)
    assert issue == (
        "step 's1' (steps[1]), field 'template': parameters.verbos is not a declared input "
        "(did you mean 'verbose'?); declared inputs: verbose, name (declare it under 'inputs')"
    )
    with pytest.raises(FlowValidationError) as caught:
        load_flow(document)
    located = caught.value.issues[0]
    assert (located.step_id, located.step_index, located.field) == ("s1", 1, "template")


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("when", "{{ parameters.other }}", "when"),
        ("foreach", "{{ parameters['other'] }}", "foreach"),
        ("template", {"a": ["{{ parameters.other | default(1) }}"]}, "template.a[0]"),
        ("template", "{% if parameters.other %}x{% endif %}", "template"),
    ],
)
def test_every_template_field_is_checked(field: str, value: Any, where: str) -> None:
    step: dict[str, Any] = {"id": "s", "type": "template", "template": "x", field: value}
    document = {"slug": "f", "inputs": {"known": {"type": "string"}}, "steps": [step]}
    (issue,) = problems(document)
    assert f"field '{where}'" in issue
    assert "'other'" in issue or "parameters.other" in issue
    assert "declared inputs: known" in issue


def test_python_args_and_prompts_are_checked_too() -> None:
    document = {
        "slug": "f",
        "inputs": {"known": {"type": "string"}},
        "steps": [
            {"id": "p", "type": "python", "function": "f", "args": {"x": "{{ parameters.nope }}"}},
            {"id": "l", "type": "llm", "model": "builtin:echo", "prompt": "{{ parameters.gone }}"},
        ],
    }
    found = problems(document)
    assert len(found) == 2
    assert "step 'p' (steps[0]), field 'args.x': parameters.nope is not a declared input" in found[0]
    assert "step 'l' (steps[1]), field 'prompt': parameters.gone is not a declared input" in found[1]


def test_declared_reads_method_calls_and_computed_keys_pass() -> None:
    spec = load_flow(
        flow(
            {"name": {"type": "string"}, "items": {"type": "array", "default": []}},
            "{{ parameters.name }} {{ parameters['items'] | length }}",
            "{{ parameters.items() | list }} {{ parameters | tojson }}",
            "{{ parameters[parameters.name] | default(0) }}",
        )
    )
    assert set(spec.inputs) == {"name", "items"}


def test_a_flow_without_inputs_reads_any_parameter_as_before() -> None:
    load_flow(flow(None, "{{ parameters.whatever }} {{ parameters['else'] }}"))


def test_the_check_also_runs_when_another_part_of_the_flow_is_invalid() -> None:
    document = flow(
        {"known": {"type": "string"}}, "{{ parameters.unknown }}", extra={"trace_capture_mode": "x"}
    )
    found = problems(document)
    assert any("trace_capture_mode" in text for text in found)
    assert any("parameters.unknown is not a declared input" in text for text in found)


# --- binding a run's parameters ------------------------------------------------------------------


SPEC = load_flow(
    flow(
        {
            "name": {"type": "string", "description": "Who to greet"},
            "count": {"type": "integer", "default": 2},
            "ratio": {"type": "number", "default": 0.5},
            "loud": {"type": "boolean", "default": False},
            "tags": {"type": "array", "default": ["x"]},
            "meta": {"type": "object", "required": False},
        },
        "{{ parameters.name }}",
    )
)


def test_missing_optional_inputs_take_their_default_or_null() -> None:
    bound = bind_parameters(SPEC, {"name": "Ada"})
    assert bound == {"name": "Ada", "count": 2, "ratio": 0.5, "loud": False, "tags": ["x"], "meta": None}


def test_sent_values_win_and_undeclared_parameters_are_kept() -> None:
    sent = {"name": "Ada", "count": 5, "ratio": 1, "loud": True, "tags": [], "meta": {"a": 1}, "other": [1]}
    assert bind_parameters(SPEC, sent) == sent


def test_null_counts_as_missing() -> None:
    assert bind_parameters(SPEC, {"name": "Ada", "count": None})["count"] == 2
    with pytest.raises(InputError, match="missing required input 'name'"):
        bind_parameters(SPEC, {"name": None})


def test_defaults_are_copied_per_run() -> None:
    first = bind_parameters(SPEC, {"name": "a"})
    first["tags"].append("mutated")
    assert bind_parameters(SPEC, {"name": "b"})["tags"] == ["x"]
    assert SPEC.inputs["tags"].default == ["x"]


def test_a_missing_required_input_is_named() -> None:
    with pytest.raises(InputError) as caught:
        bind_parameters(SPEC, {})
    assert caught.value.problems == {"name": "missing required input 'name' (string): Who to greet"}
    assert str(caught.value) == "missing required input 'name' (string): Who to greet"
    with pytest.raises(InputError):
        bind_parameters(SPEC, None)


@pytest.mark.parametrize(
    ("name", "value", "expected", "got"),
    [
        ("name", 1, "string", "integer"),
        ("count", 1.5, "integer", "number"),
        ("count", True, "integer", "boolean"),
        ("count", "2", "integer", "string"),
        ("ratio", False, "number", "boolean"),
        ("loud", "true", "boolean", "string"),
        ("loud", 1, "boolean", "integer"),
        ("tags", "x", "array", "string"),
        ("tags", {"a": 1}, "array", "object"),
        ("meta", [1], "object", "array"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_input_and_the_type(
    name: str, value: Any, expected: str, got: str
) -> None:
    with pytest.raises(InputError) as caught:
        bind_parameters(SPEC, {"name": "Ada", name: value})
    assert str(caught.value) == f"input {name!r} must be of type {expected!r}, got {got}"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InputError) as caught:
        bind_parameters(SPEC, {"count": "x", "loud": 0})
    assert set(caught.value.problems) == {"name", "count", "loud"}


def test_integers_are_numbers() -> None:
    assert bind_parameters(SPEC, {"name": "a", "ratio": 3})["ratio"] == 3


def test_a_flow_without_inputs_gets_its_parameters_as_sent() -> None:
    spec = load_flow(flow(None, "{{ parameters.x }}"))
    sent = {"keys": 1, "x": None}
    assert bind_parameters(spec, sent) == sent
    assert bind_parameters(spec, None) == {}


def test_flow_input_model_defaults() -> None:
    declared = FlowInput(type="string")
    assert (declared.is_required, declared.has_default, declared.default) == (True, False, None)
    assert FlowInput(type="string", default="a").is_required is False


# --- the README's example and the shipped examples -----------------------------------------------


def _readme_flow() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Flows", 1)[1]
    match = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def _run_templates(spec: FlowSpec, parameters: dict[str, Any], message: str = "m") -> dict[str, Any]:
    """What each step would do, rendered the way the engine renders: `when`, then the step."""
    bound = bind_parameters(spec, parameters)
    outputs: dict[str, Any] = {}
    skipped: list[str] = []
    for step in spec.steps:
        ctx = build_context(
            message=message,
            messages=None,
            parameters=bound,
            attachments=None,
            outputs=outputs,
            run={},
            skipped=skipped,
        )
        if isinstance(step.when, str) and not ENGINE.is_truthy(ENGINE.render_value(step.when, ctx)):
            skipped.append(step.id)
            continue
        outputs[step.id] = "ran"
    return {"outputs": outputs, "skipped": skipped}


def test_the_readme_example_runs_without_verbose() -> None:
    spec = load_flow(_readme_flow())
    assert spec.inputs["verbose"].is_required is False
    assert _run_templates(spec, {}) == {"outputs": {"check": "ran"}, "skipped": ["shape"]}
    assert _run_templates(spec, {"verbose": True})["skipped"] == []


def test_the_grade_example_runs_without_verbose() -> None:
    spec = load_flow_file(ROOT / "examples" / "flows" / "grade.yaml")
    assert _run_templates(spec, {})["skipped"] == ["explain"]
    assert _run_templates(spec, {"verbose": True})["skipped"] == []


def test_the_foreach_example_requires_its_items() -> None:
    spec = load_flow_file(ROOT / "examples" / "flows" / "foreach.yaml")
    with pytest.raises(InputError, match="missing required input 'items' \\(array\\)"):
        bind_parameters(spec, {})
    with pytest.raises(InputError, match="input 'items' must be of type 'array', got string"):
        bind_parameters(spec, {"items": "abc"})
    (step,) = spec.steps
    assert step.foreach is not None
    ctx = build_context(
        message=None,
        messages=None,
        parameters=bind_parameters(spec, {"items": ["a"]}),
        attachments=None,
        outputs={},
        run={},
    )
    assert ENGINE.render_value(step.foreach, ctx) == ["a"]


@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "flows").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_that_read_parameters_declare_them(path: Path) -> None:
    spec = load_flow_file(path)
    reads = any("parameters" in source for step in spec.steps for _, source in step.templates())
    assert bool(spec.inputs) == reads
