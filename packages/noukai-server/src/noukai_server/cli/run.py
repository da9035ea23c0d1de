"""`noukai run ORG/PROJECT/SLUG -m TEXT`: run a flow on a server and follow its events.

The run goes through the step protocol (`POST /api/v1/seq/{org}/{project}/{slug}[/vN]/step` with
`runRemaining`), whose answer is an SSE stream of the run's events. By default the run is shown as
it happens: text deltas on stdout, progress and the closing summary table on stderr, and the
flow's result on stdout at the end. `--json` prints each event's JSON, one per line, and nothing
else on stdout.

Exit codes: 0 when the flow completed, 1 when the run failed (or was cancelled, paused or cut
short) or the server could not be reached or refused the request, 2 for a bad command line.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, NoReturn, Protocol, TextIO
from urllib.parse import quote

import httpx2
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from noukai.types import API_PREFIX
from noukai.types import events as ev
from noukai_server import __version__

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0
"""The server pings idle streams every 15 s (by default), so a silent socket this long is dead."""

TERMINAL_EVENTS = ev.TERMINAL_EVENTS
PAUSE_EVENTS = ev.PAUSE_EVENTS


# --- SSE parsing (pure: no I/O) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    """The `event:` field; "message" when the frame had none."""
    data: str
    """The `data:` lines joined with "\\n"."""
    id: str | None = None
    """The last `id:` seen so far on the stream (as the SSE standard defines it)."""


_LINE_END = re.compile(r"\r\n|\r|\n")


class SseParser:
    """Incremental `text/event-stream` parser following the WHATWG rules.

    Feed it decoded text in chunks of any size (a chunk may end mid-line or even between the CR
    and LF of a CRLF); it returns the events completed by each chunk. Lines may end with LF, CRLF
    or CR; `:` lines (such as `: ping`) are comments; `retry:` and unknown fields are ignored; a
    frame without `data:` dispatches nothing. `close()` ends the stream: an event not yet
    terminated by a blank line is dropped, as the standard says.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._started = False
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None

    def feed(self, chunk: str) -> list[SseEvent]:
        if not self._started and chunk:
            self._started = True
            chunk = chunk.removeprefix("\ufeff")
        self._buffer += chunk
        events: list[SseEvent] = []
        start = 0
        for match in _LINE_END.finditer(self._buffer):
            if match.group() == "\r" and match.end() == len(self._buffer):
                break  # a CR at the very end may be the first half of a CRLF: wait for more
            event = self._line(self._buffer[start : match.start()])
            if event is not None:
                events.append(event)
            start = match.end()
        self._buffer = self._buffer[start:]
        return events

    def close(self) -> list[SseEvent]:
        events: list[SseEvent] = []
        if self._buffer.endswith("\r"):
            event = self._line(self._buffer[:-1])
            if event is not None:
                events.append(event)
        self._buffer = ""
        self._event = ""
        self._data = []
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        return None

    def _dispatch(self) -> SseEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SseEvent(event or "message", "\n".join(data), self._last_id)


def parse_sse(chunks: Iterable[str]) -> Iterator[SseEvent]:
    parser = SseParser()
    for chunk in chunks:
        yield from parser.feed(chunk)
    yield from parser.close()


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


def step_url(url: str, org: str, project: str, slug: str, version: int | None) -> str:
    path = "/".join(quote(part, safe="") for part in (org, project, slug))
    version_part = f"/v{version}" if version is not None else ""
    return f"{api_root(url)}/seq/{path}{version_part}/step"


def step_body(message: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "stepIndex": 0,
        "accumulatedOutputs": {},
        "message": message,
        "parameters": parameters,
        "inputOverrides": {},
        "runRemaining": True,
        "iterationsUsed": 0,
        "trace": False,
    }


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
    def event(self, data: str, kind: str, payload: dict[str, Any]) -> None: ...

    def error(self, text: str) -> None: ...

    def finish(self, kind: str | None) -> None: ...


