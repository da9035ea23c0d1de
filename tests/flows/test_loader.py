"""load_flow / load_flow_file: every way a document can be wrong, and how precisely it is reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from noukai_server.flows import FlowIssue, FlowValidationError, load_flow, load_flow_file

ECHO = {"id": "check", "type": "llm", "model": "builtin:echo", "prompt": "{{ message }}"}


def flow(*steps: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"slug": "f", **top, "steps": list(steps)}


def fail(source: Any, **kwargs: Any) -> FlowValidationError:
    with pytest.raises(FlowValidationError) as caught:
        load_flow(source, **kwargs)
    assert str(caught.value) == caught.value.message
    return caught.value


def only(source: Any, **kwargs: Any) -> FlowIssue:
    error = fail(source, **kwargs)
    assert error.code == "INVALID_TREE"
    assert len(error.issues) == 1, error.issues
    return error.issues[0]


# --- documents that are not flows -------------------------------------------------------------


def test_bad_yaml_names_line_and_column() -> None:
    error = fail("slug: x\nsteps:\n  - id: a\n   type: llm\n")
    assert error.code == "INVALID_TREE"
    issue = error.issues[0]
    assert issue.message.startswith("invalid YAML at line 4, column 4: ")
    assert issue.line == 4
    assert issue.step_id is None
    assert issue.field is None


def test_yaml_reader_error() -> None:
    issue = only("slug: a\x00\n")
    assert issue.message.startswith("invalid YAML: unacceptable character #x0000")


def test_yaml_error_without_a_position(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(text: str) -> None:
        raise yaml.MarkedYAMLError(problem="something odd")

    monkeypatch.setattr("noukai_server.flows._source._load_yaml", broken)
    assert only("slug: a").message == "invalid YAML: something odd"


def test_yaml_duplicate_key_is_an_error() -> None:
    issue = only("slug: x\nsteps: []\nslug: y\n")
    assert issue.message == "invalid YAML at line 3, column 1: duplicate key 'slug'"


def test_yaml_merge_keys_are_not_duplicates() -> None:
    source = """
