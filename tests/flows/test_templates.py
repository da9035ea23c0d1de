"""TemplateEngine: strictness, the sandbox, native values, JSON text, truthiness, limits and the cache."""

from __future__ import annotations

import datetime
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from noukai_server.flows import TemplateEngine, TemplateError, build_context

ENGINE = TemplateEngine()


def context(**parameters: Any) -> dict[str, Any]:
    return build_context(
        message="hello",
        messages=[{"role": "user", "content": "hello"}],
        parameters=parameters,
        attachments=[],
        outputs={"check": {"score": 3, "tags": ["a"]}},
        run={"id": "run-1"},
    )


def error(source: str, ctx: dict[str, Any] | None = None, *, native: bool = False) -> TemplateError:
    render = ENGINE.render_value if native else ENGINE.render_text
    with pytest.raises(TemplateError) as caught:
        render(source, ctx if ctx is not None else context())
    return caught.value


# --- strict undefined -------------------------------------------------------------------------


@pytest.mark.parametrize("native", [False, True])
def test_undefined_name_raises(native: bool) -> None:
    assert error("{{ mesage }}", native=native).message == "'mesage' is undefined"


@pytest.mark.parametrize("native", [False, True])
def test_undefined_attribute_names_its_owner_by_path(native: bool) -> None:
    assert error("{{ parameters.lang }}", native=native).message == "'parameters' has no attribute 'lang'"
    assert error("{{ steps.check.output.nope }}", native=native).message == (
        "'steps.check.output' has no attribute 'nope'"
    )


def test_undefined_element_and_chained_access() -> None:
    assert error("{{ messages[5] }}").message == "'messages' has no element 5"
    assert error("{{ parameters.a.b }}").message == "'parameters' has no attribute 'a'"
    assert error("{{ steps.check.output.score.x }}").message == "'int' value has no attribute 'x'"


def test_undefined_inside_a_data_value_still_raises() -> None:
    assert error("{{ [parameters.nope] }}").message == "'parameters' has no attribute 'nope'"
    assert error("{{ {'a': parameters.nope} | tojson }}").message == "'parameters' has no attribute 'nope'"


def test_default_filter_and_defined_test_work_with_strict_undefined() -> None:
    assert ENGINE.render_value("{{ parameters.lang | default('en') }}", context()) == "en"
    assert ENGINE.render_value("{{ parameters.lang is defined }}", context()) is False


def test_mapping_keys_win_over_dict_methods() -> None:
    ctx = context(items=[1, 2], keys="k")
    assert ENGINE.render_value("{{ parameters.items }}", ctx) == [1, 2]
    assert ENGINE.render_text("{{ parameters.keys }}", ctx) == "k"
    assert ENGINE.render_text("{{ steps.check.output.keys() | list }}", ctx) == '["score","tags"]'


# --- sandbox ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ ''.__class__.__mro__ }}", "access to '__class__' is not allowed"),
        ("{{ parameters.__class__ }}", "access to '__class__' is not allowed"),
        ("{{ message.__class__.__subclasses__() }}", "access to '__class__' is not allowed"),
        ("{{ cycler.__init__.__globals__ }}", "access to '__init__' is not allowed"),
        ("{{ messages.append(1) }}", "access to 'append' is not allowed"),
        ("{{ parameters.update({'a': 1}) }}", "access to 'update' is not allowed"),
    ],
)
@pytest.mark.parametrize("native", [False, True])
def test_sandbox_blocks_internals_and_mutation(source: str, expected: str, native: bool) -> None:
    assert error(source, native=native).message == expected


def test_sandbox_caps_huge_repetition_and_powers() -> None:
    assert "'*' would build a value longer than 1048576 items" in error("{{ 'a' * 10000000 }}").message
    assert "'*' would build a value longer than" in error("{{ 10000000 * [1] }}", native=True).message
    power = error("{{ 2 ** (10 ** 7) }}", native=True)
    assert power.message == "'**' would build a number larger than 4096 bits"
    assert ENGINE.render_value("{{ 'ab' * 3 }}", {}) == "ababab"
    assert ENGINE.render_value("{{ 2 ** 10 }}", {}) == 1024


def test_sandbox_caps_ranges() -> None:
    assert "MAX_RANGE" in error("{{ range(10 ** 7) | list }}").message