class JsonView:
    """Each event's data line on stdout, as received; errors on stderr."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self._out, self._err = out, err

    def event(self, data: str, kind: str, payload: dict[str, Any]) -> None:
        line = data if "\n" not in data else json.dumps(payload, ensure_ascii=False)
        self._out.write(line + "\n")
        self._out.flush()

    def error(self, text: str) -> None:
        self._err.write(f"error: {text}\n")
        self._err.flush()

    def finish(self, kind: str | None) -> None:
        pass


class HumanView:
    """Deltas and the result on stdout; progress, the summary table and errors on stderr."""

    def __init__(self, out: TextIO, err: Console) -> None:
        self._out, self._err = out, err
        self._rows: dict[str, StepRow] = {}
        self._execution_id: str | None = None
        self._summary: dict[str, Any] | None = None
        self._result: Any = None
        self._out_open = False  # stdout has a delta line not ended yet
        self._err_open = False  # stderr has a reasoning line not ended yet
        self._started = time.monotonic()

    # Deltas leave lines open on one stream; end them before writing on the other.
    def _line(self, renderable: Text | Table) -> None:
        if self._out_open:
            self._out.write("\n")
            self._out.flush()
            self._out_open = False
        if self._err_open:
            self._err.print()
            self._err_open = False
        # Text is never hard-wrapped, so messages stay whole on one line (and greppable).
        self._err.print(renderable, highlight=False, soft_wrap=isinstance(renderable, Text))

    def _row(self, payload: dict[str, Any]) -> StepRow:
        step_id = str(payload.get("stepId") or "?")
        row = self._rows.get(step_id)
        if row is None:
            row = self._rows[step_id] = StepRow(step_id)
        return row

    def error(self, text: str) -> None:
        self._line(Text(f"error: {text}", style="bold red"))

    def event(self, data: str, kind: str, payload: dict[str, Any]) -> None:
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(payload)

    def _on_run_started(self, payload: dict[str, Any]) -> None:
        self._execution_id = payload.get("executionId") or self._execution_id
        count = _int(payload.get("stepCount"))
        self._line(Text(f"run {self._execution_id} ({count} step{'s' if count != 1 else ''})", style="dim"))

    def _on_step_started(self, payload: dict[str, Any]) -> None:
        row = self._row(payload)
        row.name = payload.get("name") or None
        row.type = str(payload.get("type") or "")
        label = Text("▶ step ", style="cyan")
        label.append(row.step_id, style="bold")
        if row.name and row.name != row.step_id:
            label.append(f" · {row.name}")
        label.append(f" ({row.type})", style="dim")
        attempt = _int(payload.get("attempt"))
        if attempt > 1:
            label.append(f" attempt {attempt}", style="yellow")
        self._line(label)

    def _on_step_output(self, payload: dict[str, Any]) -> None:
        delta = payload.get("outputData")
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

    def _on_step_reasoning(self, payload: dict[str, Any]) -> None:
        delta = payload.get("delta")
        if not isinstance(delta, str) or not delta:
            return
        if self._out_open:
            self._out.write("\n")
            self._out.flush()
            self._out_open = False
        self._err.print(Text(delta, style="dim italic"), end="", soft_wrap=True)
        self._err_open = not delta.endswith("\n")

    def _on_step_progress(self, payload: dict[str, Any]) -> None:
        row = self._row(payload)
        index = _int(payload.get("loopIndex"))
        self._line(Text(f"  ↳ {row.step_id}[{index}] {_short(payload.get('output'))}", style="dim"))

    def _on_step_completed(self, payload: dict[str, Any]) -> None:
        row = self._row(payload)
        row.type = row.type or str(payload.get("type") or "")
        row.status = "skipped" if payload.get("skipped") else "ok"
        row.duration_ms = _int(payload.get("durationMs"))
        tokens = _dict(payload.get("tokens"))
        row.prompt, row.completion = _int(tokens.get("prompt")), _int(tokens.get("completion"))
        row.total = _int(tokens.get("total")) or row.prompt + row.completion
        row.cost = _cost(payload.get("costUsd"))
        line = Text("✓ ", style="green")
        line.append(row.step_id, style="bold")
        if row.status == "skipped":
            line.append(" skipped", style="yellow")
        details = [_duration(row.duration_ms), f"{row.total} tokens", f"${row.cost:.6f}"]
        if payload.get("model"):
            details.append(str(payload["model"]))
        line.append("  " + " · ".join(details), style="dim")
        self._line(line)

    def _on_step_error(self, payload: dict[str, Any]) -> None:
        row = self._row(payload)
        row.status = "error"
        if "durationMs" in payload:
            row.duration_ms = _int(payload.get("durationMs"))
        line = Text("✗ ", style="red")
        line.append(row.step_id, style="bold")
        line.append(f" failed: {_error_text(payload.get('error'))}", style="red")
        self._line(line)

    def _on_step_retrying(self, payload: dict[str, Any]) -> None:
        row = self._row(payload)
        line = Text("↻ ", style="yellow")
        line.append(row.step_id, style="bold")
        attempt = _int(payload.get("attempt"))
        wait = _duration(_int(payload.get("backoffMs")))
        line.append(f" attempt {attempt} failed: {_error_text(payload.get('error'))}", style="yellow")
        line.append(f"  retrying in {wait}", style="dim")
        self._line(line)

    def _on_flow_completed(self, payload: dict[str, Any]) -> None:
        self._execution_id = payload.get("executionId") or self._execution_id
        summary = payload.get("summary")
        self._summary = summary if isinstance(summary, dict) else None
        self._result = payload.get("result")

    def finish(self, kind: str | None) -> None:
        rows = list(self._rows.values())
        if rows:
            self._line(self._table(rows))
        self._line(self._totals(rows))
        if kind == "flow_completed":
            result = self._result
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


# --- the request -------------------------------------------------------------------------------


def _http_error(response: httpx2.Response) -> str:
    response.read()
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, dict) and detail.get("code"):
        return f"{detail['code']}: {detail.get('message', '')}"
    text = response.text.strip().replace("\n", " ")
    return f"HTTP {response.status_code}: {_short(text or response.reason_phrase, 200)}"


def follow(events: Iterable[SseEvent], view: View) -> int:
    """Show `events` on `view` until the run's segment ends; the exit code."""
    failed = False
    execution_id: str | None = None
    for sse in events:
        try:
            payload = json.loads(sse.data)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise RunFailure(f"the server sent an event that is not a JSON object: {_short(sse.data)}")
        kind = str(payload.get("eventType") or sse.event)
        execution_id = payload.get("executionId") or execution_id
        view.event(sse.data, kind, payload)
        if kind == "step_error":
            failed = True
        elif kind == "run_failed":
            view.finish(kind)
            error = payload.get("error")
            text = _error_text(error)
            if isinstance(error, dict) and error.get("stepId"):
                text += f" (step {error['stepId']})"
            view.error(text)
            return 1
        elif kind == "run_cancelled":
            view.finish(kind)
            view.error(f"RUN_CANCELLED: the run was cancelled (execution {execution_id})")
            return 1
        elif kind in PAUSE_EVENTS:
            view.finish(kind)
            view.error(
                f"the run paused after step {payload.get('stepId')} ({kind}); "
                f"`noukai run` cannot continue it (execution {execution_id})"
            )
            return 1
        elif kind == "flow_completed":
            view.finish(kind)
            return 1 if failed else 0
    view.finish(None)
    where = f" (execution {execution_id})" if execution_id else ""
    view.error(f"the stream ended before the run finished{where}")
    return 1