slug: m
defaults: &d {type: llm, model: 'builtin:echo'}
"""
    # Anchors and merges work; the unknown top-level 'defaults' key is still an error.
    issue = only(source + "steps:\n  - {<<: *d, id: a, prompt: hi, model: 'builtin:test'}\n")
    assert issue.field == "defaults"


def test_yaml_multiple_documents() -> None:
    issue = only("slug: a\n---\nslug: b\n")
    assert "expected a single document in the stream" in issue.message
    assert issue.line == 2


def test_yaml_dates_and_yaml11_booleans_stay_text() -> None:
    spec = load_flow(
        "slug: d\nsteps: [{id: a, type: template, template: {on: 2024-01-01, x: [yes, no, off, True]}}]"
    )
    assert spec.steps[0].template == {"on": "2024-01-01", "x": ["yes", "no", "off", True]}  # type: ignore[union-attr]


def test_yaml_values_json_cannot_hold_are_rejected() -> None:
    issue = only("slug: d\nsteps: [{id: a, type: template, template: {s: !!set {1, 2}}}]")
    assert issue.field == "template"
    assert "value at 's' is a set; only JSON values are allowed" in issue.message


@pytest.mark.parametrize(
    ("template", "expected"),
    [({1: "x"}, "key 1 is not a string"), (float("nan"), "number nan is not allowed in JSON")],
)
def test_template_values_must_be_json(template: Any, expected: str) -> None:
    issue = only(flow({"id": "a", "type": "template", "template": template}))
    assert issue.field == "template"
    assert expected in issue.message


def test_bad_json_with_json_filename() -> None:
    error = fail('{"slug": "x",\n  "steps": [}', filename="flow.json")
    assert error.issues[0].message == "invalid JSON at line 2, column 13: Expecting value"
    assert error.issues[0].line == 2
    assert error.message.startswith("flow.json: invalid JSON")


def test_json_duplicate_key() -> None:
    issue = only('{"slug": "x", "slug": "y", "steps": []}', filename="f.JSON")
    assert issue.message == "invalid JSON: duplicate key 'slug'"


def test_json_issues_carry_lines() -> None:
    issue = only('{"slug": "x",\n "steps": [\n  {"id": "a", "type": "nope"}]}', filename="f.json")
    assert issue.line == 3
    assert issue.field == "type"


def test_json_parses_as_yaml_without_filename() -> None:
    assert load_flow('{"slug": "j", "steps": [{"id": "a", "type": "template", "template": 1}]}').slug == "j"


@pytest.mark.parametrize(("source", "kind"), [("[1, 2]", "list"), ("just text", "str"), ("3", "int")])
def test_non_mapping_document(source: str, kind: str) -> None:
    issue = only(source)
    assert issue.message == f"a flow document must be a mapping, got {kind}"


@pytest.mark.parametrize("source", ["", "   \n# only a comment\n", b""])
def test_empty_document_is_no_steps(source: str | bytes) -> None:
    error = fail(source)
    assert error.code == "NO_STEPS"
    assert "flow document is empty" in error.message


def test_bytes_are_decoded_as_utf8() -> None:
    assert load_flow("slug: b\nsteps: [{id: a, type: template, template: 'é'}]".encode()).slug == "b"


def test_invalid_utf8() -> None:
    issue = only(b"slug: \xff\n")
    assert issue.message == "flow document is not valid UTF-8 (byte 6)"


def test_oversized_document() -> None:
    issue = only("#" * (1024 * 1024 + 1))
    assert "larger than 1048576 bytes" in issue.message


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    issue = only("\n".join(lines) + "\nslug: x\nsteps: []\n")
    assert "more than 100000 values" in issue.message


def nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


def test_deep_nesting_is_refused() -> None:
    assert load_flow(flow({"id": "a", "type": "template", "template": nested(20)})).slug == "f"
    issue = only(flow({"id": "a", "type": "template", "template": nested(70)}))
    assert "nests deeper than 64 levels" in issue.message


def test_yaml_nesting_beyond_the_parser() -> None:
    issue = only("[" * 5000 + "]" * 5000)
    assert issue.message in ("flow document nests too deeply", "flow document nests deeper than 64 levels")


def test_json_nesting_beyond_the_parser() -> None:
    issue = only("[" * 100_000 + "]" * 100_000, filename="deep.json")
    assert issue.message == "flow document nests deeper than 64 levels"


# --- steps: NO_STEPS --------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["slug: x\nsteps: []\n", "slug: x\nsteps:\n", "slug: x\n"])
def test_missing_or_empty_steps(source: str) -> None:
    error = fail(source)
    assert error.code == "NO_STEPS"
    assert error.issues[0].field == "steps"
    assert "the flow has no steps" in error.message


def test_no_steps_wins_over_other_problems_but_all_are_reported() -> None:
    error = fail({"slug": "Bad Slug", "steps": []})
    assert error.code == "NO_STEPS"
    assert [issue.field for issue in error.issues] == ["slug", "steps"]
    assert error.message.startswith("flow has 2 problems:\n- ")


def test_steps_must_be_a_list() -> None:
    issue = only({"slug": "x", "steps": "check"})
    assert issue.message == "field 'steps': must be a valid list, got a string"


# --- step shape -------------------------------------------------------------------------------


def test_unknown_step_type() -> None:
    issue = only("slug: g\nsteps:\n  - id: check\n    type: llmx\n    prompt: hi\n")
    assert issue.message == (
        "step 'check' (steps[0]), field 'type': unknown step type 'llmx'; "
        "expected one of: llm, agent, template, python, flow"
    )
    assert (issue.step_id, issue.step_index, issue.field, issue.line) == ("check", 0, "type", 4)
    assert str(issue) == f"line 4: {issue.message}"


def test_missing_step_type() -> None:
    issue = only(flow({"id": "a", "template": "x"}))
    assert issue.message == (
        "step 'a' (steps[0]), field 'type': missing step type; "
        "expected one of: llm, agent, template, python, flow"
    )


def test_step_that_is_not_a_mapping() -> None:
    issue = only(flow(ECHO, "check"))  # type: ignore[arg-type]
    assert issue.message == "steps[1]: a step must be a mapping, got a string"
    assert (issue.step_id, issue.step_index, issue.field) == (None, 1, None)


@pytest.mark.parametrize(
    ("step", "field"),
    [
        ({"id": "a", "type": "llm", "model": "builtin:echo"}, "prompt"),
        ({"id": "a", "type": "llm", "prompt": "x"}, "model"),
        ({"id": "a", "type": "agent", "prompt": "x"}, "model"),
        ({"id": "a", "type": "template"}, "template"),
        ({"id": "a", "type": "python"}, "function"),
        ({"type": "template", "template": "x"}, "id"),
    ],
)
def test_missing_required_field(step: dict[str, Any], field: str) -> None:
    issue = only(flow(step))
    assert issue.field == field
    assert issue.step_index == 0
    assert issue.message.endswith(f"field '{field}': required field is missing")


def test_missing_slug() -> None:
    issue = only({"steps": [ECHO]})
    assert issue.message == "field 'slug': required field is missing"
    assert (issue.step_id, issue.step_index) == (None, None)


def test_extra_unknown_field_in_step() -> None:
    source = "slug: g\nsteps:\n  - id: check\n    type: llm\n    model: builtin:echo\n    prompt: hi\n"
    issue = only(source + "    promt: x\n")
    assert issue.message.startswith(
        "step 'check' (steps[0]), field 'promt': unknown field; did you mean 'prompt'? allowed: id, name,"
    )
    assert issue.line == 7


def test_extra_unknown_field_at_top() -> None:
    issue = only({**flow(ECHO), "stpes": []})
    assert issue.message.startswith(
        "field 'stpes': unknown field; did you mean 'steps'? allowed: slug, name,"
    )


def test_extra_field_of_a_step_with_an_unknown_type_is_one_issue_only() -> None:
    error = fail(flow({"id": "a", "type": "nope", "junk": 1}))
    assert [issue.field for issue in error.issues] == ["type"]


def test_duplicate_ids_name_both_indexes() -> None:
    step = {"type": "template", "template": "x"}
    issue = only(flow({"id": "a", **step}, {"id": "b", **step}, {"id": "a", **step}))
    assert issue.message == "step 'a' (steps[2]), field 'id': duplicate step id 'a'; steps[0] already uses it"
    assert (issue.step_index, issue.field) == (2, "id")


@pytest.mark.parametrize(
    ("document", "field", "expected"),
    [
        (flow(ECHO, slug="Bad Slug"), "slug", "invalid value 'Bad Slug': a slug is 1-64 lowercase letters"),
        (flow(ECHO, slug="x" * 65), "slug", "a slug is"),
        (flow(ECHO, slug="-x"), "slug", "a slug is"),
        (flow({**ECHO, "id": "1st"}), "id", "invalid value '1st': a step id is 1-64 letters"),
        (flow({**ECHO, "id": "a b"}), "id", "a step id is"),
        (flow({**ECHO, "model": "gpt-4o"}), "model", "invalid value 'gpt-4o': a model is 'provider:model'"),
        (flow({**ECHO, "model": "OpenAI:gpt"}), "model", "a model is"),
        (flow({**ECHO, "model": "openai:gpt 4"}), "model", "a model is"),
        (flow({"id": "p", "type": "python", "function": "os.system()"}), "function", "a function name is"),
    ],
)
def test_bad_patterns(document: dict[str, Any], field: str, expected: str) -> None:
    issue = only(document)
    assert issue.field == field
    assert expected in issue.message


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        ({"temperature": 2.5}, "temperature", "must be less than or equal to 2 (got 2.5)"),
        ({"temperature": -1}, "temperature", "must be greater than or equal to 0 (got -1)"),
        ({"max_tokens": 0}, "max_tokens", "must be greater than 0 (got 0)"),
        ({"max_tokens": "5"}, "max_tokens", "must be a valid integer, got a string"),
        ({"output": "xml"}, "output", "must be 'text' or 'json' (got 'xml')"),
        ({"timeout_seconds": 0}, "timeout_seconds", "must be greater than 0 (got 0)"),
        ({"when": 1}, "when", "must be a template string or true/false, got int"),
        ({"when": [1]}, "when", "must be a template string or true/false, got list"),
        ({"params": []}, "params", "must be a valid dictionary, got a list"),
        ({"name": 3}, "name", "must be a valid string, got int"),
    ],
)
def test_bad_field_values(change: dict[str, Any], field: str, expected: str) -> None:
    issue = only(flow({**ECHO, **change}))
    assert issue.field == field
    assert issue.message == f"step 'check' (steps[0]), field '{field}': {expected}"


def test_agent_limits() -> None:
    agent = {"id": "a", "type": "agent", "model": "builtin:test", "prompt": "x"}
    assert only(flow({**agent, "max_iterations": 0})).field == "max_iterations"
    assert only(flow({**agent, "max_iterations": 101})).field == "max_iterations"
    assert only(flow({**agent, "tools": "search"})).field == "tools"


def test_trace_capture_mode_must_be_known() -> None:
    issue = only(flow(ECHO, trace_capture_mode="everything"))
    assert issue.field == "trace_capture_mode"
    assert "'off', 'metadata_only', 'redacted' or 'full'" in issue.message


def test_nested_field_paths() -> None:
    issue = only(flow({"id": "p", "type": "python", "function": "f", "args": {"x": [1, {"y": {1}}]}}))
    assert issue.field == "args.x"
    assert "value at '[1].y' is a set" in issue.message


def test_all_problems_are_collected_in_document_order() -> None:
    source = """slug: Bad