# --- native values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ steps.check.output }}", {"score": 3, "tags": ["a"]}),
        ("  {{ steps.check.output.tags }}\n", ["a"]),
        ("{{ parameters.flag }}", True),
        ("{{ parameters.none }}", None),
        ("{{ steps.check.output.score + 1 }}", 4),
        ("{{ 1.5 }}", 1.5),
        ("{# note #}{{ message }}", "hello"),
        ("{{ '[1, 2]' }}", "[1, 2]"),
        ("{{ '{\"a\": 1}' | fromjson }}", {"a": 1}),
    ],
)
def test_render_value_keeps_native_values(source: str, expected: Any) -> None:
    value = ENGINE.render_value(source, context(flag=True, none=None))
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("score: {{ steps.check.output.score }}", "score: 3"),
        ("{{ parameters.flag }}{{ parameters.flag }}", "truetrue"),
        ("{% if parameters.flag %}yes{% endif %}", "yes"),
        ("{% raw %}{{ message }}{% endraw %}", "{{ message }}"),
        ("[1, 2]", "[1, 2]"),
        ("True", "True"),
    ],
)
def test_render_value_falls_back_to_text_and_never_evaluates_it(source: str, expected: str) -> None:
    assert ENGINE.render_value(source, context(flag=True)) == expected


def test_render_value_size_cap_on_native_values() -> None:
    engine = TemplateEngine(max_output_chars=100)
    assert engine.render_value("{{ parameters.big }}", {"parameters": {"big": ["x"] * 10}}) == ["x"] * 10
    with pytest.raises(TemplateError, match="rendered value is larger than 100 characters"):
        engine.render_value("{{ parameters.big }}", {"parameters": {"big": {"k": ["x" * 30] * 5}}})


# --- text -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ steps.check.output }}", '{"score":3,"tags":["a"]}'),
        ("{{ parameters }}", '{"flag":true,"none":null,"word":"é<b>"}'),
        ("{{ parameters.none }}", ""),
        ("{{ parameters.flag }}/{{ not parameters.flag }}", "true/false"),
        ("{{ (1, 2) }}", "[1,2]"),
        ("{{ parameters.word | tojson }}", '"é<b>"'),
        ("{{ {'a': [1]} | tojson(indent=2) }}", '{\n  "a": [\n    1\n  ]\n}'),
        ("{{ parameters.word }} & {{ '<x>' }}", "é<b> & <x>"),
        ("line\n", "line\n"),
    ],
)
def test_render_text_finalises_values_as_json(source: str, expected: str) -> None:
    assert ENGINE.render_text(source, context(flag=True, none=None, word="é<b>")) == expected


def test_tojson_turns_other_values_into_json() -> None:
    ctx = {"parameters": {"a": 1}, "run": {"when": datetime.date(2024, 1, 2)}}
    assert ENGINE.render_text("{{ parameters.keys() | tojson }}", ctx) == '["a"]'
    assert ENGINE.render_text("{{ [1, 2] | map('string') | tojson }}", ctx) == '["1","2"]'
    assert ENGINE.render_text("{{ run | tojson }}", ctx) == '{"when":"2024-01-02"}'
    assert ENGINE.render_text("{{ parameters.items() | list | tojson }}", ctx) == '[["a",1]]'


def test_undefined_attribute_of_a_value_not_in_the_context() -> None:
    assert error("{{ {'a': 1}.b }}").message == "'dict' value has no attribute 'b'"


def test_fromjson_errors() -> None:
    assert (
        error("{{ 'nope' | fromjson }}").message
        == "fromjson: invalid JSON at line 1, column 1: Expecting value"
    )
    assert error("{{ 3 | fromjson }}").message == "fromjson expects a string, got int"


def test_python_errors_become_template_errors() -> None:
    assert error("{{ 1 / 0 }}").message == "ZeroDivisionError: division by zero"
    assert error("{{ 'a' + 1 }}").message.startswith("TypeError: ")


def test_syntax_error() -> None:
    assert error("a\n{% if %}").message.startswith("template syntax error at line 2: ")
    assert (
        error("{{ x | nosuch }}", native=True).message
        == "template syntax error at line 1: No filter named 'nosuch'."
    )


def test_recursion_is_a_template_error() -> None:
    source = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"
    assert error(source).message == "template nests too deeply"


def test_output_size_cap() -> None:
    engine = TemplateEngine(max_output_chars=1000)
    assert len(engine.render_text("{% for i in range(10) %}{{ 'x' * 100 }}{% endfor %}", {})) == 1000
    with pytest.raises(TemplateError, match="rendered text is longer than 1000 characters"):
        engine.render_text("{% for i in range(11) %}{{ 'x' * 100 }}{% endfor %}", {})


def test_default_output_cap_is_one_mebibyte() -> None:
    with pytest.raises(TemplateError, match="longer than 1048576 characters"):
        ENGINE.render_text("{% for i in range(2000) %}{{ 'x' * 1000 }}{% endfor %}", {})


