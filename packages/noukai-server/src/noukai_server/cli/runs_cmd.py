"""`noukai runs list|show|tail|cancel|rerun`: see and steer runs through a server's HTTP API.

Every command is a client of the `noukai` SDK (`client.runs`, and the trace endpoints through
`flow.run(id)`), pointed at `--url` / `NOUKAI_BASE_URL` (default http://127.0.0.1:8080, the
server's root or its `/api/v1` root) with `--api-key` / `NOUKAI_API_KEY`. Nothing opens a store:
these commands work the same against the embedded server and a scaled-out deployment.

Output: tables and lines for people on stdout (hints such as the next page's cursor on stderr);
`--json` prints one JSON document (`tail --json`: one JSON object per event line) for scripts.

Exit codes: 0 done (for `tail`: the run completed); 1 the server refused (the line says its code,
e.g. `RUN_NOT_FOUND`) or could not be reached, or (`tail`) the run failed or stopped without
ending; 2 a bad command line; 3 (`tail`) the run was cancelled; 130 Ctrl-C during `tail`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

import typer
from rich.table import Table

from noukai import (
    APIConnectionError,
    APITimeoutError,
    FlowCompleted,
    Noukai,
    NoukaiError,
    RunCancelled,
    RunFailed,
    RunInfo,
    StepTrace,
)
from noukai_server.cli import runs_view as view
from noukai_server.cli.run import DEFAULT_BASE_URL, MAX_RETRIES, REQUEST_TIMEOUT, UsageError, api_root
from noukai_server.cli.store_or_server import ApiKey

runs_app = typer.Typer(
    help="List, inspect, follow, cancel and re-run runs on a server (through its HTTP API).",
    no_args_is_help=True,
)

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 3
EXIT_INTERRUPTED = 130
LIST_PAGE_MAX = 200
"""The API's largest page; `--all` reads pages of this size unless `--limit` says otherwise."""

Url = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="NOUKAI_BASE_URL",
        help="The server's root URL (or its /api/v1 URL).",
    ),
]
ExecutionId = Annotated[str, typer.Argument(metavar="EXECUTION_ID", help="The run's execution id.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
Metadata = Annotated[
    list[str] | None,
    typer.Option("--metadata", metavar="KEY=VALUE", help="A metadata pair (repeatable; all must match)."),
]


def _exit(message: str, code: int) -> NoReturn:
    sys.stdout.flush()
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _describe(exc: NoukaiError, root: str) -> str:
    """One line for an SDK error: the server's code and message, or why it could not be asked."""
    if isinstance(exc, APITimeoutError):
        return f"the server at {root} timed out ({exc.message})"
    if isinstance(exc, APIConnectionError):
        return (
            f"cannot connect to the Noukai server at {root} ({exc.message}); "
            "is `noukai serve` running? (set --url or NOUKAI_BASE_URL)"
        )
    status = f" (HTTP {exc.status_code})" if exc.status_code else ""
    return f"{exc.code}: {exc.message}{status}" if exc.code else f"{exc.message}{status}"


@contextmanager
def _client(url: str, api_key: str | None) -> Iterator[Noukai]:
    """The SDK client for `url`; every SDK error inside becomes one `error:` line and exit 1."""
    if not (api_key or "").strip():
        _exit("no API key: pass --api-key or set NOUKAI_API_KEY", EXIT_USAGE)
    assert api_key is not None
    try:
        root = api_root(url)
        client = Noukai(
            api_key=api_key.strip(), base_url=root, timeout=REQUEST_TIMEOUT, max_retries=MAX_RETRIES
        )
    except (UsageError, ValueError) as exc:  # the SDK refuses a base URL that is not http(s)
        _exit(f"bad server URL {url!r}: {exc}", EXIT_USAGE)
    try:
        with client:
            yield client
    except NoukaiError as exc:
        _exit(_describe(exc, root), EXIT_REFUSED)


@contextmanager
def _usage() -> Iterator[None]:
    try:
        yield
    except UsageError as exc:
        _exit(str(exc), EXIT_USAGE)


def _table(table: Table) -> None:
    # Piped output keeps whole lines (no wrapping at 80 columns): scripts grep it.
    typer.echo(view.render(table, width=None if sys.stdout.isatty() else 1000))


def _print_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2))


