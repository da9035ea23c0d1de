"""`noukai run ORG/PROJECT/SLUG [-m TEXT]`: run a flow on a server and follow its events.

The command is a client of the `noukai` SDK: it starts the run with `Flow.events(run_remaining=True)`
(the step protocol, whose answer is an SSE stream of the run's events) and shows the SDK's typed
events. A dropped connection is resumed from the run's log by the SDK, so every event is shown
once, in order. `noukai run --attach EXECUTION_ID` follows a run already started, from the start
of its log.

What goes where:
* on a terminal, the run as it happens: text deltas on stdout, progress (steps, tool calls,
  retries) and the closing summary table on stderr, and the flow's result on stdout at the end;
* when stdout is not a terminal (a pipe, a file), stdout gets the result alone, so
  `noukai run ... > out.txt` or `| jq` reads one clean value; progress stays on stderr;
* `--result-only`: the result on stdout and nothing on stderr but errors;
* `--json`: each event's wire payload as one compact JSON object per line, nothing else on stdout.

Ctrl-C stops following, never the run by itself: on a terminal the command asks whether to cancel
the run on the server; otherwise (or when declined) it prints the command that reattaches.

Exit codes: 0 when the flow completed, 1 when the run failed (or was cancelled, paused or cut
short) or the server could not be reached or refused the request, 2 for a bad command line, 130
after Ctrl-C.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, NoReturn, Protocol, TextIO

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from noukai import (
    APIConnectionError,
    APITimeoutError,
    FlowCompleted,
    Noukai,
    NoukaiError,
    RunCancelled,
    RunFailed,
    RunStarted,
    StepCompleted,
    StepFailed,
    StepOutput,
    StepPaused,
    StepProgress,
    StepReasoning,
    StepRetrying,
    StepStarted,
    StreamEvent,
    ToolCallCompleted,
    ToolCallsRequired,
    ToolCallStarted,
    UnknownEvent,
)
from noukai.types import API_PREFIX
from noukai.types import events as ev
from noukai_server.cli.interrupts import OutputGate

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
REQUEST_TIMEOUT = 120.0
"""Seconds for one HTTP call; streams are watched by the SDK's heartbeat rule instead."""
MAX_RETRIES = 1
"""Retries of a refused or failed request before the run started (the SDK's default)."""


# --- command-line values -----------------------------------------------------------------------


class UsageError(Exception):
    """A bad command line: reported as `error: ...` with exit code 2."""


