"""What a flow's `trace_capture_mode` lets traces keep of a step's inputs and outputs.

- `off`: nothing (no contexts, no sizes);
- `metadata_only`: sizes only;
- `redacted`: contexts with secrets masked as `[redacted]`: values under keys that look secret
  (`api_key`, `secret`, `token`, `password`, `authorization`, any case and separator), values under
  the flow's `redact_fields`, and secret-looking strings (`sk-...`, `nk_...`, `Bearer ...`)
  wherever they appear inside text;
- `full`: everything.

Pure functions: the engine applies them before a prompt reaches the log, the trace views apply
them again to outputs when they are read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Any

import orjson

REDACTED = "[redacted]"
SECRET_KEY = re.compile(r"(?i)(api[_-]?key|secret|token|password|authorization)")
SECRET_VALUE = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{6,}|nk_[A-Za-z0-9_-]{6,})|(?i:\bbearer\s+[A-Za-z0-9._~+/=-]{6,})"
)

CAPTURES_CONTENT = frozenset({"full", "redacted"})
CAPTURES_SIZES = frozenset({"full", "redacted", "metadata_only"})


def redact(value: Any, fields: Collection[str] = ()) -> Any:
    """`value` with secret-looking entries and the named `fields` masked, at any depth."""
    names = frozenset(name.casefold() for name in fields)
    return _redact(value, names)


def _redact(value: Any, names: frozenset[str]) -> Any:
    if isinstance(value, str):
        return SECRET_VALUE.sub(REDACTED, value)
    if isinstance(value, Mapping):
        return {
            key: REDACTED
            if isinstance(key, str) and (key.casefold() in names or SECRET_KEY.search(key))
            else _redact(item, names)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item, names) for item in value]
    return value


def json_size(value: Any) -> int:
    """Bytes of `value` as compact JSON (how it travels and is stored).

    Never raises: a value orjson cannot write (an integer wider than 64 bits, a set) is measured
    as the standard library writes it, its odd parts as their `str`. Whether the value may be
    stored at all is for the log to decide, and only if the flow's capture mode keeps it."""
    try:
        return len(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
    except orjson.JSONEncodeError:
        pass
    try:
        text = json.dumps(value, default=str, skipkeys=True, ensure_ascii=False, separators=(",", ":"))
    except ValueError:  # a circular reference, an integer of more digits than `str` writes
        return 0
    return len(text.encode("utf-8", "surrogatepass"))


def captured(value: Mapping[str, Any], mode: str, fields: Collection[str] = ()) -> dict[str, Any] | None:
    """What `mode` keeps of a context: None (nothing), or the context, redacted if asked."""
    if mode not in CAPTURES_CONTENT:
        return None
    if mode == "redacted":
        redacted: dict[str, Any] = redact(value, fields)
        return redacted
    return dict(value)


def truncate(context: dict[str, Any], max_bytes: int) -> tuple[dict[str, Any], bool]:
    """`context` cut to at most about `max_bytes` of JSON: `(context, truncated)`.

    Long strings are shortened first (keeping the structure readable); if the structure itself is
    too big, a `preview` of its JSON text stands in for it.
    """
    if json_size(context) <= max_bytes:
        return context, False
    low, high = 0, max_bytes
    best: dict[str, Any] | None = None
    while low <= high:  # the longest string cap that fits
        middle = (low + high) // 2
        candidate = _cut_strings(context, middle)
        if json_size(candidate) <= max_bytes:
            best, low = candidate, middle + 1
        else:
            high = middle - 1
    if best is not None and low > 16:
        return best, True
    text = orjson.dumps(context, option=orjson.OPT_NON_STR_KEYS).decode()
    length = max_bytes
    while True:  # escaping can make the preview longer than its text: shrink until it fits
        preview = {"preview": text[:length]}
        over = json_size(preview) - max_bytes
        if over <= 0 or length == 0:
            return preview, True
        length = max(0, length - max(over, 1))


def _cut_strings(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + "…"
    if isinstance(value, Mapping):
        return {key: _cut_strings(item, limit) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_cut_strings(item, limit) for item in value]
    return value
