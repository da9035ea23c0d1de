"""The names a step's templates can read."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any


def build_context(
    *,
    message: str | None,
    messages: Sequence[Mapping[str, Any]] | None,
    parameters: Mapping[str, Any] | None,
    attachments: Sequence[Any] | None,
    outputs: Mapping[str, Any],
    run: Mapping[str, Any],
    skipped: Collection[str] = (),
) -> dict[str, Any]:
    """Template context for the next step.

    `outputs` maps each earlier step id to its output; `skipped` names earlier steps whose `when` was
    false. Each becomes `steps.<id>` = `{"output": ..., "skipped": bool}`; a skipped step's output is
    None, so `{% if not steps.shape.skipped %}` tells "skipped" from "produced null".
    A foreach step adds `item` and `loop` (`{"index": <0-based>, "length": <items>}`) per item itself.
    Missing messages, parameters or attachments become empty, so loops over them need no guard.
    Values are shared, not copied: templates cannot mutate them (the sandbox is immutable).
    """
    steps: dict[str, dict[str, Any]] = {
        step_id: {"output": output, "skipped": False} for step_id, output in outputs.items()
    }
    for step_id in skipped:
        steps[step_id] = {"output": None, "skipped": True}
    return {
        "message": message,
        "messages": messages if messages is not None else [],
        "parameters": parameters if parameters is not None else {},
        "attachments": attachments if attachments is not None else [],
        "steps": steps,
        "run": run,
    }