def _reject_constant(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity are not JSON: keep such values as strings


def parse_param_value(text: str) -> Any:
    """JSON when `text` parses as JSON (`3`, `true`, `[1, 2]`, `{}`, `"quoted"`), else the text."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text


def parse_params(items: Iterable[str]) -> dict[str, Any]:
    """`k=v` pairs into a dict (flat keys; the last of a repeated key wins)."""
    params: dict[str, Any] = {}
    for item in items:
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not key:
            raise UsageError(f"--param {item!r} is not KEY=VALUE")
        params[key] = parse_param_value(value)
    return params


def parse_target(target: str) -> tuple[str, str, str]:
    parts = target.strip("/").split("/")
    if len(parts) != 3 or not all(parts):
        raise UsageError(f"{target!r} is not ORG/PROJECT/SLUG")
    return parts[0], parts[1], parts[2]


def api_root(url: str) -> str:
    """The API root for a server URL given as its root or as its `/api/v1` root."""
    root = url.strip().rstrip("/")
    if not root:
        raise UsageError("the server URL is empty")
    return root.removesuffix(API_PREFIX) + API_PREFIX


# --- the events as the wire carries them -------------------------------------------------------

_WIRE_NAMES = {"tool_calls_required": ev.STEP_PAUSED_FOR_TOOL_CALLS}
"""The SDK's `.type` names that differ from the wire's event names."""


def wire_payload(event: StreamEvent) -> dict[str, Any]:
    """The event's JSON payload as the server sent it: the fields it carried (known and unknown,
    camelCase), `eventType` first and named as on the wire."""
    if isinstance(event, UnknownEvent):
        if isinstance(event.data, dict):
            return {"eventType": event.type, **event.data}
        return {"eventType": event.type, "data": event.data}
    body = event.model_dump(mode="json", by_alias=True, exclude_unset=True)
    body.pop("eventType", None)
    return {"eventType": _WIRE_NAMES.get(event.type, event.type), **body}


# --- showing a run -----------------------------------------------------------------------------


class RunFailure(Exception):
    """Ends the command with exit code 1 after printing `error: <message>`."""


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        if code and message:
            return f"{code}: {message}"
        if code or message:
            return str(code or message)
    return "unknown error" if error is None else str(error)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _cost(value: Any) -> Decimal:
    try:
        return Decimal(str(value)) if value is not None else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def _duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m {rest:02.0f}s"


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class StepRow:
    step_id: str
    name: str | None = None
    type: str = ""
    status: str = "running"
    duration_ms: int | None = None
    prompt: int = 0
    completion: int = 0
    total: int = 0
    cost: Decimal = field(default_factory=Decimal)


class View(Protocol):
    def event(self, event: StreamEvent) -> None: ...

    def error(self, text: str) -> None: ...

    def note(self, text: str) -> None: ...

    def finish(self, event: StreamEvent | None) -> None: ...


class GatedView:
    """A view whose every output is one stretch of `gate.writing()`: Ctrl-C waits for it to end."""

    def __init__(self, view: View, gate: OutputGate) -> None:
        self._view, self._gate = view, gate

    def event(self, event: StreamEvent) -> None:
        with self._gate.writing():
            self._view.event(event)

    def error(self, text: str) -> None:
        with self._gate.writing():
            self._view.error(text)

    def note(self, text: str) -> None:
        with self._gate.writing():
            self._view.note(text)

    def finish(self, event: StreamEvent | None) -> None:
        with self._gate.writing():
            self._view.finish(event)


class JsonView:
    """Each event's wire payload on stdout, one compact JSON object per line; errors on stderr."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self._out, self._err = out, err

    def event(self, event: StreamEvent) -> None:
        line = json.dumps(wire_payload(event), ensure_ascii=False, separators=(",", ":"))
        self._out.write(line + "\n")
        self._out.flush()

    def error(self, text: str) -> None:
        self._err.write(f"error: {text}\n")
        self._err.flush()

    def note(self, text: str) -> None:
        self._err.write(text + "\n")
        self._err.flush()

    def finish(self, event: StreamEvent | None) -> None:
        pass