def test_engine_arguments_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TemplateEngine(cache_size=0)
    with pytest.raises(ValueError):
        TemplateEngine(max_output_chars=0)


# --- structures -------------------------------------------------------------------------------


def test_render_structure_renders_every_string_leaf() -> None:
    value = {"a": ["{{ message }}", 3, None, {"b": "{{ parameters.flag }}"}], "c": ("{{ 1 + 1 }}",), "d": 1.5}
    assert ENGINE.render_structure(value, context(flag=True)) == {
        "a": ["hello", 3, None, {"b": True}],
        "c": (2,),
        "d": 1.5,
    }
    assert ENGINE.render_structure("{{ run.id }}", context()) == "run-1"
    assert ENGINE.render_structure(7, context()) == 7


def test_render_structure_error_names_the_leaf() -> None:
    with pytest.raises(TemplateError) as caught:
        ENGINE.render_structure({"a": [1, {"b": "{{ parameters.nope }}"}]}, context())
    assert caught.value.field == "a[1].b"
    assert caught.value.message == "'parameters' has no attribute 'nope'"
    assert str(caught.value) == "field 'a[1].b': 'parameters' has no attribute 'nope'"


def test_render_structure_error_at_the_root_has_no_field() -> None:
    with pytest.raises(TemplateError) as caught:
        ENGINE.render_structure("{{ nope }}", context())
    assert caught.value.field is None


# --- truthiness -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", False),
        ("  ", False),
        ("false", False),
        ("False", False),
        (" FALSE\n", False),
        ("0", False),
        ("no", False),
        ("off", False),
        ("none", False),
        ("None", False),
        ("null", False),
        ("true", True),
        ("yes", True),
        ("1", True),
        ("0.0", True),
        ("anything", True),
        (None, False),
        (False, False),
        (True, True),
        (0, False),
        (1, True),
        ([], False),
        ([0], True),
        ({}, False),
        ({"a": 1}, True),
    ],
)
def test_is_truthy(value: Any, expected: bool) -> None:
    assert TemplateEngine.is_truthy(value) is expected


def test_when_evaluation_end_to_end() -> None:
    def when(source: str, **parameters: Any) -> bool:
        return ENGINE.is_truthy(ENGINE.render_value(source, context(**parameters)))

    assert when("{{ parameters.verbose }}", verbose=True)
    assert not when("{{ parameters.verbose }}", verbose=False)
    assert not when("{{ parameters.verbose }}", verbose="no")
    assert not when("{{ parameters.verbose | default(false) }}")
    assert when("{{ steps.check.output.score > 2 }}")


# --- cache ------------------------------------------------------------------------------------


def test_cache_hits_and_misses() -> None:
    engine = TemplateEngine(cache_size=2)
    engine.render_text("{{ 1 }}", {})
    engine.render_value("{{ 1 }}", {})
    engine.render_text("{{ 2 }}", {})
    info = engine.cache_info()
    assert (info.hits, info.misses, info.maxsize, info.currsize) == (1, 2, 2, 2)


def test_cache_evicts_least_recently_used() -> None:
    engine = TemplateEngine(cache_size=2)
    engine.render_text("a", {})
    engine.render_text("b", {})
    engine.render_text("a", {})  # a is now the most recent
    engine.render_text("c", {})  # evicts b
    assert engine.cache_info().currsize == 2
    engine.render_text("a", {})
    assert engine.cache_info().hits == 2
    engine.render_text("b", {})
    assert engine.cache_info().misses == 4


def test_failed_compilations_are_not_cached() -> None:
    engine = TemplateEngine()
    for _ in range(2):
        with pytest.raises(TemplateError):
            engine.render_text("{{ x ", {})
    assert engine.cache_info().currsize == 0


def test_engine_is_thread_safe() -> None:
    engine = TemplateEngine(cache_size=8)
    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(200):
                assert engine.render_value(f"{{{{ {i % 20} + n }}}}", {"n": n}) == i % 20 + n
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert engine.cache_info().currsize <= 8


# --- properties -------------------------------------------------------------------------------


@given(st.text())
def test_message_renders_unchanged(message: str) -> None:
    ctx = build_context(message=message, messages=[], parameters={}, attachments=[], outputs={}, run={})
    assert ENGINE.render_text("{{ message }}", ctx) == message
    assert ENGINE.render_value("{{ message }}", ctx) == message


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(), lambda inner: st.lists(inner, max_size=4)
    )
)
def test_native_values_pass_through_unchanged(value: Any) -> None:
    assert ENGINE.render_value("{{ parameters.v }}", {"parameters": {"v": value}}) == value
