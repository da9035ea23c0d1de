"""`noukai run`: the command against a real server, and its SSE parser and views on their own."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import pytest
from rich.console import Console

from noukai import StreamEvent
from noukai._events import event_from_payload, parse_event
from noukai_server.cli.run import (
    HumanView,
    JsonView,
    RunFailure,
    UsageError,
    api_root,
    follow,
    make_view,
    parse_param_value,
    parse_params,
    parse_target,
    wire_payload,
)
from tests.conftest import REPO_ROOT, ServerProcess, free_port
from tests.cutting_proxy import CuttingProxy

# --- the command against a real server ---------------------------------------------------------


def noukai_run(
    server: ServerProcess, *args: str, key: str | None = "", url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`noukai run ARGS` with the key and URL from the environment (`key=None`: no key at all)."""
    env = dict(server.env)
    env["NOUKAI_BASE_URL"] = url or server.base_url
    if key is not None:
        env["NOUKAI_API_KEY"] = key or server.dev_key
    return subprocess.run(
        [sys.executable, "-m", "noukai_server", "run", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )


def json_lines(stdout: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in stdout.splitlines()]
    assert all(isinstance(event, dict) for event in events)
    return events


def test_piped_output_is_the_result_alone_with_progress_on_stderr(server: ServerProcess) -> None:
    result = noukai_run(server, "dev/main/three-steps", "-m", "hi there")
    assert result.returncode == 0, result.stderr
    # stdout is a pipe here: the result alone, no deltas before it.
    assert result.stdout == "three: two: one: hi there\n"
    err = result.stderr
    for step, tokens in (("one", "6 (3+3)"), ("two", "8 (4+4)"), ("three", "10 (5+5)")):
        assert f"▶ step {step} (llm)" in err
        assert f"✓ {step}" in err
        row = next(line for line in err.splitlines() if f" {step} " in line and "│" in line)
        assert "llm" in row
        assert "ok" in row
        assert tokens in row
        assert "$0.000000" in row
        assert " ms" in row
    assert err.index("▶ step one") < err.index("✓ one") < err.index("▶ step two")
    for header in ("step", "duration", "tokens", "cost"):
        assert header in err
    totals = next(line for line in err.splitlines() if line.startswith("total:"))
    assert "24 tokens (12 prompt + 12 completion)" in totals
    assert "$0.000000" in totals
    execution_id = totals.split("execution ")[1].strip()
    assert uuid.UUID(execution_id)


def test_human_output_prints_a_structured_result_as_pretty_json(server: ServerProcess) -> None:
    result = noukai_run(server, "dev/main/greet", "-m", "x", "--param", "name=Ann", "--param", "count=3")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"greeting": "Hello, Ann!", "shout": "HELLO, ANN!", "count": 3}
    assert "\n  " in result.stdout  # indented