class HumanView:
    """Deltas and the result on stdout; progress, the summary table and errors on stderr.

    `deltas=False`: stdout gets the result alone (for pipes); `progress=False`: stderr gets errors
    alone (`--result-only`)."""

    def __init__(self, out: TextIO, err: Console, *, deltas: bool = True, progress: bool = True) -> None:
        self._out, self._err = out, err
        self._deltas, self._progress = deltas, progress
        self._rows: dict[str, StepRow] = {}
        self._execution_id: str | None = None
        self._summary: dict[str, Any] | None = None
        self._out_open = False  # stdout has a delta line not ended yet
        self._err_open = False  # stderr has a reasoning line not ended yet
        self._started = time.monotonic()

    # Deltas leave lines open on one stream; end them before writing on the other.
    def _line(self, renderable: Text | Table, *, always: bool = False) -> None:
        if not (self._progress or always):
            return
        if self._out_open:
            self._out.write("\n")
            self._out.flush()
            self._out_open = False
        if self._err_open:
            self._err.print()
            self._err_open = False
        # Text is never hard-wrapped, so messages stay whole on one line (and greppable).
        self._err.print(renderable, highlight=False, soft_wrap=isinstance(renderable, Text))

    def _row(self, step_id: str | None) -> StepRow:
        key = step_id or "?"
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = StepRow(key)
        return row

    def error(self, text: str) -> None:
        self._line(Text(f"error: {text}", style="bold red"), always=True)

    def note(self, text: str) -> None:
        """A line for the user that is not an error (shown even with `--result-only`)."""
        self._line(Text(text), always=True)

    def event(self, event: StreamEvent) -> None:
        match event:
            case RunStarted():
                self._run_started(event)
            case StepStarted():
                self._step_started(event)
            case StepOutput():
                self._step_output(event)
            case StepReasoning():
                self._step_reasoning(event)
            case StepProgress():
                row = self._row(event.step_id)
                index = event.loop_index or 0
                self._line(Text(f"  ↳ {row.step_id}[{index}] {_short(event.output)}", style="dim"))
            case StepCompleted():
                self._step_completed(event)
            case StepFailed():
                self._step_failed(event)
            case StepRetrying():
                self._step_retrying(event)
            case ToolCallStarted():
                self._tool_started(event)
            case ToolCallCompleted():
                self._tool_completed(event)
            case FlowCompleted():
                self._execution_id = event.execution_id or self._execution_id
                self._summary = event.summary
            case _:
                pass  # the others change nothing on screen

    def _run_started(self, event: RunStarted) -> None:
        self._execution_id = event.execution_id or self._execution_id
        count = event.step_count or 0
        self._line(Text(f"run {self._execution_id} ({count} step{'s' if count != 1 else ''})", style="dim"))

    def _step_started(self, event: StepStarted) -> None:
        row = self._row(event.step_id)
        row.name = event.name or None
        row.type = event.step_type or ""
        label = Text("▶ step ", style="cyan")
        label.append(row.step_id, style="bold")
        if row.name and row.name != row.step_id:
            label.append(f" · {row.name}")
        label.append(f" ({row.type})", style="dim")
        if (event.attempt or 0) > 1:
            label.append(f" attempt {event.attempt}", style="yellow")
        self._line(label)

    def _tool_started(self, event: ToolCallStarted) -> None:
        line = Text("  → tool ", style="magenta")
        line.append(event.name or "?", style="bold")
        line.append(f"({_short(event.arguments, 80) if event.arguments is not None else ''})")
        if event.side == "client":
            line.append("  your tool: the run waits for its result", style="dim")
        self._line(line)

    def _tool_completed(self, event: ToolCallCompleted) -> None:
        failed = event.error is not None
        line = Text("  ← tool ", style="red" if failed else "magenta")
        line.append(event.name or "?", style="bold")
        if event.duration_ms is not None:
            line.append(f"  {_duration(event.duration_ms)}", style="dim")
        if failed:
            line.append(f"  failed: {_error_text(event.error)}", style="red")
        else:
            line.append(f"  {_short(event.result, 80)}", style="dim")
        self._line(line)

    def _step_output(self, event: StepOutput) -> None:
        if not self._deltas:
            return
        delta = event.output_data
        if not isinstance(delta, str):
            delta = "" if delta is None else json.dumps(delta, ensure_ascii=False)
        if not delta:
            return
        if self._err_open:
            self._err.print()
            self._err_open = False
        self._out.write(delta)
        self._out.flush()
        self._out_open = not delta.endswith("\n")

    def _step_reasoning(self, event: StepReasoning) -> None:
        if not event.delta or not (self._deltas and self._progress):
            return
        if self._out_open:
            self._out.write("\n")
            self._out.flush()
            self._out_open = False
        self._err.print(Text(event.delta, style="dim italic"), end="", soft_wrap=True)
        self._err_open = not event.delta.endswith("\n")

    def _step_completed(self, event: StepCompleted) -> None:
        row = self._row(event.step_id)
        row.type = row.type or event.step_type or ""
        row.status = "skipped" if event.skipped else "ok"
        row.duration_ms = event.duration_ms or 0
        if event.tokens is not None:
            row.prompt, row.completion = event.tokens.prompt, event.tokens.completion
            row.total = event.tokens.total or row.prompt + row.completion
        row.cost = _cost(event.cost_usd)
        line = Text("✓ ", style="green")
        line.append(row.step_id, style="bold")
        if row.status == "skipped":
            line.append(" skipped", style="yellow")
        details = [_duration(row.duration_ms), f"{row.total} tokens", f"${row.cost:.6f}"]
        if event.model:
            details.append(event.model)
        line.append("  " + " · ".join(details), style="dim")
        self._line(line)

    def _step_failed(self, event: StepFailed) -> None:
        row = self._row(event.step_id)
        row.status = "error"
        if event.duration_ms is not None:
            row.duration_ms = event.duration_ms
        line = Text("✗ ", style="red")
        line.append(row.step_id, style="bold")
        line.append(f" failed: {_error_text(event.error)}", style="red")
        self._line(line)

    def _step_retrying(self, event: StepRetrying) -> None:
        row = self._row(event.step_id)
        line = Text("↻ ", style="yellow")
        line.append(row.step_id, style="bold")
        wait = _duration(event.backoff_ms or 0)
        line.append(f" attempt {event.attempt or 0} failed: {_error_text(event.error)}", style="yellow")
        line.append(f"  retrying in {wait}", style="dim")
        self._line(line)

    def finish(self, event: StreamEvent | None) -> None:
        rows = list(self._rows.values())
        if rows:
            self._line(self._table(rows))
        self._line(self._totals(rows))
        if isinstance(event, FlowCompleted):
            result = event.result
            text = result if isinstance(result, str) else json.dumps(result, indent=2, ensure_ascii=False)
            self._out.write(text + "\n")
            self._out.flush()

    def _table(self, rows: list[StepRow]) -> Table:
        table = Table()
        table.add_column("step", overflow="fold")
        table.add_column("type", style="dim")
        table.add_column("status")
        for name in ("duration", "tokens", "cost"):
            table.add_column(name, justify="right", no_wrap=True)
        styles = {"ok": "green", "skipped": "yellow", "error": "red"}
        for row in rows:
            table.add_row(
                Text(row.step_id),
                Text(row.type),
                Text(row.status, style=styles.get(row.status, "")),
                _duration(row.duration_ms),
                f"{row.total} ({row.prompt}+{row.completion})",
                f"${row.cost:.6f}",
            )
        return table

    def _totals(self, rows: list[StepRow]) -> Text:
        """The run's totals: the server's summary when the flow completed, else the steps' sums."""
        prompt = sum(r.prompt for r in rows)
        completion = sum(r.completion for r in rows)
        total = sum(r.total for r in rows)
        cost = sum((r.cost for r in rows), Decimal(0))
        if self._summary is not None:
            tokens = _dict(self._summary.get("tokens"))
            prompt = _int(tokens.get("prompt", prompt))
            completion = _int(tokens.get("completion", completion))
            total = _int(tokens.get("total", total))
            cost = _cost(self._summary.get("costUsd", cost))
        wall = round((time.monotonic() - self._started) * 1000)
        steps = sum(r.duration_ms or 0 for r in rows)
        line = Text("total: ", style="bold")
        line.append(f"{total} tokens ({prompt} prompt + {completion} completion) · ${cost:.6f} · ")
        line.append(f"{_duration(steps)} in steps, {_duration(wall)} wall")
        if self._execution_id:
            line.append(f" · execution {self._execution_id}", style="dim")
        return line


