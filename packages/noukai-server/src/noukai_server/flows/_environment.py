"""The sandboxed, strict Jinja environment every flow template is compiled in."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from jinja2 import StrictUndefined, Undefined
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from noukai_server.flows._filters import finalize_value, from_json, to_json
from noukai_server.flows._paths import Path, format_path

DEFAULT_MAX_OUTPUT_CHARS = 1024 * 1024
# An integer power beyond this many bits is a memory bomb, not a computation a prompt needs.
_MAX_POWER_BITS = 100_000
# Bounds the search for "which context value was that?" when an error message is built.
_MAX_LOCATE_NODES = 10_000

# The context being rendered, so an undefined attribute can be reported by its path in it.
_rendering: ContextVar[Mapping[str, Any] | None] = ContextVar("noukai_template_context", default=None)


@contextmanager
def rendering(context: Mapping[str, Any]) -> Iterator[None]:
    """Mark `context` as the one being rendered, for error messages."""
    token = _rendering.set(context)
    try:
        yield
    finally:
        _rendering.reset(token)


def _locate(obj: object) -> str | None:
    context = _rendering.get()
    if context is None or not isinstance(obj, Mapping | list | tuple):
        # Scalars are compared by identity below, and small ints/strings are shared objects in Python.
        return None
    queue: deque[tuple[Path, Any]] = deque(((name,), value) for name, value in context.items())
    budget = _MAX_LOCATE_NODES
    while queue and budget > 0:
        path, value = queue.popleft()
        budget -= 1
        if value is obj:
            return format_path(path)
        if isinstance(value, Mapping):
            queue.extend(((*path, key), item) for key, item in value.items() if isinstance(key, str))
        elif isinstance(value, list | tuple):
            queue.extend(((*path, index), item) for index, item in enumerate(value))
    return None


class _StrictUndefined(StrictUndefined):
    """Strict undefined whose message names the value by its path: `'parameters' has no attribute 'lang'`."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        if self._undefined_obj is missing:
            return f"{self._undefined_name!r} is undefined"
        where = _locate(self._undefined_obj)
        owner = repr(where) if where else f"'{type(self._undefined_obj).__name__}' value"
        if isinstance(self._undefined_name, str):
            return f"{owner} has no attribute {self._undefined_name!r}"
        return f"{owner} has no element {self._undefined_name!r}"


class _MissingKey(_StrictUndefined):
    """A key a mapping does not have, read with attribute syntax (`parameters.keys`).

    Undefined like any missing key; only a call (`parameters.keys()`) reaches the mapping's method,
    and then only a method the immutable sandbox allows.
    """

    __slots__ = ()


class FlowEnvironment(ImmutableSandboxedEnvironment):
    """Sandboxed (no Python internals, no mutation), strict (undefined raises), no autoescape."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, *, max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> None:
        super().__init__(
            undefined=_StrictUndefined,
            autoescape=False,
            finalize=finalize_value,
            # A prompt renders exactly as written, trailing newline included.
            keep_trailing_newline=True,
        )
        self.max_output_chars = max_output_chars
        self.filters["tojson"] = to_json
        self.filters["fromjson"] = from_json

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Flow data is JSON: `parameters.items` means the key "items", never the dict method, so a
        # missing key is undefined (`default` applies, `when` fails) rather than a truthy method.
        if isinstance(obj, Mapping):
            if attribute in obj:
                return obj[attribute]
            if attribute.startswith("_"):
                # Never a key a flow author meant: say the sandbox refuses it, as for any object.
                return self.unsafe_undefined(obj, attribute)
            return _MissingKey(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        # Item syntax on a mapping reads data only: no fallback to its attributes at all.
        if isinstance(obj, Mapping):
            try:
                return obj[argument]
            except (TypeError, LookupError):
                return self.undefined(obj=obj, name=argument)
        return super().getitem(obj, argument)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(__obj, _MissingKey):
            # `parameters.items()`: the call of a read-only mapping method, vetted by the sandbox.
            __obj = __self._mapping_method(__obj)
        return super().call(__context, __obj, *args, **kwargs)

    def _mapping_method(self, missing: _MissingKey) -> Any:
        mapping, name = missing._undefined_obj, missing._undefined_name
        if not isinstance(name, str) or not callable(method := getattr(mapping, name, None)):
            # Raises the undefined error: `'parameters' has no attribute 'nope'`.
            missing._fail_with_undefined_error()
        if not self.is_safe_attribute(mapping, name, method):
            raise SecurityError(f"access to {name!r} is not allowed")
        return method

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        return self.undefined(
            f"access to {attribute!r} is not allowed", name=attribute, obj=obj, exc=SecurityError
        )

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        # `'a' * 10**9` would allocate before any output cap could see it; refuse it up front.
        if operator == "*":
            self._check_repeat(left, right)
            self._check_repeat(right, left)
        elif operator == "**":
            _check_power(left, right)
        return super().call_binop(context, operator, left, right)

    def _check_repeat(self, sequence: Any, times: Any) -> None:
        repeats = isinstance(sequence, str | list | tuple) and isinstance(times, int)
        if repeats and len(sequence) * times > self.max_output_chars:
            raise SecurityError(f"'*' would build a value longer than {self.max_output_chars} items")


def _check_power(base: Any, exponent: Any) -> None:
    integers = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
    if integers and exponent * abs(base).bit_length() > _MAX_POWER_BITS:
        raise SecurityError("'**' would build a number too large")
