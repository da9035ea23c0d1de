"""The engine's side of loop safety: every template of a step (`when`, `foreach`, prompts, args,
templates) renders with the deadline and the caps, failing the step with TEMPLATE_ERROR; the
builtin functions are bounded (FUNCTION_ERROR with a clear message)."""

from __future__ import annotations

from typing import Any

import pytest

from noukai_server.engine import Failed, FlowEngine, default_functions
from noukai_server.engine.functions import MAX_TEXT_CHARS
from noukai_server.flows import TemplateEngine
from noukai_server.providers import ModelRegistry, ProviderSettings
from tests.engine.conftest import Harness

pytestmark = pytest.mark.anyio
RUNAWAY = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"


@pytest.fixture
def quick_deadline() -> Harness:
    async def sleep(seconds: float) -> None:
        return None

    templates = TemplateEngine(template_seconds=0.2)
    engine = FlowEngine(ModelRegistry(ProviderSettings()), default_functions(), templates, sleep=sleep)
    return Harness(engine, [])


def flow(**step: Any) -> dict[str, Any]:
    return {"slug": "f", "steps": [{"id": "s", **step}]}


@pytest.mark.parametrize(
    ("step", "field"),
    [
        ({"type": "template", "template": RUNAWAY}, "template"),
        ({"type": "template", "template": {"deep": [RUNAWAY]}}, "template"),
        ({"type": "template", "template": "x", "when": RUNAWAY}, "when"),
        (
            {"type": "template", "template": "x", "foreach": RUNAWAY},
            "foreach",
        ),
        ({"type": "llm", "model": "builtin:echo", "prompt": RUNAWAY}, "prompt"),
        ({"type": "llm", "model": "builtin:echo", "prompt": "hi", "system": RUNAWAY}, "system"),
        ({"type": "agent", "model": "builtin:echo", "prompt": RUNAWAY}, "prompt"),
        ({"type": "python", "function": "text.upper", "args": {"text": RUNAWAY}}, "args"),
    ],
)
async def test_a_runaway_template_in_any_field_fails_its_step(
    quick_deadline: Harness, step: dict[str, Any], field: str
) -> None:
    outcome, _, _ = await quick_deadline.run(flow(**step))
    assert isinstance(outcome, Failed), outcome
    assert outcome.code == "TEMPLATE_ERROR"
    assert f"field '{field}" in outcome.message and "template ran past its 0.2 s limit" in outcome.message


async def test_a_cap_fails_the_step_with_template_error(harness: Harness) -> None:
    outcome, _, _ = await harness.run(flow(type="template", template="{{ 'a' | center(10 ** 8) }}"))
    assert isinstance(outcome, Failed) and outcome.code == "TEMPLATE_ERROR"
    assert "'center' would build a value longer than 1048576 characters" in outcome.message


@pytest.mark.parametrize(
    ("function", "args", "message"),
    [
        ("text.findall", {"text": "a" * 40 + "!", "pattern": "(a|aa)+$"}, "ran past its 1 s limit"),
        ("text.findall", {"text": "abc", "pattern": "(unclosed"}, "invalid pattern"),
        ("text.findall", {"text": "abc", "pattern": "a" * 10_001}, "pattern is longer than 10000"),
        ("json.parse", {"text": "[" * 100_000 + "]" * 100_000}, "the JSON document nests too deeply"),
        ("text.upper", {"text": 5}, "text must be a string, got int"),
        ("text.join", {"items": ["x" * 1000] * 1100}, f"longer than {MAX_TEXT_CHARS} characters"),
    ],
)
async def test_builtins_are_bounded(
    harness: Harness, function: str, args: dict[str, Any], message: str
) -> None:
    outcome, _, _ = await harness.run(flow(type="python", function=function, args=args))
    assert isinstance(outcome, Failed), outcome
    assert outcome.code == "FUNCTION_ERROR"
    assert message in outcome.message and function in outcome.message


async def test_builtins_refuse_text_past_their_cap() -> None:
    functions = default_functions()
    for name, args in [
        ("text.word_count", {"text": "x" * (MAX_TEXT_CHARS + 1)}),
        ("text.split_words", {"text": "x" * (MAX_TEXT_CHARS + 1)}),
        ("json.parse", {"text": " " * (MAX_TEXT_CHARS + 1)}),
        ("text.findall", {"text": "x" * (MAX_TEXT_CHARS + 1), "pattern": "x"}),
    ]:
        with pytest.raises(ValueError, match=f"text is longer than {MAX_TEXT_CHARS} characters"):
            await functions.call(name, args)


async def test_the_issues_regex_is_answered_at_once() -> None:
    found = await default_functions().call("text.findall", {"text": "a" * 28 + "!", "pattern": "(a+)+$"})
    assert found == []
    assert await default_functions().call("text.findall", {"text": "a1b22", "pattern": r"\d+"}) == ["1", "22"]