# --- following the run -------------------------------------------------------------------------


def _not_an_object(event: StreamEvent) -> UnknownEvent | None:
    """The event when its frame's data is not a JSON object: not an event of any wire version."""
    if isinstance(event, UnknownEvent) and event.error is not None and not isinstance(event.data, dict):
        return event
    return None


def follow(events: Iterable[StreamEvent], view: View) -> int:
    """Show `events` on `view` until the run ends or pauses; the exit code."""
    failed = False
    execution_id: str | None = None
    for event in events:
        if (bad := _not_an_object(event)) is not None:
            raise RunFailure(f"the server sent an event that is not a JSON object: {_short(bad.data)}")
        execution_id = getattr(event, "execution_id", None) or execution_id
        view.event(event)
        match event:
            case StepFailed():
                failed = True
            case RunFailed():
                view.finish(event)
                text = _error_text(event.error)
                step_id = (event.error or {}).get("stepId")
                if step_id:
                    text += f" (step {step_id})"
                view.error(text)
                return 1
            case RunCancelled():
                view.finish(event)
                view.error(f"RUN_CANCELLED: the run was cancelled (execution {execution_id})")
                return 1
            case StepPaused() | ToolCallsRequired():
                view.finish(event)
                view.error(
                    f"the run paused after step {event.step_id} ({_WIRE_NAMES.get(event.type, event.type)}); "
                    f"`noukai run` cannot continue it (execution {execution_id})"
                )
                return 1
            case FlowCompleted():
                view.finish(event)
                return 1 if failed else 0
            case _:
                pass
    view.finish(None)
    where = f" (execution {execution_id})" if execution_id else ""
    view.error(f"the stream ended before the run finished{where}")
    return 1


