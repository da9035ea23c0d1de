"""What `noukai runs` prints, and how it reads its option values: pure functions (no I/O), so the
commands in `runs_cmd.py` only fetch and print.

Human output is rich tables and `label  value` lines; `--json` output is the SDK models dumped as
the API spells them (camelCase), so a script reads the same names as the HTTP API documents.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from rich.console import Console
from rich.table import Table

from noukai import RunInfo, StepTrace, StreamEvent
from noukai_server.cli.run import UsageError, wire_payload

_AGO = re.compile(r"([1-9][0-9]{0,6})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_EVENT_DETAIL_KEYS = (
    "stepId",
    "attempt",
    "loopIndex",
    "name",
    "nextAttempt",
    "backoffMs",
    "code",
    "message",
    "delta",
    "outputData",
)
"""The payload fields an event's line shows (when present), in this order."""
_DETAIL_WIDTH = 80


# -- reading option values ---------------------------------------------------------------------


def parse_when(option: str, text: str, now: datetime) -> datetime:
    """`--since` / `--until`: an ISO 8601 time (UTC without a zone), or a time ago: `90m`, `2h`,
    `7d` (a whole number and one unit of s, m, h, d, w)."""
    value = text.strip()
    ago = _AGO.fullmatch(value)
    if ago is not None:
        return now - timedelta(seconds=int(ago.group(1)) * _UNIT_SECONDS[ago.group(2)])
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: write an ISO 8601 time (2026-12-01T09:00:00Z) or a time ago (90m, 2h, 7d)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def parse_metadata(items: Iterable[str]) -> dict[str, str]:
    """`--metadata k=v` (repeatable) as a mapping; the value may contain `=`, the key may not be
    empty. The server checks the keys' characters and the sizes."""
    tags: dict[str, str] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise UsageError(f"--metadata {item!r} is not KEY=VALUE")
        tags[key.strip()] = value
    return tags


def parse_statuses(items: Iterable[str]) -> list[str]:
    """`--status failed --status cancelled` or `--status failed,cancelled`."""
    statuses = [one.strip() for item in items for one in item.split(",")]
    if any(not one for one in statuses):
        raise UsageError("--status: an empty status (write --status failed,cancelled)")
    return statuses


def parse_step(text: str) -> str | int:
    """`--from-step`: a 0-based step index when it is a whole number, else a step id."""
    value = text.strip()
    if not value:
        raise UsageError("--from-step needs a step id or a 0-based step index")
    return int(value) if value.isdigit() else value


# -- shared cells ------------------------------------------------------------------------------


def instant(value: datetime | None) -> str:
    """UTC, to the second: the list is read by eye; `--json` keeps the full precision."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    minutes, seconds = divmod(ms // 1000, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def version_cell(version: int | None) -> str:
    if version is None:
        return "-"
    return "draft" if version == 0 else str(version)


def flow_name(run: RunInfo) -> str:
    if run.org and run.project and run.flow:
        return f"{run.org}/{run.project}/{run.flow}"
    return run.flow or run.flow_id or "-"


def error_text(error: Any) -> str | None:
    """A run's or a step's error (`{"code", "message", "stepId"?}`, or a string) on one line."""
    if error is None:
        return None
    if isinstance(error, Mapping):
        code, message = error.get("code"), error.get("message")
        text = ": ".join(str(part) for part in (code, message) if part)
        step = error.get("stepId")
        return (text or "error") + (f" (step {step})" if step else "")
    return " ".join(str(error).split())


# -- runs list ---------------------------------------------------------------------------------


def runs_table(runs: Sequence[RunInfo]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("ID", "FLOW", "VERSION", "STATUS", "TRIGGER", "CREATED", "DURATION"):
        table.add_column(name, no_wrap=True)
    for run in runs:
        table.add_row(
            run.execution_id,
            flow_name(run),
            version_cell(run.flow_version),
            run.status + (" (cancelling)" if run.cancel_requested and not run.terminal else ""),
            run.trigger_type or "-",
            instant(run.created_at),
            duration(run.duration_ms),
        )
    return table


def render(table: Table, *, width: int | None) -> str:
    """The table as text, without the padding rich leaves at the end of lines; `width` None: the
    terminal's."""
    console = Console(width=width, highlight=False, soft_wrap=True, file=io.StringIO())
    with console.capture() as captured:
        console.print(table)
    return "\n".join(line.rstrip() for line in captured.get().splitlines())


