"""Per-request step overrides (the wire's `blockOverrides`) applied to a flow, re-validated as a whole."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from noukai_server.flows._errors import FlowValidationError, OverrideError
from noukai_server.flows._loader import validate_document
from noukai_server.flows._spec import FlowSpec

_MODEL_FIELDS = frozenset({"model", "temperature", "max_tokens", "system", "prompt", "params"})
# What a caller may change per request: how a step talks to its model, never the flow's shape.
OVERRIDABLE: dict[str, frozenset[str]] = {
    "llm": _MODEL_FIELDS,
    "agent": _MODEL_FIELDS,
    "template": frozenset({"template"}),
    "python": frozenset({"args"}),
}
# The wire is camelCase; the flow language is snake_case.
_ALIASES = {"maxTokens": "max_tokens"}


def apply_block_overrides(spec: FlowSpec, overrides: Mapping[str, Mapping[str, Any]]) -> FlowSpec:
    """A new FlowSpec with `{stepId: {field: value}}` applied; OverrideError (INVALID_OVERRIDE) if any is bad.

    A value replaces the field whole (`params` is not merged). No overrides returns `spec` itself.
    """
    if not overrides:
        return spec
    document = spec.to_document()
    positions = {step.id: index for index, step in enumerate(spec.steps)}
    for step_id, fields in overrides.items():
        if step_id not in positions:
            known = ", ".join(positions)
            raise OverrideError(f"blockOverrides: unknown step {step_id!r}; steps: {known}", step_id=step_id)
        if not isinstance(fields, Mapping):
            raise OverrideError(f"blockOverrides for step {step_id!r} must be an object", step_id=step_id)
        step_type = spec.steps[positions[step_id]].type
        allowed = OVERRIDABLE[step_type]
        target = document["steps"][positions[step_id]]
        applied: dict[str, str] = {}
        for key, value in fields.items():
            field = _ALIASES.get(key, key)
            if field not in allowed:
                names = ", ".join(sorted(allowed))
                text = f"field {key!r} cannot be overridden on a {step_type} step; allowed: {names}"
                raise OverrideError(
                    f"blockOverrides for step {step_id!r}: {text}", step_id=step_id, field=key
                )
            if field in applied:
                text = f"{applied[field]!r} and {key!r} both set {field!r}"
                raise OverrideError(
                    f"blockOverrides for step {step_id!r}: {text}", step_id=step_id, field=key
                )
            applied[field] = key
            target[field] = value
    try:
        return validate_document(document)
    except FlowValidationError as exc:
        first = exc.issues[0]
        detail = "; ".join(issue.message for issue in exc.issues)
        raise OverrideError(
            f"invalid blockOverrides: {detail}", step_id=first.step_id, field=first.field
        ) from exc
