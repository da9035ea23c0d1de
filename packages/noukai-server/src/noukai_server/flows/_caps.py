"""Size caps inside the template sandbox: no single operation may build a huge value.

Rendering runs off the event loop with a deadline (see `_deadline`), but a template checks that
deadline only between operations: one C-level call such as `'a'|center(10**9)`, `x * x` on
ten-million-bit integers or `str()` of a list holding a million copies of a long string runs to
its end, holding the GIL and allocating as it goes. So every operation that can build a value much
larger than its inputs is checked *before* it runs: integer results are capped in bits, strings
and lists in length, and anything turned into text (output, `~`, `join`, `format`, `string`,
`tojson` …) in its rough JSON size (`weight`). Each refusal is a `LimitExceeded` naming the
operation and the cap.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sized
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter

MAX_INT_BITS = 4096
"""An integer a template computes may have at most this many bits (about 1233 decimal digits)."""

_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]")
_DIGITS = re.compile(r"\d+")


class LimitExceeded(SecurityError):
    """A template operation would exceed one of the sandbox's size caps."""


def weight(value: Any, limit: int) -> int:
    """The rough size of `value` as JSON text, counted until it passes `limit` (then returned)."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, Mapping):
            total += 2 + 2 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            total += 2 + len(item)
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            total += item.bit_length() // 3 + 1
        elif isinstance(item, range):
            total += 2 + len(item) * 7
        else:
            total += 8
        if total > limit:
            return total
    return total


def check_weight(what: str, value: Any, limit: int) -> None:
    """Refuse to turn `value` into text when that text would pass `limit` characters."""
    if not isinstance(value, str) and weight(value, limit) > limit:
        raise LimitExceeded(f"{what} would build a value longer than {limit} characters")


def check_int(what: str, value: Any) -> None:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise LimitExceeded(f"{what} would build a number larger than {MAX_INT_BITS} bits")


def check_length(what: str, size: int, limit: int) -> None:
    if size > limit:
        raise LimitExceeded(f"{what} would build a value longer than {limit} characters")


def check_binop(operator: str, left: Any, right: Any, limit: int) -> None:
    """What `left <operator> right` would build, checked before Python builds it."""
    if operator == "*":
        _check_repeat(left, right, limit)
        _check_repeat(right, left, limit)
        if _integers(left, right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise LimitExceeded(f"'*' would build a number larger than {MAX_INT_BITS} bits")
    elif operator == "**":
        # At least (bits - 1) * exponent bits: past the cap it is refused before it is computed,
        # and the result check below catches the rest (at most twice the cap, cheap to build).
        powers = _integers(left, right) and right > 0 and abs(left) > 1
        if powers and (left.bit_length() - 1) * right + 1 > MAX_INT_BITS:
            raise LimitExceeded(f"'**' would build a number larger than {MAX_INT_BITS} bits")
    elif operator == "%" and isinstance(left, str):
        arguments = right if isinstance(right, tuple) else (right,)
        check_length("'%'", printf_size(left, arguments, limit), limit)
    elif operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
        check_length("'+'", len(left) + len(right), limit)


def check_result(operator: str, result: Any) -> Any:
    """An integer result past the cap is refused even when its size could not be told up front."""
    check_int(f"'{operator}'", result)
    return result


def _integers(left: Any, right: Any) -> bool:
    return type(left) is int and type(right) is int  # bools are ints, and never large


def _check_repeat(sequence: Any, times: Any, limit: int) -> None:
    if isinstance(sequence, str | list | tuple) and type(times) is int and len(sequence) * times > limit:
        raise LimitExceeded(f"'*' would build a value longer than {limit} items")


def printf_size(template: str, arguments: Iterable[Any], limit: int) -> int:
    """An upper bound of the length of `template % arguments` (a `format` filter or a `%`)."""
    fields = _PRINTF_SPEC.findall(template)
    arguments = list(arguments.values()) if isinstance(arguments, Mapping) else list(arguments)
    if len(arguments) == 1 and isinstance(arguments[0], Mapping):
        arguments = list(arguments[0].values())
    widest = max((int(n) for spec in fields for n in spec if n.isdigit()), default=0)
    if any("*" in spec for spec in fields):
        widest = max([widest, *(a for a in arguments if type(a) is int)])
    return len(template) + len(fields) * (widest + _widest_argument(arguments, limit))


def format_size(template: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], limit: int) -> int:
    """An upper bound of the length of `template.format(*args, **kwargs)`."""
    fields = 0
    widest = 0
    try:
        for _, name, spec, _ in string.Formatter().parse(template):
            if name is None:
                continue
            fields += 1
            widest = max([widest, *(int(n) for n in _DIGITS.findall(spec or ""))])
            if spec and "{" in spec:  # a nested width, `{:>{w}}`, comes from the arguments
                widest = max([widest, *(a for a in (*args, *kwargs.values()) if type(a) is int)])
    except ValueError:
        return len(template)  # str.format raises the same error with its own message
    return len(template) + fields * (widest + _widest_argument([*args, *kwargs.values()], limit))


def _widest_argument(arguments: Iterable[Any], limit: int) -> int:
    return max((weight(argument, limit) for argument in arguments), default=0)


def bounded_filters(filters: Mapping[str, Callable[..., Any]], limit: int) -> dict[str, Callable[..., Any]]:
    """Jinja's builtin filters that can build large values, each checked before it runs."""
    estimates: dict[str, Callable[..., int | None]] = {
        "center": lambda value, width=80: max(len(str(value)), _number(width)),
        "indent": _indent_size,
        "wordwrap": _wordwrap_size,
        "format": lambda value, *args, **kwargs: printf_size(str(value), kwargs or args, limit),
        "join": lambda value, d="", attribute=None: None,  # checked on the materialised items below
        "replace": lambda value, old, new, count=None: _replace_size(str(value), old, new, count),
        "batch": lambda value, linecount, fill_with=None: _number(linecount),
        "slice": lambda value, slices, fill_with=None: _number(slices),
        "truncate": lambda value, length=255, killwords=False, end="...", leeway=None: None,
    }
    bounded: dict[str, Callable[..., Any]] = {}
    for name in (*estimates, *_STRINGIFYING):
        if name in filters:
            bounded[name] = _bounded(name, filters[name], estimates.get(name), limit)
    bounded["join"] = _bounded_join(filters["join"], limit)
    bounded["sum"] = _bounded_sum(filters["sum"], limit)
    return bounded


