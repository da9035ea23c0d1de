"""Rendering flow templates: text, native values and nested structures, with a compiled-template LRU."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar, cast

import jinja2
from jinja2 import Undefined, nodes
from jinja2.environment import Template, TemplateExpression

from noukai_server.flows._deadline import RenderPool
from noukai_server.flows._environment import DEFAULT_MAX_OUTPUT_CHARS, FlowEnvironment, rendering
from noukai_server.flows._errors import TemplateError
from noukai_server.flows._paths import Path, format_path

DEFAULT_TEMPLATE_SECONDS = 5.0
_FALSY_STRINGS = frozenset({"", "false", "0", "no", "off", "none", "null"})
T = TypeVar("T")

# A template made only of these nodes costs time linear in the size of the values it reads: no
# loop, no call, no arithmetic. Such a template is rendered right on the event loop (most prompts
# are `Hello {{ parameters.name }}`), every other one on a render thread with a deadline.
_CHEAP_NODES = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Name,
    nodes.Getattr,
    nodes.Getitem,
    nodes.Const,
    nodes.Filter,
    nodes.Test,
    nodes.CondExpr,
    nodes.Compare,
    nodes.Operand,
    nodes.And,
    nodes.Or,
    nodes.Not,
    nodes.Concat,
    nodes.If,
    nodes.Assign,
)
_CHEAP_FILTERS = frozenset(
    {
        "default",
        "d",
        "lower",
        "upper",
        "trim",
        "length",
        "count",
        "first",
        "last",
        "capitalize",
        "tojson",
        "string",
        "int",
        "float",
        "abs",
    }
)


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
    # Provably fast whatever the data (see _CHEAP_NODES): safe to render on the event loop.
    cheap: bool


class TemplateEngine:
    """Compiles and renders flow templates; safe to share between threads and runs.

    The `render_*` methods run on the calling thread; the `render_*_async` ones, for the event
    loop, run a template on a render thread unless it is provably cheap (see `_CHEAP_NODES`),
    and fail with TemplateError once it runs past `template_seconds` (the template checks its
    deadline itself, see `_deadline`).
    """

    def __init__(
        self,
        *,
        cache_size: int = 512,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        template_seconds: float = DEFAULT_TEMPLATE_SECONDS,
    ) -> None:
        if cache_size < 1 or max_output_chars < 1 or template_seconds <= 0:
            raise ValueError("cache_size, max_output_chars and template_seconds must be positive")
        self.template_seconds = template_seconds
        self._render_pool: RenderPool | None = None
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

    async def render_text_async(self, source: str, context: Mapping[str, Any]) -> str:
        """render_text, off the event loop with a deadline unless the template is cheap."""
        return await self._bounded((source,), lambda: self.render_text(source, context))

    async def render_value_async(self, source: str, context: Mapping[str, Any]) -> Any:
        """render_value, off the event loop with a deadline unless the template is cheap."""
        return await self._bounded((source,), lambda: self.render_value(source, context))

    async def render_structure_async(self, value: Any, context: Mapping[str, Any]) -> Any:
        """render_structure in one hop off the event loop, unless every template in it is cheap.
        The deadline covers the whole structure."""
        return await self._bounded(_leaves(value), lambda: self.render_structure(value, context))

    def is_cheap(self, source: str) -> bool:
        """Whether `source` is compiled already and provably cheap to render (see _CHEAP_NODES)."""
        with self._lock:
            found = self._cache.get(source)
        return found is not None and found.cheap

    async def _bounded(self, sources: Iterable[str], render: Callable[[], T]) -> T:
        if all(self.is_cheap(source) for source in sources):
            return render()
        # A cancelled step (its timeout, a cancel) stops the render at its next tick.
        return await self._pool().run(render)

    def _pool(self) -> RenderPool:
        with self._lock:
            if self._render_pool is None:
                self._render_pool = RenderPool(self.template_seconds)
            return self._render_pool

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
    tree = env.parse(source)
    cheap = _is_cheap(tree)
    expression_node = _lone_expression(tree)
    if expression_node is None:
        return _Compiled(template, None, cheap)
    # The same shape jinja2's compile_expression builds, from the node we already parsed.
    body = nodes.Template([nodes.Assign(nodes.Name("result", "store"), expression_node)], lineno=1)
    body.set_environment(env)
    return _Compiled(template, TemplateExpression(env.from_string(body), undefined_to_none=False), cheap)


def _is_cheap(tree: nodes.Template) -> bool:
    for node in (tree, *tree.find_all(nodes.Node)):
        if type(node) not in _CHEAP_NODES:
            return False
        if isinstance(node, nodes.Filter) and node.name not in _CHEAP_FILTERS:
            return False
    return True


def _leaves(value: Any) -> list[str]:
    """Every string in a nested structure (the templates render_structure would render)."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return found


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
