"""Template lookups of data find only data: a key named after a dict method is a key or is missing.

`parameters.keys`, `parameters['items']`, `steps.x.output.update` ... never resolve to a method of the
container, with attribute or item syntax, at any depth; `default` and `is defined` treat them as the
missing keys they are. The sandbox still refuses dunders, private names and mutating methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from noukai_server.flows import TemplateEngine, TemplateError, build_context, load_flow_file

ENGINE = TemplateEngine()
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "flows"
# Every public method of dict (read-only and mutating): none of them may answer a data lookup.
DICT_METHODS = sorted(name for name in dir(dict) if not name.startswith("_"))


def context(parameters: dict[str, Any] | None = None, output: Any = None) -> dict[str, Any]:
    return build_context(
        message="hi",
        messages=None,
        parameters=parameters if parameters is not None else {},
        attachments=None,
        outputs={"prev": output if output is not None else {"nested": {"deep": {}}}},
        run={"id": "run-1"},
    )


def render(source: str, ctx: dict[str, Any] | None = None) -> Any:
    return ENGINE.render_value(source, ctx if ctx is not None else context())


def failure(source: str, ctx: dict[str, Any] | None = None) -> str:
    with pytest.raises(TemplateError) as caught:
        render(source, ctx)
    return caught.value.message


# Owners of data a template can read, each a mapping without any key named after a dict method.
OWNERS = [
    "parameters",
    "steps.prev.output",
    "steps.prev.output.nested",
    "steps.prev.output.nested.deep",
    "run",
]


# --- the reported cases -----------------------------------------------------------------------


def test_when_on_a_missing_keys_parameter_is_an_error_not_a_truthy_method() -> None:
    # Was: the bound `dict.keys` method, so `when` ran the step.
    assert failure("{{ parameters.keys }}") == "'parameters' has no attribute 'keys'"
    assert ENGINE.is_truthy(render("{{ parameters.keys | default(false) }}")) is False


def test_foreach_default_applies_to_a_missing_items_parameter() -> None:
    # Was: "expected a list, got builtin_function_or_method" once the step looped over the method.
    assert render("{{ parameters['items'] | default([]) }}") == []
    assert render("{{ parameters.items | default([]) }}") == []


def test_a_missing_update_parameter_is_missing_not_forbidden() -> None:
    # Was: "access to 'update' is not allowed".
    assert failure("{{ parameters.update }}") == "'parameters' has no attribute 'update'"
    assert render("{{ parameters.update | default('none') }}") == "none"
    assert render("{{ parameters['update'] | default('none') }}") == "none"


def test_shout_all_fixture_reads_its_items_parameter() -> None:
    spec = load_flow_file(FIXTURES / "shout-all.yaml")
    foreach = spec.steps[0].foreach
    assert foreach == "{{ parameters.items }}"
    assert render(foreach, context({"items": ["a", "b"]})) == ["a", "b"]
    # Was: the `dict.items` method, which the foreach step then refused as "not a list".
    assert failure(foreach) == "'parameters' has no attribute 'items'"


# --- every method name, every owner, both syntaxes --------------------------------------------


@pytest.mark.parametrize("owner", OWNERS)
@pytest.mark.parametrize("name", DICT_METHODS)
def test_a_missing_key_named_after_a_method_is_undefined(owner: str, name: str) -> None:
    for lookup in (f"{owner}.{name}", f"{owner}[{name!r}]"):
        assert render(f"{{{{ {lookup} is defined }}}}") is False, lookup
        assert render(f"{{{{ {lookup} | default('fallback') }}}}") == "fallback", lookup
        message = failure(f"{{{{ {lookup} }}}}")
        assert message.endswith(f"has no attribute {name!r}"), (lookup, message)


@pytest.mark.parametrize("name", DICT_METHODS)
def test_a_key_named_after_a_method_is_the_data(name: str) -> None:
    value = {"v": name}
    ctx = context({name: value}, {"nested": {name: [name]}})
    assert render(f"{{{{ parameters.{name} }}}}", ctx) == value
    assert render(f"{{{{ parameters[{name!r}] }}}}", ctx) == value
    assert render(f"{{{{ parameters.{name}.v }}}}", ctx) == name
    assert render(f"{{{{ steps.prev.output.nested.{name} }}}}", ctx) == [name]
    assert render(f"{{{{ steps.prev.output['nested'][{name!r}] }}}}", ctx) == [name]


def test_a_falsy_key_named_after_a_method_stays_falsy() -> None:
    ctx = context({"keys": False, "items": [], "values": None})
    assert ENGINE.is_truthy(render("{{ parameters.keys }}", ctx)) is False
    assert render("{{ parameters.items | default(['x']) }}", ctx) == []
    assert render("{{ parameters.values }}", ctx) is None


def test_nested_dicts_inside_lists_and_loop_values() -> None:
    ctx = {
        **context({"rows": [{"name": "a"}, {"copy": 2}]}),
        "item": {"a": 1},
        "loop": {"index": 0, "length": 1},
    }
    assert render("{{ parameters.rows | map(attribute='copy', default=0) | list }}", ctx) == [0, 2]
    assert render("{{ parameters.rows[0].copy | default('no') }}", ctx) == "no"
    assert render("{{ item.get | default('none') }}", ctx) == "none"
    assert render("{{ loop.index }}/{{ loop.length }}", ctx) == "0/1"


# --- the sandbox is unchanged ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ parameters.__class__ }}", "access to '__class__' is not allowed"),
        ("{{ parameters.__class__.__mro__ }}", "access to '__class__' is not allowed"),
        ("{{ parameters._private }}", "access to '_private' is not allowed"),
        ("{{ parameters.__init__() }}", "access to '__init__' is not allowed"),
        ("{{ parameters.update({'a': 1}) }}", "access to 'update' is not allowed"),
        ("{{ parameters.pop('a') }}", "access to 'pop' is not allowed"),
        ("{{ parameters.setdefault('a', 1) }}", "access to 'setdefault' is not allowed"),
        ("{{ steps.prev.output.clear() }}", "access to 'clear' is not allowed"),
        ("{{ parameters['__class__'] }}", "'parameters' has no attribute '__class__'"),
        ("{{ parameters['keys']() }}", "'parameters' has no attribute 'keys'"),
        ("{{ parameters.nope() }}", "'parameters' has no attribute 'nope'"),
    ],
)
def test_sandbox_still_refuses_internals_and_mutation(source: str, expected: str) -> None:
    assert failure(source, context({"a": 1})) == expected


def test_read_only_mapping_methods_can_still_be_called() -> None:
    ctx = context({"a": 1}, {"nested": {"k": "v"}})
    assert render("{{ parameters.items() | list }}", ctx) == [("a", 1)]
    assert render("{{ parameters.get('a') }}", ctx) == 1
    assert render("{{ parameters.get('b', 2) }}", ctx) == 2
    assert render("{{ steps.prev.output.nested.keys() | list }}", ctx) == ["k"]
    assert render("{{ parameters | items | list }}", ctx) == [("a", 1)]
