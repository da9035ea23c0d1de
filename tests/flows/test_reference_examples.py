"""Every ```yaml example of docs/flows.md and docs/providers.md is a flow the server accepts.

Each block is loaded the way a push over HTTP loads it: the default functions (with their
signatures) and tools, and the built-in providers. A block whose first line is
`# invalid: <why>` documents a mistake, and must be refused.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from noukai_server.engine import (
    Completed,
    FlowEngine,
    RunInputs,
    RunState,
    default_functions,
    default_tools,
)
from noukai_server.flows import FlowSpec, FlowValidationError, TemplateEngine, bind_parameters, load_flow
from noukai_server.providers import ModelRegistry, ProviderSettings

DOCS = Path(__file__).resolve().parents[2] / "docs"
PROVIDERS = ("builtin", "openai", "anthropic")
FUNCTIONS = default_functions()
TOOLS = default_tools()
_BLOCK = re.compile(r"^```yaml[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_INVALID = re.compile(r"^# invalid: \S")


def _blocks(name: str) -> list[tuple[str, str]]:
    text = (DOCS / name).read_text(encoding="utf-8")
    return [(f"{name}:{text.count(chr(10), 0, m.start()) + 1}", m.group(1)) for m in _BLOCK.finditer(text)]


BLOCKS = _blocks("flows.md") + _blocks("providers.md")
VALID = [(where, source) for where, source in BLOCKS if not _INVALID.match(source)]
INVALID = [(where, source) for where, source in BLOCKS if _INVALID.match(source)]


def _load(source: str, where: str) -> FlowSpec:
    return load_flow(
        source,
        filename=where,
        known_functions=set(FUNCTIONS.names()),
        known_tools=set(TOOLS.names()),
        known_providers=PROVIDERS,
        function_signatures=FUNCTIONS.signatures(),
    )


def test_the_reference_has_examples_of_both_kinds() -> None:
    assert len(VALID) >= 15
    assert len(INVALID) >= 5


@pytest.mark.parametrize(("where", "source"), VALID, ids=[where for where, _ in VALID])
def test_example_is_a_valid_flow(where: str, source: str) -> None:
    _load(source, where)


@pytest.mark.parametrize(("where", "source"), INVALID, ids=[where for where, _ in INVALID])
def test_invalid_example_is_refused(where: str, source: str) -> None:
    with pytest.raises(FlowValidationError) as refused:
        _load(source, where)
    assert refused.value.issues


def test_every_step_type_has_an_example() -> None:
    types = set()
    for _, source in VALID:
        types.update(re.findall(r"^\s+type: (\w+)$", source, re.MULTILINE))
    assert {"llm", "template", "python", "agent", "flow"} <= types


def test_every_builtin_function_and_tool_is_documented_and_used() -> None:
    reference = (DOCS / "flows.md").read_text(encoding="utf-8")
    examples = "\n".join(source for _, source in VALID)
    for name in [*FUNCTIONS.names(), *TOOLS.names()]:
        assert f"`{name}`" in reference, name
        assert name in examples, name


# A value of each input type, for the required inputs an example declares without a default.
_SAMPLES: Mapping[str, Any] = {
    "string": "x",
    "integer": 1,
    "number": 1.5,
    "boolean": True,
    "array": [],
    "object": {},
}
OFFLINE = [
    (where, source)
    for where, source in VALID
    if not re.search(r"^\s+model: (?!builtin:)", source, re.MULTILINE)
    # A flow that runs other flows needs them stored on a server (tests/server/test_subflows.py).
    and not re.search(r"^\s+type: flow$|flow:[a-z]", source, re.MULTILINE)
]


class _Events:
    def __init__(self) -> None:
        self.types: list[str] = []

    async def emit(self, event_type: str, payload: Mapping[str, Any]) -> None:
        self.types.append(event_type)

    async def checkpoint(self, next_step_index: int, state: RunState) -> None:
        return None


async def _no_wait(seconds: float) -> None:
    return None


@pytest.mark.parametrize(("where", "source"), OFFLINE, ids=[where for where, _ in OFFLINE])
def test_offline_example_runs_to_completion(where: str, source: str) -> None:
    """The examples that need no key run on the real engine, with only required inputs sent."""
    spec = _load(source, where)
    sent = {name: _SAMPLES[i.type] for name, i in spec.inputs.items() if i.is_required}
    inputs = RunInputs(message="count 3 words, 12 and 7", parameters=bind_parameters(spec, sent))
    engine = FlowEngine(
        ModelRegistry(ProviderSettings()),
        FUNCTIONS,
        TemplateEngine(),
        tools=TOOLS,
        sleep=_no_wait,
        jitter=lambda: 0.5,
    )
    events = _Events()
    run = {"id": "r", "flow": spec.slug, "version": 0}
    outcome = asyncio.run(engine.run(spec, inputs, RunState(), events, run=run))
    assert isinstance(outcome, Completed), outcome
    assert "step_error" not in events.types