# Filters that turn their input into text: a non-string input is weighed first.
_STRINGIFYING = (
    "capitalize",
    "e",
    "escape",
    "forceescape",
    "lower",
    "pprint",
    "string",
    "striptags",
    "title",
    "trim",
    "upper",
    "urlencode",
    "urlize",
    "wordcount",
    "xmlattr",
)


def _bounded(
    name: str, original: Callable[..., Any], estimate: Callable[..., int | None] | None, limit: int
) -> Callable[..., Any]:
    skip = 1 if hasattr(original, "jinja_pass_arg") else 0  # the context/environment argument

    @functools.wraps(original)  # keeps `jinja_pass_arg`, so Jinja still passes what it expects
    def bounded(*args: Any, **kwargs: Any) -> Any:
        value = args[skip] if len(args) > skip else None
        check_weight(f"'{name}'", value, limit)
        if estimate is not None:
            size = estimate(*args[skip:], **kwargs)
            if size is not None:
                check_length(f"'{name}'", size, limit)
        return original(*args, **kwargs)

    return bounded


def _bounded_join(original: Callable[..., Any], limit: int) -> Callable[..., Any]:
    @functools.wraps(original)
    def join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> Any:
        items = list(value) if not isinstance(value, str) else value
        separators = (len(items) - 1) * len(str(d)) if isinstance(items, Sized) else 0
        check_length("'join'", separators + weight(items, limit), limit)
        return original(eval_ctx, items, d, attribute)

    return join


def _bounded_sum(original: Callable[..., Any], limit: int) -> Callable[..., Any]:
    # Python's sum() adds lists or strings in one C call, quadratic and deaf to the deadline.
    @functools.wraps(original)
    def sum_(environment: Any, iterable: Iterable[Any], attribute: Any = None, start: Any = 0) -> Any:
        if attribute is not None:
            iterable = map(make_attrgetter(environment, attribute), iterable)
        total = start
        for item in iterable:
            check_binop("+", total, item, limit)
            total = check_result("+", total + item)
        return total

    return sum_


def _number(value: Any) -> int:
    return value if type(value) is int else 0


def _indent_size(value: Any, width: Any = 4, first: bool = False, blank: bool = False) -> int:
    text = str(value)
    step = len(width) if isinstance(width, str) else _number(width)
    return len(text) + (text.count("\n") + 1) * step


def _wordwrap_size(
    value: Any,
    width: Any = 79,
    break_long_words: bool = True,
    wrapstring: Any = None,
    break_on_hyphens: bool = True,
) -> int:
    text = str(value)
    lines = text.count("\n") + len(text) // max(_number(width), 1) + 1
    return len(text) + lines * len(str(wrapstring or "\n"))


def _replace_size(text: str, old: Any, new: Any, count: Any) -> int:
    old, new = str(old), str(new)
    times = text.count(old) if old else len(text) + 1
    if type(count) is int and count >= 0:
        times = min(times, count)
    return len(text) + times * max(len(new) - len(old), 0)


def check_method(method: Any, args: tuple[Any, ...], limit: int) -> tuple[Any, ...]:
    """Bound calls of the `str` methods that can build much more than they were given; returns
    the arguments to call with (an iterable given to `join` is read once, here)."""
    owner = getattr(method, "__self__", None)
    if not isinstance(owner, str):
        return args
    name = getattr(method, "__name__", "")
    first: Any = args[0] if args else None
    if name in ("center", "ljust", "rjust", "zfill"):
        check_length(f"'{name}'", _number(first), limit)
    elif name == "expandtabs":
        check_length("'expandtabs'", len(owner) + owner.count("\t") * _number(first if args else 8), limit)
    elif name == "replace" and len(args) >= 2:
        check_length(
            "'replace'", _replace_size(owner, args[0], args[1], args[2] if len(args) > 2 else -1), limit
        )
    elif name == "join" and args:
        items = list(first) if not isinstance(first, str) else first
        check_length("'join'", (len(items) - 1) * len(owner) + weight(items, limit), limit)
        return (items, *args[1:])
    elif name == "translate":
        raise LimitExceeded("'translate' is not allowed in templates")
    return args
