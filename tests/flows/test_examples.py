"""Every example flow loads; the three documented ones have the shape the docs promise."""

from __future__ import annotations

from pathlib import Path

import pytest

from noukai_server.flows import (
    LlmStep,
    TemplateEngine,
    TemplateStep,
    build_context,
    load_flow,
    load_flow_file,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"
FILES = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".yaml", ".yml", ".json"))


def test_examples_exist() -> None:
    assert {"echo.yaml", "grade.yaml", "foreach.yaml"} <= {p.name for p in FILES}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_loads_and_round_trips(path: Path) -> None:
    spec = load_flow_file(path)
    assert load_flow(spec.to_document()) == spec


def test_echo() -> None:
    spec = load_flow_file(EXAMPLES / "echo.yaml")
    (step,) = spec.steps
    assert spec.slug == "echo"
    assert spec.uses_message()
    assert isinstance(step, LlmStep)
    assert (step.model, step.prompt) == ("builtin:echo", "{{ message }}")


def test_grade() -> None:
    spec = load_flow_file(EXAMPLES / "grade.yaml")
    check, explain, result = spec.steps
    assert spec.slug == "grade"
    assert isinstance(check, LlmStep)
    assert check.model == "builtin:echo"
    assert isinstance(explain, TemplateStep)
    assert isinstance(explain.when, str)
    assert "parameters.verbose" in explain.when
    assert isinstance(result, TemplateStep)
    assert isinstance(result.template, dict)


def test_foreach_renders_per_item() -> None:
    spec = load_flow_file(EXAMPLES / "foreach.yaml")
    (step,) = spec.steps
    assert spec.slug == "shout-all"
    assert not spec.uses_message()
    assert isinstance(step, TemplateStep)
    assert step.foreach is not None
    engine = TemplateEngine()
    ctx = build_context(
        message=None, messages=[], parameters={"items": ["a", "b"]}, attachments=[], outputs={}, run={}
    )
    items = engine.render_value(step.foreach, ctx)
    rendered = [
        engine.render_structure(
            step.template, {**ctx, "item": item, "loop": {"index": i, "length": len(items)}}
        )
        for i, item in enumerate(items)
    ]
    assert rendered == [{"position": 0, "of": 2, "text": "A!"}, {"position": 1, "of": 2, "text": "B!"}]