def _sdk_error(exc: NoukaiError, url: str, started: bool) -> str:
    """What to print for an error the SDK raised; `started`: some event had arrived."""
    if isinstance(exc, APITimeoutError):
        return f"the server at {url} timed out ({exc.message})"
    if isinstance(exc, APIConnectionError):
        if started:
            return f"lost the connection to {url} and could not resume the run: {exc.message}"
        return (
            f"cannot connect to the Noukai server at {url} ({exc.message}); "
            "is `noukai serve` running? (set --url or NOUKAI_BASE_URL)"
        )
    return f"{exc.code}: {exc.message}" if exc.code else str(exc)


@dataclass(frozen=True)
class RunRequest:
    """What `noukai run` asks the server for."""

    org: str
    project: str
    slug: str
    message: str | None
    parameters: dict[str, Any]
    version: int | None = None


Interrupted = Callable[[Noukai, str | None, View], int]
"""What to do on Ctrl-C: given the client, the run's id (None before it was known) and the view,
the exit code."""


def on_interrupt(client: Noukai, execution_id: str | None, view: View) -> int:
    """Ctrl-C: on a terminal, ask whether to cancel the run; otherwise say how to reattach."""
    if execution_id is None:
        view.error("interrupted before the run started")
        return 130
    if sys.stdin.isatty() and typer.confirm("\nCancel the run on the server?", default=False, err=True):
        answer = client.runs.cancel(execution_id)
        view.note(f"cancel requested: the run is {answer.status} (execution {execution_id})")
        return 130
    view.note(f"interrupted; the run goes on. Reattach with: noukai run --attach {execution_id}")
    return 130


def execute(
    url: str,
    api_key: str,
    request: RunRequest | str,
    view: View,
    interrupted: Interrupted = on_interrupt,
) -> int:
    """Start the run through the SDK (or, given an execution id, follow that run from the start
    of its log) and show it on `view`; the exit code."""
    root = api_root(url)
    seen: list[StreamEvent] = []

    def recorded(events: Iterable[StreamEvent]) -> Iterable[StreamEvent]:
        for event in events:
            seen.append(event)
            yield event

    try:
        with Noukai(
            api_key=api_key, base_url=root, timeout=REQUEST_TIMEOUT, max_retries=MAX_RETRIES
        ) as client:
            if isinstance(request, str):
                stream = client.runs.events(request)
            else:
                flow = client.flow(org=request.org, project=request.project, slug=request.slug)
                stream = flow.events(
                    message=request.message,
                    parameters=request.parameters,
                    version=request.version,
                    run_remaining=True,
                )
            with stream:
                try:
                    return follow(recorded(stream), view)
                except KeyboardInterrupt:
                    running = request if isinstance(request, str) else stream.execution_id
                    return interrupted(client, running, view)
    except ValueError as exc:  # the SDK refuses a base URL that is not http(s)
        raise UsageError(f"bad server URL {url!r}: {exc}") from exc
    except NoukaiError as exc:
        raise RunFailure(_sdk_error(exc, root, started=bool(seen))) from exc