def execute(url: str, api_key: str, body: dict[str, Any], view: View) -> int:
    headers = {
        "Authorization": f"Bearer {api_key}",
        "Accept": "text/event-stream",
        "User-Agent": f"noukai-cli/{__version__}",
    }
    timeout = httpx2.Timeout(CONNECT_TIMEOUT, read=READ_TIMEOUT)
    try:
        with (
            httpx2.Client(timeout=timeout) as client,
            client.stream("POST", url, json=body, headers=headers) as response,
        ):
            if response.status_code >= 400:
                raise RunFailure(_http_error(response))
            content_type = response.headers.get("content-type", "")
            if not content_type.startswith("text/event-stream"):
                raise RunFailure(
                    f"expected an event stream from {url}, got HTTP {response.status_code} "
                    f"({content_type or 'no content type'}): is this a Noukai server?"
                )
            return follow(parse_sse(response.iter_text()), view)
    except (httpx2.InvalidURL, httpx2.UnsupportedProtocol) as exc:
        raise UsageError(f"bad server URL {url!r}: {exc}") from exc
    except httpx2.ConnectError as exc:
        raise RunFailure(
            f"cannot connect to the Noukai server at {url} ({exc}); "
            "is `noukai serve` running? (set --url or NOUKAI_BASE_URL)"
        ) from exc
    except httpx2.TimeoutException as exc:
        raise RunFailure(f"the server at {url} timed out ({type(exc).__name__})") from exc
    except httpx2.TransportError as exc:
        raise RunFailure(f"lost the connection to {url}: {exc or type(exc).__name__}") from exc


def _exit(text: str, code: int) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.write(f"error: {text}\n")
    sys.stderr.flush()
    raise typer.Exit(code)


def run(
    target: Annotated[str, typer.Argument(metavar="ORG/PROJECT/SLUG", help="The flow to run.")],
    message: Annotated[str, typer.Option("--message", "-m", help="The message the run starts with.")],
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
    url: Annotated[
        str,
        typer.Option("--url", envvar="NOUKAI_BASE_URL", help="The server's root URL (or its /api/v1 URL)."),
    ] = DEFAULT_BASE_URL,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="NOUKAI_API_KEY", show_default=False, help="The API key to use."),
    ] = None,
) -> None:
    """Run a flow on a server and follow it live (exit 1 if the run fails)."""
    try:
        org, project, slug = parse_target(target)
        parameters = parse_params(param or [])
        if not (api_key or "").strip():
            raise UsageError("no API key: pass --api-key or set NOUKAI_API_KEY")
        endpoint = step_url(url, org, project, slug, version)
    except UsageError as exc:
        _exit(str(exc), 2)
    assert api_key is not None
    view: View
    if json_output:
        view = JsonView(sys.stdout, sys.stderr)
    else:
        view = HumanView(sys.stdout, Console(stderr=True, highlight=False))
    try:
        code = execute(endpoint, api_key.strip(), step_body(message, parameters), view)
    except UsageError as exc:
        _exit(str(exc), 2)
    except RunFailure as exc:
        view.error(str(exc))
        code = 1
    except KeyboardInterrupt:
        view.error("interrupted (the run may go on on the server)")
        code = 130
    raise typer.Exit(code)


__all__ = [
    "HumanView",
    "JsonView",
    "SseEvent",
    "SseParser",
    "api_root",
    "follow",
    "parse_params",
    "parse_sse",
    "parse_target",
    "run",
    "step_url",
]