steps:
  - id: a
    type: llmx
  - id: a
    type: template
    template: "{{ mesage }}"
  - id: c
    type: llm
    model: builtin:echo
    prompt: "{{ steps.d.output }}"
    temperature: 9
"""
    error = fail(source, filename="bad.yaml")
    assert error.code == "INVALID_TREE"
    located = [(issue.step_index, issue.field, issue.line) for issue in error.issues]
    assert located == [
        (None, "slug", 1),
        (0, "type", 4),
        (1, "id", 5),
        (1, "template", 7),
        (2, "temperature", 12),
    ]
    assert error.message.startswith(
        "bad.yaml: flow has 5 problems:\n- line 1: field 'slug': invalid value 'Bad'"
    )


def test_templates_of_valid_steps_are_checked_even_when_the_flow_has_other_errors() -> None:
    error = fail({"slug": "Bad Slug", "steps": [{**ECHO, "prompt": "{{ mesage }}"}]})
    assert [issue.field for issue in error.issues] == ["slug", "prompt"]


# --- registries -------------------------------------------------------------------------------


def test_unknown_function_with_known_functions() -> None:
    step = {"id": "score", "type": "python", "function": "grading.scor"}
    issue = only(flow(step), known_functions=["grading.score", "other"])
    assert issue.message == (
        "step 'score' (steps[0]), field 'function': unknown function 'grading.scor' "
        "(did you mean 'grading.score'?); registered functions: grading.score, other"
    )
    assert load_flow(flow({**step, "function": "other"}), known_functions={"other"}).slug == "f"
    assert load_flow(flow(step)).slug == "f"  # not checked without a registry


def test_unknown_function_with_empty_registry() -> None:
    issue = only(flow({"id": "p", "type": "python", "function": "f"}), known_functions=[])
    assert issue.message.endswith("unknown function 'f'; no functions are registered")


def test_unknown_tool_with_known_tools() -> None:
    step = {"id": "act", "type": "agent", "model": "builtin:test", "prompt": "x", "tools": ["search", "nope"]}
    issue = only(flow(step), known_tools=["search"])
    assert (issue.field, issue.step_id) == ("tools[1]", "act")
    assert "unknown tool 'nope'; registered tools: search" in issue.message
    assert load_flow(flow(step), known_tools=["search", "nope"]).slug == "f"


def test_long_registries_are_abbreviated() -> None:
    names = [f"tool{i:02}" for i in range(30)]
    step = {"id": "act", "type": "agent", "model": "builtin:test", "prompt": "x", "tools": ["zzz"]}
    assert "(30 in all)" in only(flow(step), known_tools=names).message


# --- files ------------------------------------------------------------------------------------


def test_load_flow_file(tmp_path: Path) -> None:
    path = tmp_path / "echo.yaml"
    path.write_text(
        "slug: echo\nsteps: [{id: a, type: llm, model: 'builtin:echo', prompt: '{{ message }}'}]\n"
    )
    assert load_flow_file(path).slug == "echo"
    assert load_flow_file(str(path)).slug == "echo"


def test_load_flow_file_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("slug: x\nsteps: []\n")
    with pytest.raises(FlowValidationError) as caught:
        load_flow_file(path)
    assert caught.value.message.startswith(f"{path}: line 2: field 'steps'")
    assert caught.value.filename == str(path)


def test_load_flow_file_json_by_extension(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"slug": "x", }')
    with pytest.raises(FlowValidationError) as caught:
        load_flow_file(path, filename="shown.json")
    assert caught.value.message.startswith("shown.json: invalid JSON at line 1")


def test_load_flow_file_missing(tmp_path: Path) -> None:
    with pytest.raises(FlowValidationError) as caught:
        load_flow_file(tmp_path / "nope.yaml")
    assert caught.value.code == "INVALID_TREE"
    assert "cannot read flow file: No such file or directory" in caught.value.message
