"""The OpenAPI description of stream events, generated from the payload schema in
`noukai.types.events` (the TypedDicts the engine writes and the SDK's models mirror).

Each event's `data` is described as one of the `<Name>Payload` schemas, told apart by `eventType`;
the payloads and the shapes nested in them become components of the document. Field descriptions
are the TypedDicts' attribute docstrings, read from the module's source once: pydantic reads only a
class's own attribute docstrings, and most fields are declared on shared bases (`StepRef`, ...).
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Mapping
from functools import cache
from typing import Any, Final, Union

from pydantic import TypeAdapter

from noukai.types import events

REF_TEMPLATE: Final = "#/components/schemas/{model}"


@cache
def event_components() -> dict[str, Any]:
    """Component schemas: every event payload and every shape nested in one, by name."""
    union: Any = Union[tuple(events.EVENT_PAYLOADS.values())]  # noqa: UP007 - built at run time
    document = TypeAdapter(union).json_schema(ref_template=REF_TEMPLATE, mode="serialization")
    components: dict[str, Any] = document["$defs"]
    docs = _field_docstrings()
    for name, schema in components.items():
        for key, field_schema in schema.get("properties", {}).items():
            field_schema.pop("title", None)  # "Stepid": noise beside the key itself
            text = docs.get(name, {}).get(key)
            if text and "description" not in field_schema:
                field_schema["description"] = text
    return components


def event_data_schema() -> dict[str, Any]:
    """The schema of one event's `data`: one of the payloads, chosen by `eventType`."""
    mapping = {
        wire_name: REF_TEMPLATE.format(model=payload.__name__)
        for wire_name, payload in events.EVENT_PAYLOADS.items()
    }
    return {
        "oneOf": [{"$ref": ref} for ref in mapping.values()],
        "discriminator": {"propertyName": "eventType", "mapping": mapping},
    }


def _field_docstrings() -> Mapping[str, Mapping[str, str]]:
    """`{class name: {key: docstring}}` for every TypedDict of the module, its bases' keys included."""
    tree = ast.parse(inspect.getsource(events))
    own: dict[str, dict[str, str]] = {}
    bases: dict[str, list[str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        bases[node.name] = [b.id for b in node.bases if isinstance(b, ast.Name)]
        found = own[node.name] = {}
        for item, following in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(item, ast.AnnAssign)
                and isinstance(item.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                found[item.target.id] = inspect.cleandoc(following.value.value)

    def merged(name: str) -> dict[str, str]:
        result: dict[str, str] = {}
        for base in bases.get(name, []):
            result.update(merged(base))
        result.update(own.get(name, {}))
        return result

    return {name: merged(name) for name in own}
