"""Flow source text (YAML or JSON) to plain data, plus the line each key or item starts on."""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from noukai_server.flows._errors import FlowIssue, FlowValidationError
from noukai_server.flows._paths import Path

MAX_SOURCE_BYTES = 1024 * 1024
# YAML aliases can make a small document expand enormously; flows never need this many values.
MAX_VALUES = 100_000
MAX_DEPTH = 64
MAX_NESTING = MAX_DEPTH
"""How deep a flow document may nest (public name of MAX_DEPTH)."""

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_BOOL_TAG = "tag:yaml.org,2002:bool"


class _FlowLoader(yaml.SafeLoader):
    """Safe YAML minus three traps: silent duplicate keys, implicit dates (`2024-01-01` stays text)
    and YAML 1.1 booleans (`on`, `no`, `yes` stay text; only true/false are booleans, as in JSON).
    """

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_TIMESTAMP_TAG, _BOOL_TAG)]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep)


_FlowLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass
class ParsedSource:
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)


def _fail(message: str, *, line: int | None = None, filename: str | None = None) -> FlowValidationError:
    return FlowValidationError("INVALID_TREE", [FlowIssue(message, line=line)], filename=filename)


def parse_source(source: str | bytes | Mapping[str, Any], *, filename: str | None = None) -> ParsedSource:
    """Parse a flow document; FlowValidationError (INVALID_TREE) with the position when it is not one."""
    if isinstance(source, Mapping):
        parsed = ParsedSource(dict(source))
    else:
        text = _decode(source, filename)
        is_json = filename is not None and filename.lower().endswith(".json")
        parsed = _parse_json(text, filename) if is_json else _parse_yaml(text, filename)
    problem = _size_problem(parsed.data)
    if problem:
        raise _fail(problem, filename=filename)
    return parsed


def _decode(source: str | bytes, filename: str | None) -> str:
    size = len(source) if isinstance(source, bytes) else len(source.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        raise _fail(f"flow document is larger than {MAX_SOURCE_BYTES} bytes", filename=filename)
    if isinstance(source, str):
        text = source
    else:
        try:
            text = source.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _fail(f"flow document is not valid UTF-8 (byte {exc.start})", filename=filename) from None
    if bracket_depth_exceeds(text.encode("utf-8", "surrogatepass"), MAX_DEPTH):
        raise _fail(f"flow document nests deeper than {MAX_DEPTH} levels", filename=filename)
    return text


_PARENTHESES = bytes.maketrans(b"[]{}", b"()()")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def nests_too_deep(document: bytes) -> bool:
    """Whether a flow document's brackets nest deeper than MAX_NESTING (`bracket_depth_exceeds`)."""
    return bracket_depth_exceeds(document, MAX_DEPTH)


def bracket_depth_exceeds(document: bytes, limit: int) -> bool:
    """Whether `[`/`{` nest more than `limit` deep in `document`, told in a few C-speed passes
    before any parser sees it (PyYAML spends about a second on 200 KB of `[[[[`, in pure Python).

    Every bracket counts, quoted or not (telling YAML's scalars apart needs its parser), so a text
    with more than `limit` unclosed brackets is refused too: no flow needs that.
    """
    brackets = document.translate(_PARENTHESES, _NOT_BRACKETS)
    too_deep = b"(" * (limit + 1)
    # Each pass removes the innermost pair of every group, so `limit` passes empty any group that
    # nests at most `limit` deep; a run of `limit + 1` opening brackets settles it at once.
    for _ in range(limit):
        if too_deep in brackets:
            return True
        shorter = brackets.replace(b"()", b"")
        if len(shorter) == len(brackets):
            break
        brackets = shorter
    # What is left is `)))(((` (unclosed brackets nest too), or a group deeper than `limit`.
    return b"()" in brackets or brackets.count(b"(") > limit


def _load_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    loader = _FlowLoader(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def _parse_yaml(text: str, filename: str | None) -> ParsedSource:
    try:
        node, data = _load_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "malformed document"
        if exc.problem and exc.context and exc.context.startswith("expected"):
            # The composer's "expected a single document" is the useful half of its message.
            what = f"{exc.context}, {exc.problem}"
        if mark is None:
            raise _fail(f"invalid YAML: {what}", filename=filename) from None
        line = mark.line + 1
        raise _fail(
            f"invalid YAML at line {line}, column {mark.column + 1}: {what}", line=line, filename=filename
        ) from None
    except yaml.YAMLError as exc:
        raise _fail(f"invalid YAML: {exc}", filename=filename) from None
    except RecursionError:
        raise _fail("flow document nests too deeply", filename=filename) from None
    return ParsedSource(data, _line_map(node) if node is not None else {})


def _parse_json(text: str, filename: str | None) -> ParsedSource:
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise _fail(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            line=exc.lineno,
            filename=filename,
        ) from None
    except ValueError as exc:
        raise _fail(f"invalid JSON: {exc}", filename=filename) from None
    except RecursionError:
        raise _fail("flow document nests too deeply", filename=filename) from None
    # JSON is YAML's flow style, so YAML's composer can still tell where each key is (best effort).
    try:
        node = yaml.compose(text, Loader=_FlowLoader)
    except (yaml.YAMLError, RecursionError):
        node = None
    return ParsedSource(data, _line_map(node) if node is not None else {})


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"duplicate key {key!r}")
        document[key] = value
    return document


def _line_map(root: yaml.Node) -> dict[Path, int]:
    lines: dict[Path, int] = {(): root.start_mark.line + 1}
    stack: list[tuple[Path, yaml.Node]] = [((), root)]
    budget = MAX_VALUES
    while stack and budget > 0:
        path, node = stack.pop()
        budget -= 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    child = (*path, key_node.value)
                    lines[child] = key_node.start_mark.line + 1
                    stack.append((child, value_node))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = (*path, index)
                lines[child] = item.start_mark.line + 1
                stack.append((child, item))
    return lines


def _size_problem(data: Any) -> str | None:
    stack: list[tuple[Any, int]] = [(data, 0)]
    count = 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            return f"flow document holds more than {MAX_VALUES} values (after expanding YAML aliases)"
        if depth > MAX_DEPTH:
            return f"flow document nests deeper than {MAX_DEPTH} levels"
        if isinstance(value, Mapping):
            stack.extend((child, depth + 1) for child in value.values())
        elif isinstance(value, list | tuple):
            stack.extend((child, depth + 1) for child in value)
    return None
