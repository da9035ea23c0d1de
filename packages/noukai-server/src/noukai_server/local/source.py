"""A flow source as the caller gives it (a file path, YAML or JSON text, or a dict) to a checked
`FlowSpec`, refused with the same `FlowValidationError` (code `INVALID_TREE` or `NO_STEPS`, every
issue located) that a push of the same document to `noukai serve` answers with."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from noukai_server.flows import FlowIssue, FlowSpec, FlowValidationError, load_flow

FlowSource = str | os.PathLike[str] | Mapping[str, Any]
"""A path (`Path`, or a one-line string ending in .yaml, .yml or .json), a flow document's text,
or its parsed data."""

_FILE_SUFFIXES = (".yaml", ".yml", ".json")


def names_a_file(source: str) -> bool:
    """A string is a path when it is one line ending in a flow file's suffix; any other string is
    the document itself (a flow document is never one line ending in `.yaml`)."""
    text = source.strip()
    return "\n" not in text and text.lower().endswith(_FILE_SUFFIXES)


def read_flow(source: object, checks: Mapping[str, Any]) -> FlowSpec:
    """The checked spec of `source`; `checks` are `flows.load_flow`'s known_* arguments."""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and names_a_file(source)):
        path = Path(os.fspath(source)).expanduser()
        try:
            content = path.read_bytes()
        except OSError as exc:
            issue = FlowIssue(f"cannot read flow file: {exc.strerror or exc}")
            raise FlowValidationError("INVALID_TREE", [issue], filename=str(path)) from exc
        return load_flow(content, filename=str(path), **checks)
    if isinstance(source, str | Mapping):
        return load_flow(source, **checks)
    raise TypeError(f"a flow source is a path, a YAML or JSON string or a dict; got {type(source).__name__}")
