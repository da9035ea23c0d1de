"""Guards in the flow language: their shape, the checks at push time (each reported with its step,
field and line, all at once), and the stored document's round trip."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from noukai_server.flows import FlowValidationError, GuardSpec, InputGuardSpec, load_flow

Document = dict[str, Any]
STEP: Document = {"id": "a", "type": "template", "template": "x"}


def with_guard(guard: Document, **flow: Any) -> Document:
    return {"slug": "g", **flow, "steps": [{**STEP, "guards": [guard]}]}


def with_input_guard(guard: Document, **flow: Any) -> Document:
    return {"slug": "g", **flow, "input_guards": [guard], "steps": [STEP]}


def issues(source: Document | str, **kwargs: Any) -> list[tuple[str | None, int | None, str]]:
    with pytest.raises(FlowValidationError) as caught:
        load_flow(source, **kwargs)
    assert caught.value.code == "INVALID_TREE"
    return [(issue.field, issue.line, issue.message) for issue in caught.value.issues]


def only_message(document: Document, **kwargs: Any) -> str:
    [(_, _, message)] = issues(document, **kwargs)
    return message


def test_every_kind_loads_and_names_its_kind() -> None:
    guards = [
        {"name": "c", "condition": "{{ value }}"},
        {"name": "s", "schema": {"type": "string"}},
        {"name": "r", "regex": {"pattern": "^a", "mode": "fullmatch", "expect": "no_match"}},
        {"name": "f", "function": "text.upper"},
        {"name": "j", "judge": {"model": "builtin:echo", "prompt": "PASS {{ value }}"}},
    ]
    spec = load_flow({"slug": "g", "steps": [{**STEP, "guards": guards}]})
    assert [guard.kind for guard in spec.steps[0].guards] == [
        "condition",
        "schema",
        "regex",
        "function",
        "judge",
    ]
    assert all(guard.on_fail == "fail" for guard in spec.steps[0].guards)


def test_input_guards_check_the_message_unless_told_otherwise() -> None:
    spec = load_flow(
        {
            "slug": "g",
            "inputs": {"email": {"type": "string"}},
            "input_guards": [
                {"name": "m", "condition": "{{ value }}"},
                {"name": "e", "input": "parameters.email", "regex": {"pattern": "@"}},
            ],
            "steps": [STEP],
        }
    )
    assert [(g.input, g.parameter) for g in spec.input_guards] == [
        ("message", None),
        ("parameters.email", "email"),
    ]


def test_the_document_round_trips_as_written() -> None:
    guard = {
        "name": "shape",
        "schema": {"type": "object", "required": ["a"]},
        "on_fail": "replace",
        "replacement": {"a": "{{ value }}"},
    }
    spec = load_flow(with_guard(guard, input_guards=[{"name": "r", "regex": {"pattern": "x"}}]))
    document = spec.to_document()
    assert document["steps"][0]["guards"] == [guard]
    assert document["input_guards"] == [{"name": "r", "regex": {"pattern": "x"}}]
    assert load_flow(document) == spec


def test_a_flow_without_guards_documents_none() -> None:
    document = load_flow({"slug": "g", "steps": [STEP]}).to_document()
    assert "input_guards" not in document and "guards" not in document["steps"][0]


@pytest.mark.parametrize(
    ("guard", "text"),
    [
        ({"name": "n"}, "a guard has exactly one of condition, schema, regex, function, judge; found none"),
        (
            {"name": "n", "condition": "x", "function": "f"},
            "a guard has exactly one of condition, schema, regex, function, judge; found condition, function",
        ),
        ({"name": "n", "condition": "x", "on_fail": "replace"}, "on_fail: replace needs a 'replacement'"),
        (
            {"name": "n", "condition": "x", "replacement": 1},
            "'replacement' is only used with on_fail: replace",
        ),
        ({"name": "n", "regex": {"pattern": "("}}, "pattern does not compile: missing )"),
        ({"name": "n", "regex": {"pattern": "a" * 1001}}, "at most 1000 characters"),
        ({"name": "n", "schema": {"type": 12}}, "not a valid JSON Schema at 'type'"),
        ({"name": "n", "schema": {"patternProperties": {"^a": {}}}}, "'patternProperties' is not supported"),
        ({"name": "n", "judge": {"model": "no-provider", "prompt": "p"}}, "'no-provider' is not a model"),
        ({"name": "n", "function": "not a name"}, "'not a name' is not a function name"),
        ({"name": "n", "json_schema": {}}, "unknown field"),
        ({"name": "1st", "condition": "x"}, "should match pattern"),
        ({"name": "n", "condition": "x", "on_fail": "ignore"}, "'fail', 'retry' or 'replace'"),
    ],
)
def test_a_guard_of_the_wrong_shape_is_refused(guard: Document, text: str) -> None:
    [(field, line, message)] = issues(with_guard(guard))
    assert text in message
    assert field is not None and field.startswith("guards[0]")


def test_an_input_guard_cannot_retry() -> None:
    message = only_message(with_input_guard({"name": "n", "condition": "x", "on_fail": "retry"}))
    assert message == (
        "field 'input_guards[0]': an input guard cannot retry (no step ran that could answer "
        "differently); use on_fail: fail or on_fail: replace"
    )


def test_a_step_guard_may_retry() -> None:
    spec = load_flow(with_guard({"name": "n", "condition": "x", "on_fail": "retry"}))
    assert spec.steps[0].guards[0].on_fail == "retry"


def test_an_input_guard_names_the_message_or_a_parameter() -> None:
    message = only_message(with_input_guard({"name": "n", "condition": "x", "input": "email"}))
    assert "field 'input_guards[0].input'" in message


def test_every_problem_is_reported_at_once_with_its_line() -> None:
    source = """\
