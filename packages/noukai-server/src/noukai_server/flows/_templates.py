"""Rendering flow templates: text, native values and nested structures, with a compiled-template LRU."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import jinja2
from jinja2 import Undefined, nodes
from jinja2.environment import Template, TemplateExpression

from noukai_server.flows._environment import DEFAULT_MAX_OUTPUT_CHARS, FlowEnvironment, rendering
from noukai_server.flows._errors import TemplateError
from noukai_server.flows._paths import Path, format_path

_FALSY_STRINGS = frozenset({"", "false", "0", "no", "off", "none", "null"})


class TemplateCacheInfo(NamedTuple):
    hits: int
    misses: int
    maxsize: int
    currsize: int


@dataclass(frozen=True)
class _Compiled:
    template: Template
    # Set when the source is exactly one `{{ expression }}`: evaluated natively by render_value.
    expression: TemplateExpression | None


class TemplateEngine:
    """Compiles and renders flow templates; safe to share between threads and runs."""

    def __init__(self, *, cache_size: int = 512, max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> None:
        if cache_size < 1 or max_output_chars < 1:
            raise ValueError("cache_size and max_output_chars must be positive")
        self._env = FlowEnvironment(max_output_chars=max_output_chars)
        self._max_output_chars = max_output_chars
        self._cache: OrderedDict[str, _Compiled] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def render_text(self, source: str, context: Mapping[str, Any]) -> str:
        """Render to text; data values appear as compact JSON, None as "", booleans as true/false."""
        return self._render_text(self._compiled(source), context)

    def render_value(self, source: str, context: Mapping[str, Any]) -> Any:
        """The native value of a lone `{{ expression }}` (dict, list, int, None …), else the rendered text."""
        compiled = self._compiled(source)
        if compiled.expression is None:
            return self._render_text(compiled, context)
        with _template_errors(), rendering(context):
            value = compiled.expression(context)
            if isinstance(value, Undefined):
                # Returned untouched, a strict undefined would escape; str() raises its precise error.
                str(value)
        if _exceeds(value, self._max_output_chars):
            raise TemplateError(f"rendered value is larger than {self._max_output_chars} characters")
        return value

    def render_structure(self, value: Any, context: Mapping[str, Any]) -> Any:
        """render_value every string leaf of nested dicts/lists; other leaves are returned unchanged.

        A failing leaf raises TemplateError whose `field` is the leaf's path, e.g. `greeting.name`.
        """
        return self._render_tree(value, context, ())

    @staticmethod
    def is_truthy(value: Any) -> bool:
        """Truth of a `when`: strings such as "", "false", "0", "no", "off", "null" are false."""
        if isinstance(value, str):
            return value.strip().lower() not in _FALSY_STRINGS
        return bool(value)

    def cache_info(self) -> TemplateCacheInfo:
        with self._lock:
            return TemplateCacheInfo(self._hits, self._misses, self._cache_size, len(self._cache))

    def _render_tree(self, value: Any, context: Mapping[str, Any], path: Path) -> Any:
        if isinstance(value, str):
            try:
                return self.render_value(value, context)
            except TemplateError as exc:
                if exc.field is None and path:
                    raise TemplateError(exc.message, field=format_path(path)) from exc
                raise
        if isinstance(value, Mapping):
            return {key: self._render_tree(item, context, (*path, str(key))) for key, item in value.items()}
        if isinstance(value, list | tuple):
            rendered = [self._render_tree(item, context, (*path, i)) for i, item in enumerate(value)]
            return rendered if isinstance(value, list) else tuple(rendered)
        return value

    def _render_text(self, compiled: _Compiled, context: Mapping[str, Any]) -> str:
        parts: list[str] = []
        size = 0
        with _template_errors(), rendering(context):
            chunks = cast(Generator[str, None, None], compiled.template.generate(context))
            try:
                # Streamed so a runaway loop stops at the cap instead of after filling memory.
                for chunk in chunks:
                    size += len(chunk)
                    if size > self._max_output_chars:
                        raise TemplateError(
                            f"rendered text is longer than {self._max_output_chars} characters"
                        )
                    parts.append(chunk)
            finally:
                chunks.close()
        return "".join(parts)

    def _compiled(self, source: str) -> _Compiled:
        with self._lock:
            found = self._cache.get(source)
            if found is not None:
                self._cache.move_to_end(source)
                self._hits += 1
                return found
            self._misses += 1
        # Compiled outside the lock: two threads may both compile a new source, which is harmless.
        with _template_errors():
            compiled = _compile(self._env, source)
        with self._lock:
            self._cache[source] = compiled
            self._cache.move_to_end(source)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return compiled


def _compile(env: FlowEnvironment, source: str) -> _Compiled:
    template = env.from_string(source)
    expression_node = _lone_expression(env.parse(source))
    if expression_node is None:
        return _Compiled(template, None)
    # The same shape jinja2's compile_expression builds, from the node we already parsed.
    body = nodes.Template([nodes.Assign(nodes.Name("result", "store"), expression_node)], lineno=1)
    body.set_environment(env)
    return _Compiled(template, TemplateExpression(env.from_string(body), undefined_to_none=False))


def _lone_expression(tree: nodes.Template) -> nodes.Expr | None:
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts = [
        node
        for node in tree.body[0].nodes
        if not (isinstance(node, nodes.TemplateData) and not node.data.strip())
    ]
    if len(parts) != 1 or isinstance(parts[0], nodes.TemplateData):
        return None
    return parts[0]


def _exceeds(value: Any, limit: int) -> bool:
    """Whether a native value is bigger than `limit`, roughly in JSON characters; stops early."""
    budget = limit
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            budget -= len(item) + 2
        elif isinstance(item, Mapping):
            budget -= 2 + len(item)
            stack.extend(item.values())
            stack.extend(key for key in item if isinstance(key, str))
        elif isinstance(item, list | tuple):
            budget -= 2 + len(item)
            stack.extend(item)
        else:
            budget -= 8
        if budget < 0:
            return True
    return False


@contextmanager
def _template_errors() -> Iterator[None]:
    """Turn whatever a template raised into TemplateError with a message a flow author can act on."""
    try:
        yield
    except TemplateError:
        raise
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error at line {exc.lineno}: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise TemplateError(exc.message or type(exc).__name__) from None
    except RecursionError:
        raise TemplateError("template nests too deeply") from None
    except Exception as exc:
        # Templates are user code: a failing filter or operator is the template's error, never a crash.
        raise TemplateError(f"{type(exc).__name__}: {exc}") from exc
