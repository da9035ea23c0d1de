"""The server's log: stdlib `logging` on stderr, as text or one JSON object per line.

Every record carries the context it was written in: `request_id` inside an HTTP request (set by the
request-id middleware), `run_id` inside a run's execution (set by the worker), and `trace_id` (with
`span_id`) when the line is written in a traced span or in a run that has a trace: the current
OpenTelemetry span's ids when one is being recorded, else the run's stored trace id (set with its
`run_id`). They live in context variables, so a task started from a request or a run inherits
them, and a line needs no argument to carry them.

What is logged never includes a secret: no request headers (so no `Authorization`), no request
bodies, no query-string values (see `redacted_query`), no provider settings.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import orjson

request_id_var: ContextVar[str | None] = ContextVar("noukai_request_id", default=None)
run_id_var: ContextVar[str | None] = ContextVar("noukai_run_id", default=None)
trace_id_var: ContextVar[str | None] = ContextVar("noukai_trace_id", default=None)
"""The trace id of the run being executed (from its stored `traceparent`)."""

SpanSource = Callable[[], tuple[str, str] | None]
"""The current span's (trace id, span id) when one is being recorded, else None."""
_span_source: SpanSource | None = None

CONTEXT_FIELDS: Final = ("request_id", "run_id", "trace_id", "span_id")
# The attributes every `LogRecord` has: anything else on a record came from `extra=` and is a
# context field of the line.
_STANDARD: Final = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's message with ANSI colours
}

_PLAIN_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.\[\]-]{0,31}")

QUIET_LOGGERS: Final = ("httpx", "httpx2", "httpcore", "openai", "anthropic", "aiosqlite", "alembic")
"""Third-party loggers kept at WARNING whatever the level: the HTTP clients log every request, the
provider SDKs log request options (headers included) at DEBUG, aiosqlite logs every statement."""


def set_span_source(source: SpanSource | None) -> None:
    """Where the ids of the current span come from (`telemetry.tracing` while tracing is on): the
    log itself knows nothing of OpenTelemetry, and costs nothing more when tracing is off."""
    global _span_source
    _span_source = source


class ContextFilter(logging.Filter):
    """Puts the current request, run and trace ids on every record (None outside of one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        if getattr(record, "run_id", None) is None:
            record.run_id = run_id_var.get()
        if getattr(record, "trace_id", None) is None:
            ids = None if _span_source is None else _span_source()
            if ids is None:
                record.trace_id, record.span_id = trace_id_var.get(), None
            else:
                record.trace_id, record.span_id = ids
        return True


def _ids(record: logging.LogRecord) -> dict[str, Any]:
    """The request, run and trace ids of the record, those that are set."""
    fields = {name: getattr(record, name, None) for name in CONTEXT_FIELDS}
    return {name: value for name, value in fields.items() if value is not None}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's context fields: the ids that are set, then its `extra=` values."""
    fields = _ids(record)
    for name, value in record.__dict__.items():
        if name not in _STANDARD and name not in fields and not name.startswith("_") and value is not None:
            fields[name] = value
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context fields, and `exc`
    (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in _fields(record).items():
            line.setdefault(name, value)
        if record.exc_info:
            line["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            line["exc"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message request_id=... run_id=... trace_id=...`, the traceback on the
    lines after it.
    The `extra=` fields are left to the JSON lines: the text of each message already says them."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        fields = _ids(record)
        return text + "".join(f" {name}={value}" for name, value in fields.items())


def configure(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send every logger's records to `stream` (stderr) at `level`, formatted as `fmt`
    ("text" or "json"). Replaces whatever handlers the root logger had."""
    level = level.lower()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # uvicorn's own lines (startup, shutdown) repeat the banner; its errors still show.
    uvicorn_level = logging.DEBUG if level == "debug" else logging.WARNING
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(uvicorn_level)
    logging.getLogger("uvicorn.access").disabled = True  # replaced by the request-id middleware's


def redacted_query(query: bytes) -> str:
    """A query string with its values elided (`?limit=*&after=*`): the names say what was asked,
    and a value could be a secret someone pasted into a URL (so could a name that does not look
    like one, which is elided too)."""
    if not query:
        return ""
    names = [part.split(b"=", 1)[0].decode("latin-1") for part in query.split(b"&") if part]
    return "?" + "&".join(f"{name}=*" if _plain(name) else "*" for name in names)


def _plain(name: str) -> bool:
    return _PLAIN_NAME.fullmatch(name) is not None and not name.startswith("nk_")