@runs_app.command("list")
def list_runs(
    org: Annotated[str | None, typer.Option(help="The org (default: the key's).")] = None,
    project: Annotated[str | None, typer.Option(help="Only this project's runs.")] = None,
    flow: Annotated[str | None, typer.Option(help="Only this flow's runs (its slug).")] = None,
    version: Annotated[
        int | None, typer.Option("--version", min=0, help="Only this version (0: the draft).")
    ] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(help="Only runs in these statuses (repeatable or comma-separated: failed,cancelled)."),
    ] = None,
    trigger: Annotated[str | None, typer.Option(help="execute, step or job.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Created at or after: an ISO 8601 time, or a time ago (90m, 2h, 7d).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Created before (same forms as --since).")] = None,
    session: Annotated[str | None, typer.Option(help="Only runs of this session.")] = None,
    thread: Annotated[str | None, typer.Option(help="Only runs of this thread.")] = None,
    metadata: Metadata = None,
    limit: Annotated[
        int | None, typer.Option(min=1, max=LIST_PAGE_MAX, help="Runs per page (default: the server's, 50).")
    ] = None,
    cursor: Annotated[
        str | None, typer.Option(help="The page after this cursor (printed under a page).")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every matching run, reading page after page.")
    ] = False,
    as_json: AsJson = False,
    url: Url = DEFAULT_BASE_URL,
    api_key: ApiKey = None,
) -> None:
    """List runs, newest first: id, flow, version, status, trigger, creation time and duration."""
    now = datetime.now(UTC)
    with _usage():
        filters: dict[str, Any] = {
            "org": org,
            "project": project,
            "flow": flow,
            "version": version,
            "status": view.parse_statuses(status) if status else None,
            "trigger": trigger,
            "since": view.parse_when("--since", since, now) if since is not None else None,
            "until": view.parse_when("--until", until, now) if until is not None else None,
            "session": session,
            "thread": thread,
            "metadata": view.parse_metadata(metadata) if metadata else None,
        }
    next_cursor: str | None = None
    with _client(url, api_key) as client:
        if every:
            runs = list(client.runs.iter(**filters, page_size=limit or LIST_PAGE_MAX, cursor=cursor))
        else:
            page = client.runs.list(**filters, limit=limit, cursor=cursor)
            runs, next_cursor = page.runs, page.next_cursor
    if as_json:
        _print_json({"runs": [view.run_json(run) for run in runs], "nextCursor": next_cursor})
        return
    if not runs:
        typer.echo("no runs match", err=True)
        return
    _table(view.runs_table(runs))
    if next_cursor is not None:
        typer.echo(f"more runs: add --cursor {next_cursor} (or --all)", err=True)


@runs_app.command("show")
def show(
    execution_id: ExecutionId, as_json: AsJson = False, url: Url = DEFAULT_BASE_URL, api_key: ApiKey = None
) -> None:
    """Show a run: status, times, error, metadata, trace id, rerun link, and its steps.

    Every attempt of every step is listed with its duration, tokens and cost."""
    note: str | None = None
    attempts: list[StepTrace] = []
    with _client(url, api_key) as client:
        run = client.runs.retrieve(execution_id)
        if run.org and run.project and run.flow:
            try:
                attempts = _attempts(client, run.org, run.project, run.flow, run.execution_id)
            except NoukaiError as exc:  # e.g. EVENTS_EXPIRED: the run is still worth showing
                note = f"steps not available: {_describe(exc, client.base_url)}"
        else:
            note = "steps not available: the server does not say which flow the run belongs to"
    if as_json:
        document: dict[str, Any] = {
            "run": view.run_json(run),
            "steps": [step.model_dump(mode="json", by_alias=True, exclude_none=True) for step in attempts],
        }
        _print_json(document)
        return
    width = max(len(label) for label, _ in view.run_lines(run))
    for label, value in view.run_lines(run):
        typer.echo(f"{label.ljust(width)}  {value}")
    typer.echo()
    if attempts:
        _table(view.steps_table(attempts))
    elif note is None:
        typer.echo("no step has started yet")
    if note is not None:
        typer.echo(note, err=True)


