"""The sandbox's size caps: every operation that could build a value far larger than its inputs is
refused before it runs, with a message naming the operation; ordinary uses still work."""

from __future__ import annotations

from typing import Any

import pytest

from noukai_server.flows import TemplateEngine, TemplateError
from noukai_server.flows._caps import MAX_INT_BITS, weight

ENGINE = TemplateEngine()
LIMIT = 1024 * 1024
BIG = "x" * LIMIT  # the longest value a template may build
CONTEXT = {"parameters": {"big": BIG, "items": ["a", "b"], "rows": [{"n": 1}, {"n": 2}]}}


def refused(source: str) -> str:
    with pytest.raises(TemplateError) as caught:
        ENGINE.render_text(source, CONTEXT)
    return caught.value.message


def render(source: str, context: dict[str, Any] | None = None) -> str:
    return ENGINE.render_text(source, context if context is not None else CONTEXT)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "{% set n = 3 %}" + "{% set n = n * n %}" * 24 + "{{ n }}",
            "'*' would build a number larger than 4096 bits",
        ),
        ("{{ 2 ** 5000 }}", "'**' would build a number larger than 4096 bits"),
        ("{{ 3 ** 4000 }}", "'**' would build a number larger than 4096 bits"),  # found after computing
        ("{{ (2 ** 4095) + (2 ** 4095) }}", "'+' would build a number larger than 4096 bits"),
        ("{{ -(2 ** 4095) - (2 ** 4095) }}", "'-' would build a number larger than 4096 bits"),
        ("{{ 'a' * 10000000 }}", "'*' would build a value longer than 1048576 items"),
        ("{{ parameters.big + parameters.big }}", "'+' would build a value longer than 1048576 characters"),
        ("{{ parameters.big ~ 'y' }}", "'~' would build a value longer than 1048576 characters"),
        ("{{ ([parameters.big] * 2) ~ '' }}", "'~' would build a value longer than 1048576 characters"),
        ("{{ '%100000000s' % 1 }}", "'%' would build a value longer than 1048576 characters"),
        ("{{ '%*s' % (100000000, 1) }}", "'%' would build a value longer than 1048576 characters"),
        ("{{ '%(a)s%(a)s' % {'a': parameters.big} }}", "'%' would build a value longer than"),
        ("{{ '%100000000s' | format(1) }}", "'format' would build a value longer than 1048576 characters"),
        ("{{ '{:>100000000}'.format(1) }}", "'format' would build a value longer than 1048576 characters"),
        ("{{ '{:>{w}}'.format(1, w=100000000) }}", "'format' would build a value longer than"),
        ("{{ '{a}{a}'.format_map({'a': parameters.big}) }}", "'format' would build a value longer than"),
        ("{{ 'a' | center(10 ** 8) }}", "'center' would build a value longer than 1048576 characters"),
        ("{{ 'a'.center(10 ** 8) }}", "'center' would build a value longer than 1048576 characters"),
        ("{{ 'a'.ljust(10 ** 8) }}", "'ljust' would build a value longer than"),
        ("{{ 'a'.rjust(10 ** 8) }}", "'rjust' would build a value longer than"),
        ("{{ 'a'.zfill(10 ** 8) }}", "'zfill' would build a value longer than"),
        ("{{ ('\t' * 1000).expandtabs(10000) }}", "'expandtabs' would build a value longer than"),
        ("{{ parameters.big | replace('x', 'yy') }}", "'replace' would build a value longer than"),
        ("{{ parameters.big.replace('x', 'yy') }}", "'replace' would build a value longer than"),
        (
            "{{ ('a' * 1000) | replace('', parameters.big[:2000]) }}",
            "'replace' would build a value longer than",
        ),
        ("{{ ([parameters.big] * 2) | join }}", "'join' would build a value longer than 1048576 characters"),
        ("{{ ['a', 'b'] | join(parameters.big) }}", "'join' would build a value longer than"),
        ("{{ ''.join([parameters.big] * 2) }}", "'join' would build a value longer than"),
        ("{{ ('a\n' * 400000) | indent(100) }}", "'indent' would build a value longer than"),
        ("{{ parameters.big | wordwrap(1, wrapstring='--') }}", "'wordwrap' would build a value longer than"),
        ("{{ [1] | batch(10 ** 9, 0) | list }}", "'batch' would build a value longer than"),
        ("{{ [1] | slice(10 ** 8) | list }}", "'slice' would build a value longer than"),
        ("{{ ([[1] * 1000000] * 2) | sum(start=[]) | length }}", "'+' would build a value longer than"),
        ("{{ ([parameters.big] * 2) | string }}", "'string' would build a value longer than"),
        ("{{ ([parameters.big] * 2) | upper }}", "'upper' would build a value longer than"),
        ("{{ ([parameters.big] * 2) | tojson }}", "'tojson' would build a value longer than"),
        ("{{ [1] | tojson(indent=1000) }}", "tojson's indent must be between 0 and 8"),
        ("{{ [parameters.big] * 2 }}", "'{{ }}' would build a value longer than 1048576 characters"),
        (
            "{% set x %}{{ parameters.big }}{{ parameters.big }}{% endset %}{{ x | length }}",
            "a block would build",
        ),
        (
            "{% macro m() %}{{ parameters.big }}{{ parameters.big }}{% endmacro %}{{ m() | length }}",
            "a block would",
        ),
        ("{{ 'ab'.translate({97: 'x'}) }}", "'translate' is not allowed in templates"),
        ("{{ lipsum(100000) | length }}", "'lipsum' is undefined"),
    ],
)
def test_an_operation_past_a_cap_is_refused_before_it_runs(source: str, message: str) -> None:
    assert message in refused(source)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 2 ** 4095 > 0 }}", "true"),
        ("{{ (2 ** 2000) * (2 ** 2000) > 0 }}", "true"),
        ("{{ 7 * 6 }} {{ 2 ** 10 }} {{ 10 // 3 }} {{ 10 % 3 }} {{ 1 + 2 }} {{ 5 - 7 }}", "42 1024 3 1 3 -2"),
        ("{{ 'ab' * 3 }} {{ [1] * 2 }} {{ 'a' ~ 1 ~ [2] }}", "ababab [1,1] a1[2]"),
        ("{{ '%5s|%-3d|%(x)s' % {'x': 1} if false else '%5s|%-3d' % ('a', 7) }}", "    a|7  "),
        (
            "{{ '%.2f' | format(3.14159) }} {{ '{:>4}{}'.format(1, 'z') }} {{ '{a}'.format_map({'a': 2}) }}",
            "3.14    1z 2",
        ),
        (
            "{{ 'ab' | center(6) }}|{{ 'ab'.ljust(4) }}|{{ '7'.zfill(3) }}|{{ 'a\tb'.expandtabs(2) }}",
            "  ab  |ab  |007|a b",
        ),
        ("{{ 'a-b' | replace('-', '+') }} {{ 'aaa'.replace('a', 'bb', 2) }}", "a+b bbbba"),
        ("{{ parameters.items | join(',') }} {{ '+'.join(parameters.items) }}", "a,b a+b"),
        ("{{ '-'.join(parameters.items | map('upper')) }}", "A-B"),
        (
            "{{ [1, 2, 3] | sum }} {{ parameters.rows | sum(attribute='n') }} "
            "{{ [[1], [2]] | sum(start=[]) }}",
            "6 3 [1,2]",
        ),
        ("{{ 'a\nb' | indent(2, first=true) }}", "  a\n  b"),
        ("{{ 'aaa bbb' | wordwrap(3) }}", "aaa\nbbb"),
        (
            "{{ [1, 2, 3] | batch(2, 0) | list }} {{ [1, 2, 3] | slice(2) | list }}",
            "[[1,2],[3,0]] [[1,2],[3]]",
        ),
        ("{{ {'a': [1]} | tojson(2) }}", '{\n  "a": [\n    1\n  ]\n}'),
        ("{% set x %}{{ 'a' }}{{ 'b' }}{% endset %}{{ x }}", "ab"),
        ("{{ parameters.big | length }}", str(LIMIT)),
    ],
)
def test_ordinary_uses_still_work(source: str, expected: str) -> None:
    assert render(source) == expected


def test_weight_is_the_rough_json_size_and_stops_past_the_limit() -> None:
    assert weight({"ab": [1, "cd"]}, 1000) == weight("ab", 1000) + weight([1, "cd"], 1000) + 4
    assert weight(2**MAX_INT_BITS, 10**6) == 1366
    shared = ["x" * 1000] * 1_000_000  # a million references to one string: 1 GB as text
    assert weight(shared, 10_000) == 1_000_002  # its length alone passes the limit: items never read