def run_json(run: RunInfo) -> dict[str, Any]:
    body: dict[str, Any] = run.model_dump(mode="json", by_alias=True)
    return body


# -- runs show ---------------------------------------------------------------------------------


def run_lines(run: RunInfo) -> list[tuple[str, str]]:
    """`runs show`'s header: one (label, value) per line, the unset ones left out."""
    status = run.status + (" (cancel requested)" if run.cancel_requested and not run.terminal else "")
    lines = [
        ("run", run.execution_id),
        ("flow", f"{flow_name(run)} (version {version_cell(run.flow_version)})"),
        ("status", status),
        ("trigger", run.trigger_type or "-"),
        ("created", instant(run.created_at)),
        ("started", instant(run.started_at)),
        ("completed", instant(run.completed_at)),
        ("duration", duration(run.duration_ms)),
    ]
    optional = [
        ("error", error_text(run.error)),
        ("attempt", str(run.attempt) if run.attempt > 1 else None),
        ("session", run.session_id),
        ("thread", run.thread_id),
        ("metadata", ", ".join(f"{k}={v}" for k, v in sorted(run.metadata.items())) or None),
        ("trace id", run.trace_id),
        (
            "rerun of",
            run.rerun_of
            and run.rerun_of + (f" (from step {run.rerun_from_step})" if run.rerun_from_step else ""),
        ),
    ]
    return lines + [(label, value) for label, value in optional if value]


def steps_table(attempts: Sequence[StepTrace]) -> Table:
    """Every attempt of every step, in order, with a total row for tokens and cost."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("STEP", "ATTEMPT", "STATUS", "DURATION", "MODEL", "TOKENS IN/OUT", "COST USD", "ERROR"):
        table.add_column(name, no_wrap=name != "ERROR")
    prompt = completion = 0
    cost = Decimal(0)
    for step in attempts:
        tokens = step.tokens
        if tokens is not None:
            prompt, completion = prompt + tokens.prompt, completion + tokens.completion
        cost += _decimal(step.cost_usd)
        table.add_row(
            step.step_id + (f"[{step.loop_index}]" if step.loop_index is not None else ""),
            str(step.attempt),
            step.status,
            duration(step.duration_ms),
            step.model_used or "-",
            f"{tokens.prompt}/{tokens.completion}" if tokens is not None else "-",
            step.cost_usd or "-",
            error_text(step.error_context) or "",
        )
    table.add_section()
    table.add_row("total", "", "", "", "", f"{prompt}/{completion}", f"{cost:f}", "")
    return table


def _decimal(text: str | None) -> Decimal:
    try:
        return Decimal(text) if text else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


# -- runs tail ---------------------------------------------------------------------------------


def event_json(event: StreamEvent) -> dict[str, Any]:
    """The event as the server sent it, with its `seq` (what `--since-seq` resumes after)."""
    return {"seq": event.seq, **wire_payload(event)}


def event_line(event: StreamEvent) -> str:
    """One line per event: its seq, its type, and the few fields that say what happened."""
    payload = wire_payload(event)
    kind = str(payload.get("eventType", event.type))
    details = []
    for key in _EVENT_DETAIL_KEYS:
        value = payload.get(key)
        if value is None or value == "":
            continue
        if isinstance(payload.get("error"), Mapping) and key in ("code", "message"):
            continue
        details.append(f"{key}={_short(value)}")
    error = payload.get("error")
    if isinstance(error, Mapping):
        details.append(f"error={_short(error_text(error))}")
    seq = "-" if event.seq is None else str(event.seq)
    return f"{seq:>6}  {kind:<28} {' '.join(details)}".rstrip()


def _short(value: Any) -> str:
    raw = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(raw.split())
    return text if len(text) <= _DETAIL_WIDTH else text[: _DETAIL_WIDTH - 1] + "…"
