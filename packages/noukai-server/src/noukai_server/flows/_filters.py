"""How template values become text, and the JSON filters templates get on top of Jinja's builtins."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from jinja2 import Undefined

from noukai_server.flows._errors import TemplateError


def _json_default(value: Any) -> Any:
    if isinstance(value, Undefined):
        # str() of a strict undefined raises the precise "is undefined" error instead of hiding it.
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Iterable) and not isinstance(value, str | bytes | bytearray):
        # Sets, dict views, generators from filters such as `map`: JSON has only arrays for these.
        return list(value)
    return str(value)


def to_json(value: Any, indent: int | None = None) -> str:
    """Compact JSON (`{"a":1}`), non-ASCII kept as is: what a prompt or a model wants to read.

    Jinja's own `tojson` escapes `<`, `>` and `&` for HTML, which would corrupt prompts.
    """
    if indent is not None:
        return json.dumps(value, indent=indent, ensure_ascii=False, default=_json_default)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def from_json(value: Any) -> Any:
    """Parse a JSON string, e.g. a model's `output: json` text, into data a template can walk."""
    if not isinstance(value, str | bytes | bytearray):
        raise TemplateError(f"fromjson expects a string, got {type(value).__name__}")
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise TemplateError(
            f"fromjson: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def finalize_value(value: Any) -> Any:
    """Text form of a `{{ }}` value: data as compact JSON, None as "", booleans as JSON's true/false.

    Python's own spellings (`{'a': 1}`, `None`, `True`) would leak into prompts otherwise.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list | tuple):
        return to_json(value)
    return value