def test_json_lines_are_the_events_in_order(server: ServerProcess) -> None:
    result = noukai_run(server, "dev/main/three-steps", "-m", "hi there", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    events = json_lines(result.stdout)
    seqs = [event["seq"] for event in events]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    assert events[0]["eventType"] == "run_started"
    assert events[-1]["eventType"] == "flow_completed"
    assert events[-1]["result"] == "three: two: one: hi there"
    deltas = "".join(
        e["outputData"] for e in events if e["eventType"] == "step_output" and e["stepId"] == "one"
    )
    assert deltas == "one: hi there"
    # One compact JSON object per line, the wire's event name first.
    assert all(
        line.startswith('{"eventType":"') and ", " not in line[:40] for line in result.stdout.splitlines()
    )
    # Each line is the stored event, field for field (nothing added, nothing lost).
    run_id = events[-1]["executionId"]
    stored = stored_events(server, run_id)
    assert events == stored


def stored_events(server: ServerProcess, run_id: str) -> list[dict[str, Any]]:
    """The run's whole log as the native stream serves it."""
    answer = httpx.get(
        f"{server.api_url}/runs/{run_id}/events",
        headers={"Authorization": f"Bearer {server.dev_key}"},
        timeout=30,
    )
    assert answer.status_code == 200
    return [
        json.loads(line.removeprefix("data: "))
        for line in answer.text.splitlines()
        if line.startswith("data: ")
    ]


def test_params_are_json_when_they_parse(server: ServerProcess) -> None:
    result = noukai_run(server, "dev/main/greet", "-m", "x", "--json", "-p", "name=Ann Lee", "-p", "count=3")
    assert result.returncode == 0, result.stderr
    assert json_lines(result.stdout)[-1]["result"] == {
        "greeting": "Hello, Ann Lee!",
        "shout": "HELLO, ANN LEE!",
        "count": 3,
    }
    listed = noukai_run(server, "dev/main/shout-all", "-m", "x", "--json", "-p", 'items=["a", "b"]')
    assert listed.returncode == 0, listed.stderr
    events = json_lines(listed.stdout)
    assert events[-1]["result"] == "A, B"
    assert [e["output"] for e in events if e["eventType"] == "step_progress"] == ["A", "B"]
    flag = noukai_run(server, "dev/main/maybe", "-m", "quiet", "--json", "-p", "polish=true")
    assert json_lines(flag.stdout)[-1]["result"] == "QUIET"


def test_failing_flow_exits_1_with_the_error_on_stderr(server: ServerProcess) -> None:
    result = noukai_run(server, "dev/main/broken", "-m", "x", "--param", "config={}")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "error: TEMPLATE_ERROR: " in result.stderr
    assert "✗ boom failed: TEMPLATE_ERROR" in result.stderr
    row = next(line for line in result.stderr.splitlines() if " boom " in line and "│" in line)
    assert "error" in row

    as_json = noukai_run(server, "dev/main/broken", "-m", "x", "--param", "config={}", "--json")
    assert as_json.returncode == 1
    events = json_lines(as_json.stdout)
    assert [e["eventType"] for e in events][-2:] == ["step_error", "run_failed"]
    assert "TEMPLATE_ERROR" in as_json.stderr


def test_unknown_flow_exits_1_with_flow_not_found(server: ServerProcess) -> None:
    result = noukai_run(server, "dev/main/no-such-flow", "-m", "x")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: FLOW_NOT_FOUND: no flow dev/main/no-such-flow"
    assert result.stdout == ""
    missing_version = noukai_run(server, "dev/main/echo", "-m", "x", "--version", "7", "--json")
    assert missing_version.returncode == 1
    assert "FLOW_NOT_FOUND" in missing_version.stderr
    assert missing_version.stdout == ""


def test_version_runs_that_published_version(server: ServerProcess) -> None:
    slug = f"cli-run-{uuid.uuid4().hex[:8]}"
    for text in ("first", "second"):
        server.put_flow(
            server.dev_key,
            "dev",
            "main",
            {"slug": slug, "steps": [{"id": "say", "type": "template", "template": text + " {{ message }}"}]},
            publish=True,
        )
    one = noukai_run(server, f"dev/main/{slug}", "-m", "go", "--version", "1")
    assert (one.returncode, one.stdout) == (0, "first go\n")  # piped: the result alone
    latest = noukai_run(server, f"dev/main/{slug}", "-m", "go")
    assert (latest.returncode, latest.stdout) == (0, "second go\n")


def test_url_may_be_the_api_root_and_the_key_a_flag(server: ServerProcess) -> None:
    result = noukai_run(
        server,
        "dev/main/echo",
        "-m",
        "flagged",
        "--api-key",
        server.dev_key,
        key="nk_wrong",
        url=server.api_url + "/",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "flagged\n"


def test_bad_key_exits_1_with_unauthenticated(server: ServerProcess) -> None:
    result = noukai_run(server, "dev/main/echo", "-m", "x", key="nk_000000000000_nope")
    assert result.returncode == 1
    assert "error: UNAUTHENTICATED:" in result.stderr


def test_missing_key_exits_2(server: ServerProcess) -> None:
    result = noukai_run(server, "dev/main/echo", "-m", "x", key=None)
    assert result.returncode == 2
    assert "NOUKAI_API_KEY" in result.stderr
    assert "--api-key" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ("dev/main/echo", "-m", "x", "--param", "novalue"),
        ("dev/main/echo", "-m", "x", "--param", "=3"),
        ("dev/main", "-m", "x"),
    ],
)
def test_bad_command_lines_exit_2(server: ServerProcess, args: tuple[str, ...]) -> None:
    result = noukai_run(server, *args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")


def test_unreachable_server_exits_1(server: ServerProcess) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = noukai_run(server, "dev/main/echo", "-m", "x", url=url)
    assert result.returncode == 1
    assert "cannot connect to the Noukai server" in result.stderr
    assert url in result.stderr
    as_json = noukai_run(server, "dev/main/echo", "-m", "x", "--json", url=url)
    assert (as_json.returncode, as_json.stdout) == (1, "")


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
"""Terminal escape sequences (colours, cursor), removed before reading what a terminal showed."""


# --- command-line values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("2.5", 2.5),
        ("true", True),
        ("null", None),
        ("[1, 2]", [1, 2]),
        ('{"a": {}}', {"a": {}}),
        ('"quoted"', "quoted"),
        ("plain words", "plain words"),
        ("", ""),
        ("NaN", "NaN"),
        ("{broken", "{broken"),
    ],
)
def test_param_values(text: str, value: Any) -> None:
    assert parse_param_value(text) == value


