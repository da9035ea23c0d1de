"""Static template checks at load time: syntax, names, `item`/`loop` scope and step order."""

from __future__ import annotations

from typing import Any

import pytest

from noukai_server.flows import FlowIssue, FlowValidationError, load_flow


def template_step(step_id: str, template: Any, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "template", "template": template, **extra}


def issues(*steps: dict[str, Any]) -> list[FlowIssue]:
    with pytest.raises(FlowValidationError) as caught:
        load_flow({"slug": "c", "steps": list(steps)})
    assert caught.value.code == "INVALID_TREE"
    return caught.value.issues


def only(*steps: dict[str, Any]) -> FlowIssue:
    found = issues(*steps)
    assert len(found) == 1, found
    return found[0]


def test_unknown_name_is_named_with_a_suggestion() -> None:
    issue = only({"id": "check", "type": "llm", "model": "builtin:echo", "prompt": "Check: {{ mesage }}"})
    assert issue.message == (
        "step 'check' (steps[0]), field 'prompt': unknown name 'mesage' (did you mean 'message'?); "
        "available: message, messages, parameters, attachments, steps, run"
    )
    assert (issue.step_id, issue.step_index, issue.field) == ("check", 0, "prompt")


@pytest.mark.parametrize(
    "template",
    [
        "{{ message }}{{ messages }}{{ parameters }}{{ attachments }}{{ run.id }}",
        "{% set x = parameters.a %}{{ x }}",
        "{% for m in messages %}{{ m.content }}{{ loop.index }}{% endfor %}",
        "{{ range(3) | list }}{{ dict(a=1) }}{{ namespace(a=1).a }}",
        "{{ message | tojson }}{{ '{}' | fromjson }}",
        "{% macro m(x) %}{{ x }}{% endmacro %}{{ m(message) }}",
    ],
)
def test_allowed_names_and_bound_names(template: str) -> None:
    assert load_flow({"slug": "c", "steps": [template_step("a", template)]}).slug == "c"


def test_unknown_names_in_nested_structures_name_the_leaf() -> None:
    issue = only(template_step("shape", {"a": [1, {"b": "{{ nope }}"}]}))
    assert issue.field == "template.a[1].b"
    assert "unknown name 'nope'" in issue.message


def test_each_unknown_name_is_one_issue() -> None:
    found = issues(template_step("a", "{{ zed }}{{ alpha }}"))
    assert [issue.message.split(": ", 1)[1].split(";")[0] for issue in found] == [
        "unknown name 'alpha'",
        "unknown name 'zed'",
    ]


def test_syntax_error_names_field_and_line() -> None:
    issue = only(template_step("a", "ok\n{{ x }"))
    assert (
        issue.message
        == "step 'a' (steps[0]), field 'template': template syntax error at line 2: unexpected '}'"
    )


def test_unknown_filter_is_a_syntax_error() -> None:
    issue = only({"id": "p", "type": "python", "function": "f", "args": {"x": "{{ message | shout }}"}})
    assert issue.field == "args.x"
    assert "template syntax error at line 1: No filter named 'shout'" in issue.message


@pytest.mark.parametrize("field", ["when", "foreach"])
def test_when_and_foreach_are_checked(field: str) -> None:
    issue = only(template_step("a", "x", **{field: "{{ paramters.on }}"}))
    assert issue.field == field
    assert "unknown name 'paramters' (did you mean 'parameters'?)" in issue.message


def test_system_is_checked() -> None:
    step = {"id": "a", "type": "agent", "model": "builtin:test", "prompt": "x", "system": "{% if %}"}
    issue = only(step)
    assert issue.field == "system"
    assert "template syntax error" in issue.message


def test_item_and_loop_inside_foreach() -> None:
    step = template_step(
        "a",
        {"value": "{{ item }}", "at": "{{ loop.index }} of {{ loop.length }}"},
        foreach="{{ parameters.items }}",
        when="{{ parameters.items | length > 0 }}",
    )
    assert load_flow({"slug": "c", "steps": [step]}).slug == "c"


@pytest.mark.parametrize("name", ["item", "loop"])
def test_item_and_loop_outside_foreach(name: str) -> None:
    issue = only(template_step("a", f"{{{{ {name} }}}}"))
    assert (
        issue.message
        == f"step 'a' (steps[0]), field 'template': '{name}' is only defined in a step with 'foreach'"
    )


@pytest.mark.parametrize("field", ["foreach", "when"])
def test_item_and_loop_before_the_loop(field: str) -> None:
    step = template_step("a", "{{ item }}", **{"foreach": "{{ [1] }}", field: "{{ loop.index }}"})
    issue = only(step)
    assert issue.field == field
    assert (
        "'loop' cannot be used in 'foreach' or 'when', which are decided once before the loop"
        in issue.message
    )


def test_suggestions_inside_foreach_include_item_and_loop() -> None:
    issue = only(template_step("a", "{{ itme }}", foreach="{{ parameters.x }}"))
    expected = "(did you mean 'item'?); available: message, messages, parameters, attachments, steps, run, "
    assert issue.message.endswith(expected + "item, loop")


def test_reference_to_an_earlier_step() -> None:
    steps = [
        template_step("first", "1"),
        template_step("second", "{{ steps.first.output }}{{ steps['first'] }}"),
    ]
    assert load_flow({"slug": "c", "steps": steps}).slug == "c"


def test_forward_reference() -> None:
    issue = only(template_step("now", "{{ steps.later.output }}"), template_step("later", "x"))
    assert issue.message == (
        "step 'now' (steps[0]), field 'template': steps.later is a later step (steps[1]); "
        "a step can only read the outputs of earlier steps"
    )


def test_forward_reference_by_subscript_with_a_dashed_id() -> None:
    issue = only(template_step("now", '{{ steps["my-later"].output }}'), template_step("my-later", "x"))
    assert issue.message.endswith(
        "field 'template': steps[\"my-later\"] is a later step (steps[1]); "
        "a step can only read the outputs of earlier steps"
    )


def test_self_reference() -> None:
    issue = only(template_step("me", "{{ steps.me.output }}"))
    assert "steps.me is this step" in issue.message


def test_unknown_step_reference_with_suggestion() -> None:
    issue = only(template_step("check", "1"), template_step("b", "{{ steps.chek.output }}"))
    assert (
        issue.message
        == "step 'b' (steps[1]), field 'template': steps.chek names no step (did you mean 'check'?)"
    )


def test_computed_step_references_are_left_to_the_run() -> None:
    steps = [template_step("a", "1"), template_step("b", "{{ steps[parameters.which].output }}")]
    assert load_flow({"slug": "c", "steps": steps}).slug == "c"


def test_locally_rebound_steps_is_not_checked() -> None:
    step = template_step("a", "{% set steps = {'x': 1} %}{{ steps.x }}")
    assert load_flow({"slug": "c", "steps": [step]}).slug == "c"


def test_non_string_when_must_be_bool() -> None:
    assert load_flow({"slug": "c", "steps": [template_step("a", "x", when=False)]}).steps[0].when is False
    issue = only(template_step("a", "x", when=0))
    assert issue.field == "when"