def _exit(text: str, code: int) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.write(f"error: {text}\n")
    sys.stderr.flush()
    raise typer.Exit(code)


def run(
    target: Annotated[
        str | None,
        typer.Argument(
            metavar="ORG/PROJECT/SLUG", help="The flow to run (not with --attach).", show_default=False
        ),
    ] = None,
    message: Annotated[
        str | None,
        typer.Option("--message", "-m", help="The message the run starts with (if the flow reads one)."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="KEY=VALUE",
            help="A flow parameter (repeatable); VALUE is read as JSON when it parses, else as text.",
        ),
    ] = None,
    version: Annotated[
        int | None,
        typer.Option(
            "--version", min=0, help="Run published version N (default: the latest, else the draft)."
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print every event as one JSON object per line on stdout.")
    ] = False,
    result_only: Annotated[
        bool,
        typer.Option("--result-only", help="Print the flow's result alone (errors still go to stderr)."),
    ] = False,
    attach: Annotated[
        str | None,
        typer.Option(
            "--attach",
            metavar="EXECUTION_ID",
            help="Follow a run already started (from the start of its log) instead of starting one.",
        ),
    ] = None,
    url: Annotated[
        str,
        typer.Option("--url", envvar="NOUKAI_BASE_URL", help="The server's root URL (or its /api/v1 URL)."),
    ] = DEFAULT_BASE_URL,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="NOUKAI_API_KEY", show_default=False, help="The API key to use."),
    ] = None,
) -> None:
    """Run a flow on a server and follow it live, resuming dropped streams (exit 1 if the run
    fails)."""
    request: RunRequest | str
    try:
        if json_output and result_only:
            raise UsageError("--json and --result-only exclude each other")
        if attach is not None:
            if target is not None or message is not None or param or version is not None:
                raise UsageError("--attach follows a run already started: give no flow, -m, -p or --version")
            if not attach.strip():
                raise UsageError("--attach needs an execution id")
            request = attach.strip()
        else:
            if target is None:
                raise UsageError("which flow? give ORG/PROJECT/SLUG (or --attach EXECUTION_ID)")
            org, project, slug = parse_target(target)
            request = RunRequest(org, project, slug, message, parse_params(param or []), version)
        if not (api_key or "").strip():
            raise UsageError("no API key: pass --api-key or set NOUKAI_API_KEY")
        api_root(url)
    except UsageError as exc:
        _exit(str(exc), 2)
    assert api_key is not None
    gate = OutputGate()
    view = GatedView(
        make_view(json_output=json_output, result_only=result_only, terminal=sys.stdout.isatty()), gate
    )
    with gate.installed():
        try:
            code = execute(url, api_key.strip(), request, view)
        except UsageError as exc:
            _exit(str(exc), 2)
        except RunFailure as exc:
            view.error(str(exc))
            code = 1
        except KeyboardInterrupt:
            view.error("interrupted")
            code = 130
    raise typer.Exit(code)


def make_view(*, json_output: bool, result_only: bool, terminal: bool) -> View:
    """The view for these flags and this stdout (see the module docstring)."""
    if json_output:
        return JsonView(sys.stdout, sys.stderr)
    err = Console(stderr=True, highlight=False)
    return HumanView(sys.stdout, err, deltas=terminal and not result_only, progress=not result_only)


__all__ = [
    "HumanView",
    "JsonView",
    "RunFailure",
    "RunRequest",
    "UsageError",
    "api_root",
    "execute",
    "follow",
    "make_view",
    "on_interrupt",
    "parse_params",
    "parse_target",
    "run",
    "wire_payload",
]
