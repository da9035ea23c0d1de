"""The names under which the model sees an MCP server's tools: `SERVER__tool`.

Model APIs accept function names of 1-64 letters, digits, `_` and `-` (`TOOL_NAME`); MCP tool
names are freer (dots, slashes, longer). So other characters become `_`, and a name still too
long keeps its start plus a short hash of the full name, which keeps it stable and distinct.
"""

from __future__ import annotations

import hashlib
import re

SEPARATOR = "__"
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_-]")
_MAX = 64


def model_tool_name(server: str, tool: str) -> str:
    full = f"{server}{SEPARATOR}{tool}"
    name = _NOT_ALLOWED.sub("_", full)
    if len(name) <= _MAX:
        return name
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{name[: _MAX - len(digest) - 1]}_{digest}"