def _attempts(client: Noukai, org: str, project: str, flow: str, execution_id: str) -> list[StepTrace]:
    """Every attempt of every started step, in order: the trace has the latest attempt of each;
    a step tried more than once is asked for all of its attempts."""
    handle = client.flow(org=org, project=project, slug=flow).run(execution_id)
    attempts: list[StepTrace] = []
    for step in handle.trace().steps:
        if step.attempt > 1 and step.loop_index is None:
            attempts += handle.step_trace(step.step_id, attempt="all").attempts
        else:
            attempts.append(step)
    return attempts


@runs_app.command("tail")
def tail(
    execution_id: ExecutionId,
    since_seq: Annotated[
        int | None,
        typer.Option(
            "--since-seq", min=0, help="Start after this event seq (the first column of each line)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per event (with its seq).")
    ] = False,
    url: Url = DEFAULT_BASE_URL,
    api_key: ApiKey = None,
) -> None:
    """Follow a run's events live until it ends (resumable).

    One line per event (`SEQ TYPE details`). Dropped connections are resumed where they stopped;
    `--since-seq N` starts after event N. Exit 0 when the run completed, 1 when it failed, 3 when
    it was cancelled."""
    code = EXIT_REFUSED
    last: int | None = since_seq
    with _client(url, api_key) as client:
        try:
            with client.runs.events(execution_id, since_id=since_seq) as stream:
                ended: int | None = None
                for event in stream:
                    typer.echo(json.dumps(view.event_json(event)) if as_json else view.event_line(event))
                    last = event.seq if event.seq is not None else last
                    ended = _outcome(event) if ended is None else ended
            code = ended if ended is not None else _outcome_of(client.runs.retrieve(execution_id))
        except KeyboardInterrupt:
            resume = f" --since-seq {last}" if last is not None else ""
            typer.echo(
                f"stopped following; the run goes on. Resume with: noukai runs tail {execution_id}{resume}",
                err=True,
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
    raise typer.Exit(code)


def _outcome(event: object) -> int | None:
    if isinstance(event, FlowCompleted):
        return 0
    if isinstance(event, RunFailed):
        return EXIT_REFUSED
    if isinstance(event, RunCancelled):
        return EXIT_CANCELLED
    return None


def _outcome_of(run: RunInfo) -> int:
    """The exit code when the stream ended without an end event (e.g. `--since-seq` at the end)."""
    if run.status == "completed":
        return 0
    if run.status == "cancelled":
        return EXIT_CANCELLED
    if run.status != "failed":
        typer.echo(f"the run is {run.status}: the stream ended before the run did", err=True)
    return EXIT_REFUSED


@runs_app.command("cancel")
def cancel(execution_id: ExecutionId, url: Url = DEFAULT_BASE_URL, api_key: ApiKey = None) -> None:
    """Ask the run to stop at its next safe point (a finished run is left as it is)."""
    with _client(url, api_key) as client:
        answer = client.runs.cancel(execution_id)
    state = "cancel requested" if answer.cancel_requested else "not cancelled"
    typer.echo(f"{answer.execution_id}: {state}; the run is {answer.status}")


@runs_app.command("rerun")
def rerun(
    execution_id: ExecutionId,
    from_step: Annotated[
        str | None,
        typer.Option(
            "--from-step",
            metavar="STEP",
            help="Start at this step (its id, or a 0-based index), reusing the earlier steps' outputs.",
        ),
    ] = None,
    metadata: Annotated[
        list[str] | None,
        typer.Option(
            "--metadata", metavar="KEY=VALUE", help="The new run's metadata (default: the original's)."
        ),
    ] = None,
    as_json: AsJson = False,
    url: Url = DEFAULT_BASE_URL,
    api_key: ApiKey = None,
) -> None:
    """Start a new run with the same inputs, linked to this one.

    The new run uses the same flow version and is queued like a job; its execution id is printed
    (follow it with `noukai runs tail ID`)."""
    with _usage():
        step = view.parse_step(from_step) if from_step is not None else None
        tags = view.parse_metadata(metadata) if metadata else None
    with _client(url, api_key) as client:
        run = client.runs.rerun(execution_id, from_step=step, metadata=tags)
    if as_json:
        _print_json(view.run_json(run))
        return
    start = f" from step {run.rerun_from_step}" if run.rerun_from_step else ""
    typer.echo(run.execution_id)
    typer.echo(
        f"rerun of {execution_id}{start}: {run.status}; follow it with `noukai runs tail {run.execution_id}`",
        err=True,
    )
