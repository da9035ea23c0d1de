"""A deterministic example value for a JSON schema: what `builtin:test` passes as tool arguments.

The value is the simplest one that validates against common schemas (every property filled in,
required or not), so a tool registered with a schema can be exercised without a real model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Deep or self-referencing schemas ($ref cycles) stop here instead of recursing forever.
_MAX_DEPTH = 32

_SCALARS: Mapping[str, Any] = {
    "string": "a",
    "integer": 0,
    "number": 0.0,
    "boolean": False,
    "null": None,
}


def example_for_schema(schema: Mapping[str, Any]) -> Any:
    """An example instance of `schema` (a JSON schema dict, `$defs` references resolved)."""
    return _example(schema, schema, 0)


def _resolve_ref(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    # Only local references ("#/$defs/Name") occur in tool schemas; anything else is treated as
    # an unconstrained value rather than fetched.
    if not ref.startswith("#/"):
        return {}
    node: Any = root
    for part in ref[2:].split("/"):
        if not isinstance(node, Mapping) or part not in node:
            return {}
        node = node[part]
    return node if isinstance(node, Mapping) else {}


def _schema_type(schema: Mapping[str, Any]) -> str | None:
    declared = schema.get("type")
    if isinstance(declared, list):
        # ["string", "null"]: prefer the non-null type, since None says little about a tool.
        non_null = [t for t in declared if t != "null"]
        declared = non_null[0] if non_null else "null"
    if isinstance(declared, str):
        return declared
    if "properties" in schema:
        return "object"
    return None


def _example(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return None
    if "default" in schema:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _example(_resolve_ref(ref, root), root, depth + 1)
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options and isinstance(options[0], Mapping):
            return _example(options[0], root, depth + 1)
    kind = _schema_type(schema)
    if kind == "object":
        properties = schema.get("properties") or {}
        return {
            name: _example(sub if isinstance(sub, Mapping) else {}, root, depth + 1)
            for name, sub in properties.items()
        }
    if kind == "array":
        return []
    if kind is not None and kind in _SCALARS:
        return _SCALARS[kind]
    return None
