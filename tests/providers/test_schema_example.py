from __future__ import annotations

from typing import Any

import pytest

from noukai_server.providers._schema_example import example_for_schema


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string"}, "a"),
        ({"type": "integer"}, 0),
        ({"type": "number"}, 0.0),
        ({"type": "boolean"}, False),
        ({"type": "array", "items": {"type": "string"}}, []),
        ({"type": "null"}, None),
        ({"type": ["null", "integer"]}, 0),
        ({"type": ["null"]}, None),
        ({"enum": ["b", "c"]}, "b"),
        ({"const": 7}, 7),
        ({"type": "string", "default": "hi"}, "hi"),
        ({"type": "object", "properties": {"x": {"type": "integer", "default": 5}}}, {"x": 5}),
        ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, 0),
        ({"oneOf": [{"type": "boolean"}]}, False),
        ({"allOf": [{"type": "string"}]}, "a"),
        ({}, None),
        ({"type": "mystery"}, None),
    ],
)
def test_simple_schemas(schema: dict[str, Any], expected: Any) -> None:
    assert example_for_schema(schema) == expected


def test_objects_fill_required_and_optional_properties_recursively() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "address": {"properties": {"zip": {"type": "integer"}, "tags": {"type": "array"}}},
        },
        "required": ["name"],
    }
    assert example_for_schema(schema) == {"name": "a", "address": {"zip": 0, "tags": []}}


def test_local_refs_are_resolved() -> None:
    schema = {
        "type": "object",
        "properties": {"point": {"$ref": "#/$defs/Point"}},
        "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "number"}}}},
    }
    assert example_for_schema(schema) == {"point": {"x": 0.0}}


@pytest.mark.parametrize("ref", ["#/$defs/Missing", "https://example.com/schema.json", "#/$defs/Point/x"])
def test_unresolvable_refs_become_null(ref: str) -> None:
    schema = {"type": "object", "properties": {"p": {"$ref": ref}}, "$defs": {"Point": {"x": 1}}}
    assert example_for_schema(schema) == {"p": None}


def test_self_referencing_schemas_terminate() -> None:
    schema = {
        "$ref": "#/$defs/Node",
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
    }
    value = example_for_schema(schema)
    depth = 0
    while isinstance(value, dict):
        value = value["next"]
        depth += 1
    assert value is None
    assert depth > 5


def test_non_dict_property_schemas_are_tolerated() -> None:
    assert example_for_schema({"type": "object", "properties": {"x": True}}) == {"x": None}