def test_params_split_on_the_first_equals_and_last_wins() -> None:
    assert parse_params(["a=1", "b=x=y", "a=2", "c="]) == {"a": 2, "b": "x=y", "c": ""}
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_params(["ok=1", "bad"])


def test_targets_and_urls() -> None:
    assert parse_target("acme/app/flow") == ("acme", "app", "flow")
    for bad in ("acme/app", "acme//flow", "a/b/c/d"):
        with pytest.raises(UsageError):
            parse_target(bad)
    for url in ("http://h:1", "http://h:1/", "http://h:1/api/v1", "http://h:1/api/v1/"):
        assert api_root(url) == "http://h:1/api/v1"
    assert api_root("https://proxy/noukai") == "https://proxy/noukai/api/v1"


# --- following events, offline -----------------------------------------------------------------


def sse(payload: dict[str, Any]) -> StreamEvent:
    """The typed event the SDK makes of this payload."""
    return event_from_payload(str(payload["eventType"]), payload)


def human() -> tuple[HumanView, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return HumanView(out, Console(file=err, width=200, color_system=None)), out, err


def test_human_view_ends_delta_lines_and_escapes_nothing() -> None:
    view, out, err = human()
    events = [
        {"eventType": "run_started", "seq": 1, "executionId": "run-1", "stepCount": 1},
        {"eventType": "step_started", "seq": 2, "stepId": "[red]s", "type": "llm", "name": None},
        {"eventType": "step_reasoning", "seq": 3, "stepId": "[red]s", "delta": "thinking"},
        {"eventType": "step_output", "seq": 4, "stepId": "[red]s", "outputData": "[b]hi"},
        {"eventType": "step_output", "seq": 5, "stepId": "[red]s", "outputData": " there"},
        {
            "eventType": "step_completed",
            "seq": 6,
            "stepId": "[red]s",
            "durationMs": 1500,
            "tokens": {"prompt": 2, "completion": 3, "total": 5},
            "costUsd": "0.012500",
        },
        {
            "eventType": "flow_completed",
            "seq": 7,
            "executionId": "run-1",
            "result": "[b]hi there",
            "summary": {"tokens": {"prompt": 2, "completion": 3, "total": 5}, "costUsd": "0.012500"},
        },
    ]
    assert follow(map(sse, events), view) == 0
    assert out.getvalue() == "[b]hi there\n[b]hi there\n"
    text = err.getvalue()
    assert "▶ step [red]s (llm)" in text
    assert "thinking\n" in text
    assert "✓ [red]s  1.50 s · 5 tokens · $0.012500" in text
    assert "total: 5 tokens (2 prompt + 3 completion) · $0.012500" in text
    assert "execution run-1" in text


def test_human_view_shows_retries() -> None:
    view, out, err = human()
    error = {"code": "PROVIDER_ERROR", "message": "down"}
    events = [
        {"eventType": "step_started", "seq": 1, "stepId": "ask", "type": "llm", "attempt": 1},
        {
            "eventType": "step_retrying",
            "seq": 2,
            "stepId": "ask",
            "attempt": 1,
            "nextAttempt": 2,
            "error": error,
            "backoffMs": 500,
        },
        {"eventType": "step_started", "seq": 3, "stepId": "ask", "type": "llm", "attempt": 2},
        {"eventType": "step_completed", "seq": 4, "stepId": "ask", "attempt": 2, "durationMs": 3},
        {"eventType": "flow_completed", "seq": 5, "executionId": "run-3", "result": "ok"},
    ]
    assert follow(map(sse, events), view) == 0
    text = err.getvalue()
    assert "↻ ask attempt 1 failed: PROVIDER_ERROR: down  retrying in 500 ms" in text
    assert "▶ step ask (llm) attempt 2" in text
    assert text.count("▶ step ask (llm)\n") == 1


def test_a_stream_cut_short_is_a_failure() -> None:
    out, err = io.StringIO(), io.StringIO()
    events = [{"eventType": "run_started", "seq": 1, "executionId": "run-2", "stepCount": 2}]
    assert follow(map(sse, events), JsonView(out, err)) == 1
    assert json.loads(out.getvalue()) == events[0]  # the payload as it came
    assert "ended before the run finished (execution run-2)" in err.getvalue()


def test_cancelled_and_paused_runs_exit_1() -> None:
    for last in (
        {"eventType": "run_cancelled", "seq": 2, "executionId": "r"},
        {"eventType": "step_paused", "seq": 2, "executionId": "r", "stepId": "a"},
    ):
        view, _, err = human()
        assert follow(map(sse, [last]), view) == 1
        assert "error: " in err.getvalue()


def test_an_event_that_is_not_json_stops_the_command() -> None:
    with pytest.raises(RunFailure, match="not a JSON object"):
        follow([parse_event("message", "not json")], JsonView(io.StringIO(), io.StringIO()))


# --- resuming a dropped stream -----------------------------------------------------------------


def test_a_dropped_stream_is_resumed_with_every_event_once(server: ServerProcess) -> None:
    """The connection is cut mid-answer (mid-frame): the command resumes the run from its log
    and shows every event once, in order, and the run's result."""
    with CuttingProxy(server.port, after_bytes=900) as proxy:
        as_json = noukai_run(server, "dev/main/three-steps", "-m", "hi there", "--json", url=proxy.url)
        assert proxy.cuts_made == 1 and proxy.connections >= 2  # it was cut, and it came back
    assert as_json.returncode == 0, as_json.stderr
    events = json_lines(as_json.stdout)
    assert events == stored_events(server, events[-1]["executionId"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))

    with CuttingProxy(server.port, after_bytes=700) as proxy:
        shown = noukai_run(server, "dev/main/three-steps", "-m", "hi there", url=proxy.url)
        assert proxy.cuts_made == 1
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == "three: two: one: hi there\n"
    assert shown.stderr.count("✓ one") == 1  # every step shown once, resumed or not


def test_wire_payload_is_the_event_as_sent() -> None:
    paused = {
        "eventType": "step_paused_for_tool_calls",
        "seq": 4,
        "executionId": "r",
        "stepId": "agent",
        "toolCalls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        "newerField": {"kept": True},
    }
    assert wire_payload(sse(paused)) == paused
    step = {"eventType": "step_started", "seq": 2, "stepId": "s", "type": "llm", "name": None}
    assert wire_payload(sse(step)) == step
    future = {"eventType": "from_the_future", "seq": 9, "x": 1}
    assert wire_payload(sse(future)) == future


# --- terminal, pipes and --result-only ---------------------------------------------------------


def noukai_run_in_terminal(server: ServerProcess, *args: str, answer: bytes | None = None) -> tuple[int, str]:
    """`noukai run ARGS` with stdin and stdout on a pseudo-terminal (as typed in a shell);
    the exit code and everything the terminal showed (stdout and stderr)."""
    env = dict(server.env, NOUKAI_BASE_URL=server.base_url, NOUKAI_API_KEY=server.dev_key, COLUMNS="200")
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "noukai_server", "run", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=REPO_ROOT,
    )
    os.close(slave)
    shown = _read_terminal(master, proc)
    return proc.returncode, shown


