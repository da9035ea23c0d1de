"""The `flow` step and agents' `flow:` tools in the flow language: what loads, what is refused and
how it is said, the canonical document, and the references the cycle check and the engine read."""

from __future__ import annotations

from typing import Any

import pytest

from noukai_server.flows import (
    FlowAddress,
    FlowReference,
    FlowStep,
    FlowValidationError,
    flow_references,
    flow_tool_address,
    load_flow,
)


def flow(*steps: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"slug": "parent", **top, "steps": list(steps)}


def issue(document: dict[str, Any], **kwargs: Any) -> str:
    with pytest.raises(FlowValidationError) as caught:
        load_flow(document, **kwargs)
    assert caught.value.code == "INVALID_TREE"
    assert len(caught.value.issues) == 1, caught.value.issues
    return caught.value.issues[0].message


def test_a_flow_step_loads_with_templated_inputs_and_message() -> None:
    spec = load_flow(
        flow(
            {"id": "first", "type": "template", "template": "x"},
            {
                "id": "call",
                "type": "flow",
                "flow": "acme/main/summarise",
                "version": 3,
                "inputs": {"text": "{{ steps.first.output }}", "limits": {"words": 20}},
                "message": "about {{ message }}",
            },
        )
    )
    step = spec.steps[1]
    assert isinstance(step, FlowStep)
    assert (step.flow, step.version, step.message) == ("acme/main/summarise", 3, "about {{ message }}")
    assert step.inputs == {"text": "{{ steps.first.output }}", "limits": {"words": 20}}
    assert spec.uses_message()


def test_the_canonical_document_keeps_what_the_author_wrote_and_loads_again() -> None:
    source = flow({"id": "call", "type": "flow", "flow": "acme/main/child", "inputs": {"a": 1}})
    document = load_flow(source).to_document()
    assert document["steps"] == [
        {"id": "call", "type": "flow", "flow": "acme/main/child", "inputs": {"a": 1}}
    ]
    assert load_flow(document).to_document() == document


@pytest.mark.parametrize(
    ("step", "words"),
    [
        ({"flow": "child"}, "a flow address is 'org/project/slug'"),
        ({"flow": "acme/main/Child"}, "a flow address is 'org/project/slug'"),
        ({"flow": "acme/main/child", "version": -1}, "greater than or equal to 0"),
        ({"flow": "acme/main/child", "version": "2"}, "field 'version'"),
        ({"flow": "acme/main/child", "inputs": {"x": "{{ steps.nope.output }}"}}, "steps.nope names no step"),
        ({"flow": "acme/main/child", "message": "{{ oops( }}"}, "field 'message'"),
        ({"flow": "acme/main/child", "prompt": "hi"}, "field 'prompt'"),
        ({}, "field 'flow'"),
    ],
)
def test_a_wrong_flow_step_is_refused_with_its_field_named(step: dict[str, Any], words: str) -> None:
    message = issue(flow({"id": "call", "type": "flow", **step}))
    assert words in message and "step 'call'" in message


def test_a_flow_tool_is_accepted_beside_known_tools_and_a_malformed_one_refused() -> None:
    agent = {"id": "boss", "type": "agent", "model": "builtin:test", "prompt": "x"}
    ok = load_flow(flow({**agent, "tools": ["add", "flow:acme/main/child"]}), known_tools=["add"])
    assert ok.steps[0].type == "agent"
    message = issue(flow({**agent, "tools": ["flow:child"]}), known_tools=["add"])
    assert "'child' is not a flow address" in message and "flow:org/project/slug" in message


def test_the_references_of_a_flow_are_its_flow_steps_and_flow_tools_in_order() -> None:
    spec = load_flow(
        flow(
            {"id": "one", "type": "flow", "flow": "acme/main/a", "version": 2},
            {"id": "boss", "type": "agent", "model": "builtin:test", "prompt": "x",
             "tools": ["add", "flow:acme/side/b", "mcp:files"]},
            {"id": "two", "type": "flow", "flow": "other/main/c"},
        )
    )  # fmt: skip
    assert flow_references(spec) == [
        FlowReference(FlowAddress("acme", "main", "a"), 2, "one"),
        FlowReference(FlowAddress("acme", "side", "b"), None, "boss"),
        FlowReference(FlowAddress("other", "main", "c"), None, "two"),
    ]


def test_flow_addresses_parse_and_print() -> None:
    address = FlowAddress.parse("acme/main/summarise")
    assert (address.org, address.project, address.slug) == ("acme", "main", "summarise")
    assert str(address) == "acme/main/summarise"
    assert flow_tool_address("flow:acme/main/summarise") == address
    assert flow_tool_address("add") is None
    for bad in ("acme/main", "acme/main/x/y", "/main/x", "acme/main/UPPER", "flow:acme/main/x"):
        with pytest.raises(ValueError, match="is not a flow address"):
            FlowAddress.parse(bad)
