"""Paths into a flow document (`("steps", 0, "template", "a")`) and how people read them."""

from __future__ import annotations

import re

PathPart = str | int
Path = tuple[PathPart, ...]

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def format_path(path: Path) -> str:
    """`template.greeting[0]`; keys that are not identifiers are quoted: `args["a b"]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += f'["{part}"]'
    return text


def step_reference(step_id: str) -> str:
    """How a template would name a step's entry: `steps.check` or `steps["my-step"]`."""
    return f"steps.{step_id}" if _PLAIN_KEY.match(step_id) else f'steps["{step_id}"]'