def _read_terminal(master: int, proc: subprocess.Popen[bytes]) -> str:
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the other side closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    os.close(master)
    return b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def test_a_terminal_shows_the_deltas_then_the_result(server: ServerProcess) -> None:
    code, shown = noukai_run_in_terminal(server, "dev/main/three-steps", "-m", "hi there")
    assert code == 0, shown
    text = ANSI.sub("", shown)
    lines = text.splitlines()
    for delta in ("one: hi there", "two: one: hi there"):
        assert delta in lines
    assert lines.count("three: two: one: hi there") == 2  # the last step's deltas, then the result
    assert "▶ step one (llm)" in text and "total: 24 tokens" in text


def test_result_only_prints_the_result_and_nothing_else(server: ServerProcess) -> None:
    result = noukai_run(server, "dev/main/greet", "--result-only", "-p", "name=Ann", "-p", "count=3")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"greeting": "Hello, Ann!", "shout": "HELLO, ANN!", "count": 3}
    assert result.stderr == ""
    failed = noukai_run(server, "dev/main/broken", "-m", "x", "--result-only", "-p", "config={}")
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.startswith("error: TEMPLATE_ERROR: ")


def test_the_message_is_optional(server: ServerProcess) -> None:
    """`greet` reads parameters only; `echo` reads the message, and the server says it is missing."""
    result = noukai_run(server, "dev/main/greet", "-p", "name=Ann", "-p", "count=1", "--result-only")
    assert result.returncode == 0, result.stderr
    missing = noukai_run(server, "dev/main/echo")
    assert missing.returncode == 1
    assert "error: MISSING_MESSAGE" in missing.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("dev/main/echo", "-m", "x", "--json", "--result-only"),
        ("--attach", "e1", "dev/main/echo"),
        ("--attach", "e1", "-m", "x"),
        ("--attach", " "),
        ("-m", "x"),
    ],
)
def test_bad_flag_combinations_exit_2(server: ServerProcess, args: tuple[str, ...]) -> None:
    result = noukai_run(server, *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ")


def test_tool_calls_are_shown_with_their_timing() -> None:
    view, out, err = human()
    events = [
        {"eventType": "step_started", "seq": 1, "stepId": "ask", "type": "agent"},
        {
            "eventType": "tool_call_started",
            "seq": 2,
            "stepId": "ask",
            "toolCallId": "c1",
            "name": "lookup",
            "side": "server",
            "arguments": {"city": "Oslo"},
        },
        {
            "eventType": "tool_call_completed",
            "seq": 3,
            "stepId": "ask",
            "toolCallId": "c1",
            "name": "lookup",
            "side": "server",
            "result": "4 °C",
            "durationMs": 12,
        },
        {
            "eventType": "tool_call_completed",
            "seq": 4,
            "stepId": "ask",
            "toolCallId": "c2",
            "name": "broken",
            "error": {"code": "TOOL_ERROR", "message": "no"},
            "durationMs": 1500,
        },
        {"eventType": "step_completed", "seq": 5, "stepId": "ask", "durationMs": 2000},
        {"eventType": "flow_completed", "seq": 6, "executionId": "r", "result": "done"},
    ]
    assert follow(map(sse, events), view) == 0
    text = err.getvalue()
    assert '→ tool lookup({"city": "Oslo"})' in text
    assert "← tool lookup  12 ms  4 °C" in text
    assert "← tool broken  1.50 s  failed: TOOL_ERROR: no" in text
    assert out.getvalue() == "done\n"


def test_views_for_flags_and_stdout() -> None:
    assert isinstance(make_view(json_output=True, result_only=False, terminal=True), JsonView)
    for terminal, result_only in ((True, False), (False, False), (True, True)):
        view = make_view(json_output=False, result_only=result_only, terminal=terminal)
        assert isinstance(view, HumanView)


# --- Ctrl-C ------------------------------------------------------------------------------------


def _sleepy_flow(server: ServerProcess, seconds: float) -> str:
    slug = f"cli-sleepy-{uuid.uuid4().hex[:6]}"
    server.put_flow(
        server.dev_key,
        "dev",
        "main",
        {
            "slug": slug,
            "steps": [
                {
                    "id": "nap",
                    "type": "python",
                    "function": "time.sleep",
                    "args": {"seconds": seconds, "value": "rested"},
                },
                {"id": "done", "type": "template", "template": "{{ steps.nap.output }} well"},
            ],
        },
    )
    return slug


def test_ctrl_c_in_a_pipe_leaves_the_run_going_and_says_how_to_reattach(server: ServerProcess) -> None:
    slug = _sleepy_flow(server, 1.5)
    env = dict(server.env, NOUKAI_BASE_URL=server.base_url, NOUKAI_API_KEY=server.dev_key)
    proc = subprocess.Popen(
        [sys.executable, "-m", "noukai_server", "run", f"dev/main/{slug}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO_ROOT,
        text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()  # "run <id> (2 steps)": the run exists
    assert first.startswith("run "), first
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    execution_id = first.split()[1]
    assert f"Reattach with: noukai run --attach {execution_id}" in err

    attached = noukai_run(server, "--attach", execution_id, "--json")
    assert attached.returncode == 0, attached.stderr
    events = json_lines(attached.stdout)
    assert events[0]["seq"] == 1 and events[0]["eventType"] == "run_started"
    assert events[-1]["eventType"] == "flow_completed" and events[-1]["result"] == "rested well"


def _read_until(master: int, marker: bytes, timeout: float = 30) -> bytes:
    """What the terminal shows until `marker` appears (or the program ends, or time is up)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen and time.monotonic() < deadline:
        if select.select([master], [], [], 0.1)[0]:
            try:
                seen += os.read(master, 65536)
            except OSError:  # the program ended and closed the terminal
                break
    return seen


def test_ctrl_c_on_a_terminal_offers_to_cancel_the_run(server: ServerProcess) -> None:
    slug = _sleepy_flow(server, 5)
    env = dict(server.env, NOUKAI_BASE_URL=server.base_url, NOUKAI_API_KEY=server.dev_key, COLUMNS="200")
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "noukai_server", "run", f"dev/main/{slug}"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=REPO_ROOT,
    )
    os.close(slave)
    seen = _read_until(master, b"nap")  # the step started (its line is coloured: match the id only)
    proc.send_signal(signal.SIGINT)
    seen += _read_until(master, b"Cancel the run")
    os.write(master, b"y\n")
    shown = ANSI.sub("", seen.decode(errors="replace") + _read_terminal(master, proc))
    assert proc.returncode == 130, shown
    execution_id = re.search(r"run ([0-9a-f-]{36})", shown)
    assert execution_id is not None, shown
    assert "cancel requested" in shown
    run_url = f"{server.api_url}/runs/{execution_id.group(1)}"
    auth = {"Authorization": f"Bearer {server.dev_key}"}
    deadline = time.monotonic() + 15  # the cancel lands at the run's next safe point
    while (status := httpx.get(run_url, headers=auth).json()["status"]) != "cancelled":
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