slug: g
inputs:
  email: {type: string}
input_guards:
  - name: a
    input: parameters.phone
    condition: "{{ steps.s.output }}"
  - name: a
    condition: x
    on_fail: retry
steps:
  - id: s
    type: template
    template: x
    guards:
      - name: own
        condition: "{{ steps.s.output }}"
      - name: own
        condition: "{{ steps.t.output }} {{ parameters.nope }} {{ item }}"
  - id: t
    type: template
    template: y
"""
    # Shapes first (pydantic's pass), then the checks that need the rest of the flow.
    assert issues(source) == [
        (
            "input_guards[1]",
            8,
            "field 'input_guards[1]': an input guard cannot retry (no step ran that could answer "
            "differently); use on_fail: fail or on_fail: replace",
        ),
        (
            "input_guards[0].condition",
            7,
            "field 'input_guards[0].condition': steps.s: input guards run before any step, so no step "
            "output exists",
        ),
        (
            "input_guards[0].input",
            6,
            "field 'input_guards[0].input': parameters.phone is not a declared input; declared inputs: email",
        ),
        (
            "guards[0].condition",
            17,
            "step 's' (steps[0]), field 'guards[0].condition': steps.s is this step; a guard reads this "
            "step's output as 'value'",
        ),
        (
            "guards[1].name",
            18,
            "step 's' (steps[0]), field 'guards[1].name': duplicate guard name 'own'; "
            "guard [0] already uses it",
        ),
        (
            "guards[1].condition",
            19,
            "step 's' (steps[0]), field 'guards[1].condition': unknown name 'item'; available in a guard: "
            "message, messages, parameters, attachments, steps, run, value",
        ),
        (
            "guards[1].condition",
            19,
            "step 's' (steps[0]), field 'guards[1].condition': steps.t is a later step (steps[1]); a guard "
            "can only read earlier steps",
        ),
        (
            "guards[1].condition",
            19,
            "step 's' (steps[0]), field 'guards[1].condition': parameters.nope is not a declared input; "
            "declared: email",
        ),
    ]


def test_a_guard_template_with_a_syntax_error_is_refused() -> None:
    message = only_message(with_guard({"name": "n", "condition": "{{ value "}))
    assert message.startswith("step 'a' (steps[0]), field 'guards[0].condition': template syntax error")


def test_replacement_and_judge_prompt_templates_are_checked_too() -> None:
    guard = {"name": "n", "judge": {"model": "builtin:echo", "prompt": "{{ valu }}"}}
    assert "unknown name 'valu'" in only_message(with_guard(guard))
    guard = {"name": "n", "condition": "x", "on_fail": "replace", "replacement": ["{{ nothing }}"]}
    [(field, _, message)] = issues(with_guard(guard))
    assert field == "guards[0].replacement[0]" and "unknown name 'nothing'" in message


def polite(value: Any) -> bool:
    return bool(value)


def two_arguments(text: str, strict: bool) -> bool:
    return strict


def test_functions_and_judge_providers_are_checked_against_the_server() -> None:
    signatures = {"polite": inspect.signature(polite), "two": inspect.signature(two_arguments)}
    known = {"functions": {"polite", "two"}, "providers": {"builtin"}}

    def load(guard: Document) -> list[tuple[str | None, int | None, str]]:
        return issues(
            with_guard(guard),
            known_functions=known["functions"],
            known_providers=known["providers"],
            function_signatures=signatures,
        )

    load_flow(
        with_guard({"name": "n", "function": "polite"}),
        known_functions=known["functions"],
        function_signatures=signatures,
    )
    [(_, _, message)] = load({"name": "n", "function": "rude"})
    assert message.endswith("unknown function 'rude'; registered functions: polite, two")
    problems = [message for _, _, message in load({"name": "n", "function": "two"})]
    assert problems == [
        "step 'a' (steps[0]), field 'guards[0].function': two takes no argument 'value'; expected "
        "two(text: str, strict: bool) (a guard function is called with 'value')",
        "step 'a' (steps[0]), field 'guards[0].function': two needs argument 'text' (missing from 'args'); "
        "expected two(text: str, strict: bool) (a guard function is called with 'value')",
        "step 'a' (steps[0]), field 'guards[0].function': two needs argument 'strict' (missing from "
        "'args'); expected two(text: str, strict: bool) (a guard function is called with 'value')",
    ]
    [(field, _, message)] = load({"name": "n", "judge": {"model": "mistral:large", "prompt": "p"}})
    assert field == "guards[0].judge.model"
    assert message.endswith(
        "unknown provider 'mistral' in 'mistral:large'; available providers: builtin (write 'provider:model')"
    )


def test_the_models_are_public() -> None:
    guard = GuardSpec.model_validate({"name": "n", "schema": {"type": "string"}})
    assert guard.kind == "schema" and guard.json_schema == {"type": "string"}
    assert InputGuardSpec.model_validate({"name": "n", "condition": "x"}).input == "message"
