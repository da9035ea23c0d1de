"""Checks run when a flow is pushed: a model's provider must be one the server has, and a python
step's `args` must fit its function's signature (push and run name the function the same way)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from noukai_server.engine import default_functions
from noukai_server.engine.functions import FunctionRegistry
from noukai_server.flows import FlowIssue, FlowValidationError
from noukai_server.providers import ModelRegistry, NamedProvider, ProviderSettings
from noukai_server.runtime.flow_admin import parse_flow_document

FUNCTIONS = default_functions()
PROVIDERS = ["builtin", "openai", "anthropic", "ollama"]
SLEEP = "time.sleep(seconds: float, value: Any = None)"


def push(*steps: dict[str, Any], functions: FunctionRegistry = FUNCTIONS) -> list[FlowIssue]:
    """The issues of pushing a flow with `steps`; [] when it is accepted."""
    try:
        parse_flow_document(
            {"slug": "c", "steps": list(steps)},
            known_functions=set(functions.names()),
            known_providers=PROVIDERS,
            function_signatures=functions.signatures(),
        )
    except FlowValidationError as exc:
        code, issues = exc.code, exc.issues
    else:
        return []
    assert code == "INVALID_TREE"
    return issues


def llm(model: str) -> dict[str, Any]:
    return {"id": "ask", "type": "llm", "model": model, "prompt": "hi"}


def sleep(**args: Any) -> dict[str, Any]:
    return {"id": "nap", "type": "python", "function": "time.sleep", "args": args}


@pytest.mark.parametrize("step_type", ["llm", "agent"])
def test_an_unknown_provider_names_the_step_field_provider_and_the_known_ones(step_type: str) -> None:
    [issue] = push({**llm("mistral:large"), "type": step_type})
    assert (issue.step_id, issue.step_index, issue.field) == ("ask", 0, "model")
    assert "unknown provider 'mistral'" in issue.message
    assert "builtin, openai, anthropic, ollama" in issue.message


def test_a_near_miss_provider_gets_a_suggestion() -> None:
    [issue] = push(llm("opneai:gpt-4o"))
    assert "did you mean 'openai'?" in issue.message


@pytest.mark.parametrize("model", ["openai:a-model-of-next-year", "ollama:llama3:8b", "anthropic:x"])
def test_models_of_known_providers_are_not_checked_against_a_list(model: str) -> None:
    assert push(llm(model)) == []


def test_model_providers_lists_the_built_in_then_the_named_ones() -> None:
    settings = ProviderSettings(named={"zeta": NamedProvider("openai"), "alpha": NamedProvider("anthropic")})
    assert ModelRegistry(settings).providers() == ["builtin", "openai", "anthropic", "alpha", "zeta"]


def test_an_unknown_argument_names_the_step_function_and_signature() -> None:
    [issue] = push(sleep(seconds=1, secs=2))
    assert (issue.step_id, issue.field) == ("nap", "args")
    assert "time.sleep takes no argument 'secs'" in issue.message
    assert f"expected {SLEEP}" in issue.message


def test_a_missing_required_argument_is_named() -> None:
    issues = push(sleep(secs=1))
    messages = [issue.message for issue in issues]
    assert any("takes no argument 'secs' (did you mean 'seconds'?)" in m for m in messages), messages
    assert any("needs argument 'seconds'" in m and SLEEP in m for m in messages), messages


def test_templated_and_complete_arguments_pass() -> None:
    assert push(sleep(seconds="{{ parameters.n }}")) == []
    assert push({"id": "j", "type": "python", "function": "text.join", "args": {"items": [1]}}) == []


def test_a_function_taking_kwargs_accepts_any_name_but_still_needs_its_required_ones() -> None:
    registry = FunctionRegistry()

    def tag(name: str, **extra: Any) -> str:
        return name

    registry.register("my.tag", tag)
    step = {"id": "t", "type": "python", "function": "my.tag", "args": {"name": "x", "anything": 1}}
    assert push(step, functions=registry) == []
    [issue] = push({**step, "args": {"anything": 1}}, functions=registry)
    assert "my.tag needs argument 'name'" in issue.message
    assert "expected my.tag(name: str, **extra: Any)" in issue.message


def test_without_signatures_or_providers_nothing_more_is_checked() -> None:
    spec = parse_flow_document({"slug": "c", "steps": [llm("mistral:large"), sleep(secs=1)]})
    assert spec.slug == "c"


def test_describe_call_shows_keyword_only_and_positional_markers() -> None:
    from noukai_server.flows._checks import describe_call

    def f(a: int, *, b: str = "x") -> None: ...

    assert describe_call("f", inspect.signature(f)) == "f(a: int, *, b: str = 'x')"


@pytest.mark.anyio
async def test_a_bad_call_at_run_names_the_public_function_and_its_signature() -> None:
    with pytest.raises(TypeError) as caught:
        await FUNCTIONS.call("time.sleep", {"secs": 1})
    message = str(caught.value)
    assert "_sleep" not in message
    assert "takes no argument 'secs'" in message and f"expected {SLEEP}" in message


@pytest.mark.anyio
async def test_a_good_call_still_runs() -> None:
    assert await FUNCTIONS.call("time.sleep", {"seconds": 0, "value": 3}) == 3
