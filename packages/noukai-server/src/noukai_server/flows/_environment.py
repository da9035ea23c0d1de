"""The sandboxed, strict Jinja environment every flow template is compiled in."""

from __future__ import annotations

import pprint  # noqa: F401  # imported by Jinja's `pprint` filter on first use, see below
import textwrap  # noqa: F401  # imported by Jinja's `wordwrap` filter on first use, see below
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from jinja2 import StrictUndefined, Undefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from noukai_server.flows._caps import (
    LimitExceeded,
    bounded_filters,
    check_binop,
    check_length,
    check_method,
    check_result,
    check_weight,
    format_size,
)
from noukai_server.flows._deadline import checked, checkpoint, tick, ticking
from noukai_server.flows._filters import finalize_value, from_json, to_json
from noukai_server.flows._paths import Path, format_path

# pprint and textwrap are imported above, not by a filter's first call during a render: a first
# import inside a render would count against that render's deadline (see `_deadline`).
DEFAULT_MAX_OUTPUT_CHARS = 1024 * 1024
# `tojson(indent=…)` multiplies a value's size by its depth times this; prompts need 2 or 4.
_MAX_JSON_INDENT = 8
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


def _ticked_iter(iterable: nodes.Node) -> nodes.Call:
    """The iterable of a `{% for %}`, wrapped so that each item ticks the render's deadline (see
    `_deadline`). Jinja's parser never builds an `EnvironmentAttribute`: a template cannot name it."""
    return nodes.Call(
        nodes.EnvironmentAttribute("ticking"), [iterable], [], None, None, lineno=iterable.lineno
    )


def _is_ticked_iter(node: nodes.Call) -> bool:
    return isinstance(node.node, nodes.EnvironmentAttribute) and node.node.name == "ticking"


class _BoundedCodeGenerator(CodeGenerator):
    """Compiles `a ~ b` to the environment's size-checked join instead of Jinja's plain one, and a
    loop's iterable to a ticking one."""

    def visit_Call(self, node: nodes.Call, frame: Frame, forward_caller: bool = False) -> None:
        if not _is_ticked_iter(node):
            super().visit_Call(node, frame, forward_caller=forward_caller)
            return
        # Our own wrapper: called directly, the sandbox's `call` has nothing to vet.
        self.write("environment.ticking(")
        self.visit(node.args[0], frame)
        self.write(")")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.join_text((")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write("))")


class FlowEnvironment(ImmutableSandboxedEnvironment):
    """Sandboxed (no Python internals, no mutation), strict (undefined raises), no autoescape, and
    size-capped: no operation builds a value longer than `max_output_chars` (see `_caps`)."""

    intercepted_binops = frozenset({"*", "**", "%", "+", "-", "//"})
    code_generator_class = _BoundedCodeGenerator
    # Called by the code `_BoundedCodeGenerator` writes for every `{% for %}`.
    ticking = staticmethod(ticking)

    def __init__(self, *, max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> None:
        super().__init__(
            undefined=_StrictUndefined,
            autoescape=False,
            finalize=self._finalize,
            # A prompt renders exactly as written, trailing newline included.
            keep_trailing_newline=True,
        )
        self.max_output_chars = max_output_chars
        self.filters.update(bounded_filters(self.filters, max_output_chars))
        self.filters["tojson"] = self._to_json
        self.filters["fromjson"] = from_json
        # `lipsum(100000)` builds megabytes of text in one C-speed call; no prompt needs it.
        self.globals.pop("lipsum", None)
        # Compiled templates call filters and tests directly, and `map`, `select` … call them per
        # item: each call checks the render's deadline first.
        self.filters.update({name: checked(f) for name, f in self.filters.items()})
        self.tests.update({name: checked(f) for name, f in self.tests.items()})

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        # Every way a template can run long goes through a loop or one of the hooks below (a
        # macro's recursion is a call), so ticking there bounds a render by its deadline.
        tree = super()._parse(source, name, filename)
        for loop in list(tree.find_all(nodes.For)):
            loop.iter = _ticked_iter(loop.iter)
        return tree

    def _finalize(self, value: Any) -> Any:
        check_weight("'{{ }}'", value, self.max_output_chars)
        return finalize_value(value)

    def _to_json(self, value: Any, indent: int | None = None) -> str:
        if indent is not None and not 0 <= indent <= _MAX_JSON_INDENT:
            raise LimitExceeded(f"tojson's indent must be between 0 and {_MAX_JSON_INDENT}")
        check_weight("'tojson'", value, self.max_output_chars // (1 + (indent or 0)))
        return to_json(value, indent)

    def concat(self, parts: Iterable[str]) -> str:
        """Jinja's join of a block's output (`{% set x %}…{% endset %}`, macros), size-checked as it goes."""
        kept: list[str] = []
        size = 0
        for part in parts:
            size += len(part)
            check_length("a block", size, self.max_output_chars)
            kept.append(part)
        return "".join(kept)

    def join_text(self, parts: tuple[Any, ...]) -> str:
        """`a ~ b ~ c`: each operand as text, refused before the joined text would pass the cap."""
        limit = self.max_output_chars
        texts = []
        size = 0
        for part in parts:
            check_weight("'~'", part, limit)
            text = str(part)
            size += len(text)
            check_length("'~'", size, limit)
            texts.append(text)
        return "".join(texts)

    def getattr(self, obj: Any, attribute: str) -> Any:
        tick()
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
        tick()  # also reached per item by filters given an `attribute`
        # Item syntax on a mapping reads data only: no fallback to its attributes at all.
        if isinstance(obj, Mapping):
            try:
                return obj[argument]
            except (TypeError, LookupError):
                return self.undefined(obj=obj, name=argument)
        return super().getitem(obj, argument)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        checkpoint()
        if isinstance(__obj, LoopContext) and args:
            # `loop(children)` in a recursive loop iterates `children` outside the compiled `for`.
            args = (ticking(args[0]), *args[1:])
        if isinstance(__obj, _MissingKey):
            # `parameters.items()`: the call of a read-only mapping method, vetted by the sandbox.
            __obj = __self._mapping_method(__obj)
        args = check_method(__obj, args, __self.max_output_chars)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # `'{:>99999999}'.format(1)`: the sandbox's formatter would build it; weigh it first.
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template: str = value.__self__
        is_map = value.__name__ == "format_map"
        limit = self.max_output_chars

        def bounded(*args: Any, **kwargs: Any) -> str:
            if is_map and len(args) == 1 and isinstance(args[0], Mapping):
                size = format_size(template, (), args[0], limit)
            else:
                size = format_size(template, args, kwargs, limit)
            check_length("'format'", size, limit)
            return wrapped(*args, **kwargs)

        return bounded

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
        # `'a' * 10**9` or squaring a huge integer runs in one C call that no deadline can stop:
        # refuse it before it starts.
        tick()
        check_binop(operator, left, right, self.max_output_chars)
        return check_result(operator, super().call_binop(context, operator, left, right))
