"""`noukai runs list|show|tail|cancel|rerun` against a real server process, over its HTTP API.

Runs are started with the SDK (execute, jobs); each command is a real `python -m noukai_server`
child process with `NOUKAI_BASE_URL` / `NOUKAI_API_KEY` (or the options), as a user runs it.
The pure parts the commands use (option parsing, cells) are checked at the end.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import noukai
from noukai_server.cli import runs_view
from noukai_server.cli.run import UsageError
from tests.conftest import ServerProcess, free_port
from tests.cutting_proxy import CuttingProxy
from tests.server.test_cli_remote import noukai as noukai_command


@pytest.fixture
def client(server: ServerProcess) -> Iterator[noukai.Noukai]:
    with noukai.Noukai(api_key=server.dev_key, base_url=server.base_url, org="dev", project="main") as sdk:
        yield sdk


def runs(
    server: ServerProcess, cwd: Path, *args: str, key: str | None = None, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"NOUKAI_BASE_URL": url or server.base_url, "NOUKAI_API_KEY": key or server.dev_key}
    result = noukai_command(cwd, "runs", *args, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def put(server: ServerProcess, prefix: str, steps: list[dict[str, Any]], **extra: Any) -> str:
    slug = f"{prefix}-{uuid.uuid4().hex[:8]}"
    server.put_flow(server.dev_key, "dev", "main", {"slug": slug, "steps": steps, **extra})
    return slug


def slow_flow(server: ServerProcess, *, steps: int, words: int, delay_ms: int) -> str:
    text = " ".join(f"w{i}" for i in range(words))
    return put(
        server,
        "slow",
        [
            {
                "id": f"s{n}",
                "type": "llm",
                "model": "builtin:echo",
                "prompt": text,
                "params": {"token_delay_ms": delay_ms},
            }
            for n in range(steps)
        ],
    )


def wait_until_running(client: noukai.Noukai, execution_id: str) -> None:
    """Poll the run (no timed assertion: the test's own timeout is the bound)."""
    while client.runs.retrieve(execution_id).status in ("queued", "pending"):
        time.sleep(0.05)


# -- list ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def listed_flow(server: ServerProcess) -> tuple[str, list[str]]:
    """A flow of its own with five completed runs, three tagged batch=b1 and two batch=b2; their ids
    newest first."""
    slug = put(server, "listed", [{"id": "a", "type": "template", "template": "hi {{ message }}"}])
    ids: list[str] = []
    with noukai.Noukai(api_key=server.dev_key, base_url=server.base_url, org="dev", project="main") as sdk:
        for n in range(5):
            batch = "b1" if n < 3 else "b2"
            answer = sdk.flow(slug).execute(message=str(n), metadata={"batch": batch})
            assert isinstance(answer, noukai.ExecuteResult) and answer.execution_id is not None
            ids.append(answer.execution_id)
    return slug, ids[::-1]


def test_list_filters_and_json(
    server: ServerProcess, tmp_path: Path, listed_flow: tuple[str, list[str]]
) -> None:
    slug, newest_first = listed_flow
    everything = as_json(runs(server, tmp_path, "list", "--flow", slug, "--json"))
    assert [run["executionId"] for run in everything["runs"]] == newest_first
    assert everything["nextCursor"] is None
    first = everything["runs"][0]
    assert (first["org"], first["project"], first["flow"], first["status"]) == (
        "dev",
        "main",
        slug,
        "completed",
    )
    assert first["metadata"] == {"batch": "b2"} and first["result"] is None
    b2 = as_json(runs(server, tmp_path, "list", "--flow", slug, "--metadata", "batch=b2", "--json"))
    assert [run["executionId"] for run in b2["runs"]] == newest_first[:2]
    recent = runs(
        server, tmp_path, "list", "--flow", slug, "--since", "1h", "--status", "completed,failed", "--json"
    )
    assert len(as_json(recent)["runs"]) == 5
    none = as_json(runs(server, tmp_path, "list", "--flow", slug, "--status", "failed", "--json"))
    assert none == {"runs": [], "nextCursor": None}


def test_list_pages_with_cursor_and_all(
    server: ServerProcess, tmp_path: Path, listed_flow: tuple[str, list[str]]
) -> None:
    slug, newest_first = listed_flow
    page = as_json(runs(server, tmp_path, "list", "--flow", slug, "--limit", "2", "--json"))
    assert [run["executionId"] for run in page["runs"]] == newest_first[:2]
    assert page["nextCursor"]
    following = as_json(
        runs(
            server, tmp_path, "list", "--flow", slug, "--limit", "2", "--cursor", page["nextCursor"], "--json"
        )
    )
    assert [run["executionId"] for run in following["runs"]] == newest_first[2:4]
    every = as_json(runs(server, tmp_path, "list", "--flow", slug, "--limit", "2", "--all", "--json"))
    assert [run["executionId"] for run in every["runs"]] == newest_first and every["nextCursor"] is None


def test_list_prints_a_table_and_the_next_cursor(
    server: ServerProcess, tmp_path: Path, listed_flow: tuple[str, list[str]]
) -> None:
    slug, newest_first = listed_flow
    result = runs(server, tmp_path, "list", "--flow", slug, "--limit", "2")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.strip().splitlines()
    assert header.split() == ["ID", "FLOW", "VERSION", "STATUS", "TRIGGER", "CREATED", "DURATION"]
    assert [row.split()[0] for row in rows] == newest_first[:2]
    assert rows[0].split()[1:5] == [f"dev/main/{slug}", "draft", "completed", "execute"]
    assert "--cursor " in result.stderr


def test_list_refusals(server: ServerProcess, tmp_path: Path) -> None:
    bad_since = runs(server, tmp_path, "list", "--since", "yesterday")
    assert bad_since.returncode == 2 and "--since 'yesterday'" in bad_since.stderr
    bad_pair = runs(server, tmp_path, "list", "--metadata", "no-equals")
    assert bad_pair.returncode == 2 and "KEY=VALUE" in bad_pair.stderr
    refused = runs(server, tmp_path, "list", "--trigger", "bogus")
    assert refused.returncode == 1 and "VALIDATION_ERROR" in refused.stderr and "HTTP 422" in refused.stderr
    wrong_key = runs(server, tmp_path, "list", key="nk_000000000000_wrong")
    assert wrong_key.returncode == 1 and "UNAUTHENTICATED" in wrong_key.stderr
    no_key = noukai_command(tmp_path, "runs", "list", "--url", server.base_url)
    assert no_key.returncode == 2 and "no API key" in no_key.stderr
    nobody = noukai_command(
        tmp_path, "runs", "list", "--url", f"http://127.0.0.1:{free_port()}", "--api-key", "nk_x_y"
    )
    assert nobody.returncode == 1 and "cannot connect" in nobody.stderr and "Traceback" not in nobody.stderr


# -- show ------------------------------------------------------------------------------------------


def test_show_a_run_whose_step_was_retried_and_failed(
    server: ServerProcess, client: noukai.Noukai, tmp_path: Path
) -> None:
    slug = put(
        server,
        "flaky",
        [
            {
                "id": "ask",
                "type": "llm",
                "model": "builtin:flaky",
                "prompt": "{{ message }}",
                "params": {"fail_times": 5},
            }
        ],
        retry={"initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.05, "max_attempts": 2},
    )
    job = client.flow(slug).execute_async(message="hi", metadata={"ticket": "T-1"})
    assert job.wait().status == "failed"
    shown = as_json(runs(server, tmp_path, "show", job.execution_id, "--json"))
    assert shown["run"]["status"] == "failed" and shown["run"]["error"]["code"] == "PROVIDER_ERROR"
    assert [(step["stepId"], step["attempt"], step["status"]) for step in shown["steps"]] == [
        ("ask", 1, "failed"),
        ("ask", 2, "failed"),
    ]
    text = runs(server, tmp_path, "show", job.execution_id)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert any(line.split() == ["status", "failed"] for line in lines)
    assert any(
        line.startswith("error") and "PROVIDER_ERROR" in line and "(step ask)" in line for line in lines
    )
    assert any(line.split() == ["metadata", "ticket=T-1"] for line in lines)
    attempts = [line.split()[:3] for line in lines if line.startswith("ask ")]
    assert attempts == [["ask", "1", "failed"], ["ask", "2", "failed"]]
    assert any(line.split()[:1] == ["total"] for line in lines)


def test_show_of_a_completed_run_has_tokens_and_cost(
    server: ServerProcess, client: noukai.Noukai, tmp_path: Path
) -> None:
    answer = client.flow("three-steps").execute(message="hello")
    assert isinstance(answer, noukai.ExecuteResult) and answer.execution_id is not None
    shown = as_json(runs(server, tmp_path, "show", answer.execution_id, "--json"))
    assert [step["stepId"] for step in shown["steps"]] == ["one", "two", "three"]
    assert all(step["tokens"]["completion"] > 0 and "durationMs" in step for step in shown["steps"])
    assert shown["run"]["durationMs"] is not None and shown["run"]["flow"] == "three-steps"


def test_show_of_an_unknown_run(server: ServerProcess, tmp_path: Path) -> None:
    result = runs(server, tmp_path, "show", str(uuid.uuid4()))
    assert result.returncode == 1 and "RUN_NOT_FOUND" in result.stderr and result.stdout == ""


# -- tail and cancel -------------------------------------------------------------------------------


def test_tail_follows_a_live_run_to_its_end_and_resumes(
    server: ServerProcess, client: noukai.Noukai, tmp_path: Path
) -> None:
    slug = slow_flow(server, steps=3, words=40, delay_ms=50)
    job = client.flow(slug).execute_async(message="go")
    followed = runs(server, tmp_path, "tail", job.execution_id)
    assert followed.returncode == 0, followed.stderr
    lines = followed.stdout.strip().splitlines()
    seqs = [int(line.split()[0]) for line in lines]
    assert seqs == list(range(1, len(lines) + 1))  # every event once, in order
    kinds = [line.split()[1] for line in lines]
    assert kinds[0] == "run_started" and kinds[-1] == "flow_completed"
    assert kinds.count("step_completed") == 3
    middle = seqs[len(seqs) // 2]
    resumed = runs(server, tmp_path, "tail", job.execution_id, "--since-seq", str(middle), "--json")
    assert resumed.returncode == 0, resumed.stderr
    events = [json.loads(line) for line in resumed.stdout.strip().splitlines()]
    assert [event["seq"] for event in events] == seqs[middle:]
    assert events[-1]["eventType"] == "flow_completed"
    at_the_end = runs(server, tmp_path, "tail", job.execution_id, "--since-seq", str(seqs[-1]))
    assert at_the_end.returncode == 0 and at_the_end.stdout == ""
    with CuttingProxy(server.port, after_bytes=900, cuts=2) as proxy:
        cut = runs(server, tmp_path, "tail", job.execution_id, url=proxy.url)
        assert proxy.cuts_made == 2 and proxy.connections >= 3  # cut twice, and it came back
    assert cut.returncode == 0, cut.stderr
    assert cut.stdout == followed.stdout  # every event once, in order, across the dropped connections


def test_tail_of_a_failed_run_exits_1(server: ServerProcess, client: noukai.Noukai, tmp_path: Path) -> None:
    job = client.flow("broken").execute_async(message="x")
    followed = runs(server, tmp_path, "tail", job.execution_id)
    assert followed.returncode == 1
    assert followed.stdout.strip().splitlines()[-1].split()[1] == "run_failed"


def test_cancel_a_slow_run(server: ServerProcess, client: noukai.Noukai, tmp_path: Path) -> None:
    slug = slow_flow(server, steps=2, words=400, delay_ms=50)
    job = client.flow(slug).execute_async(message="go")
    wait_until_running(client, job.execution_id)
    cancelled = runs(server, tmp_path, "cancel", job.execution_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.startswith(f"{job.execution_id}: cancel requested")
    followed = runs(server, tmp_path, "tail", job.execution_id)
    assert followed.returncode == 3, followed.stderr
    assert followed.stdout.strip().splitlines()[-1].split()[1] == "run_cancelled"
    assert client.runs.retrieve(job.execution_id).status == "cancelled"
    missing = runs(server, tmp_path, "cancel", str(uuid.uuid4()))
    assert missing.returncode == 1 and "RUN_NOT_FOUND" in missing.stderr


# -- rerun -----------------------------------------------------------------------------------------


def test_rerun_from_a_step_reuses_the_earlier_outputs(
    server: ServerProcess, client: noukai.Noukai, tmp_path: Path
) -> None:
    answer = client.flow("three-steps").execute(message="hello", metadata={"origin": "first"})
    assert isinstance(answer, noukai.ExecuteResult) and answer.execution_id is not None
    original = answer.execution_id
    again = as_json(runs(server, tmp_path, "rerun", original, "--from-step", "two", "--json"))
    assert again["rerunOf"] == original and again["rerunFromStep"] == "two"
    assert again["metadata"] == {"origin": "first"}  # the original's, by default
    followed = runs(server, tmp_path, "tail", again["executionId"], "--json")
    assert followed.returncode == 0, followed.stderr
    events = [json.loads(line) for line in followed.stdout.strip().splitlines()]
    started = [event["stepId"] for event in events if event["eventType"] == "step_started"]
    assert started == ["two", "three"]  # step one was not run again
    assert events[-1]["eventType"] == "flow_completed"
    assert client.runs.retrieve(again["executionId"]).result == answer.result
    shown = runs(server, tmp_path, "show", again["executionId"])
    assert f"rerun of   {original} (from step two)" in shown.stdout.splitlines()

    by_index = runs(server, tmp_path, "rerun", original, "--from-step", "1", "--metadata", "origin=again")
    assert by_index.returncode == 0, by_index.stderr
    new_id = by_index.stdout.strip()
    info = client.runs.retrieve(new_id)
    assert (info.rerun_of, info.rerun_from_step, info.metadata) == (original, "two", {"origin": "again"})
    assert "runs tail" in by_index.stderr


def test_rerun_refusals(server: ServerProcess, client: noukai.Noukai, tmp_path: Path) -> None:
    answer = client.flow("three-steps").execute(message="x")
    assert isinstance(answer, noukai.ExecuteResult) and answer.execution_id is not None
    unknown_step = runs(server, tmp_path, "rerun", answer.execution_id, "--from-step", "nope")
    assert unknown_step.returncode == 1 and "STEP_NOT_FOUND" in unknown_step.stderr
    unknown_run = runs(server, tmp_path, "rerun", str(uuid.uuid4()))
    assert unknown_run.returncode == 1 and "RUN_NOT_FOUND" in unknown_run.stderr
    bad_pair = runs(server, tmp_path, "rerun", answer.execution_id, "--metadata", "=x")
    assert bad_pair.returncode == 2 and "KEY=VALUE" in bad_pair.stderr


# -- the pure parts --------------------------------------------------------------------------------


NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_parse_when() -> None:
    assert runs_view.parse_when("--since", "90m", NOW) == NOW - timedelta(minutes=90)
    assert runs_view.parse_when("--since", "2026-12-01T09:00:00", NOW) == datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert runs_view.parse_when("--until", "2026-12-01T09:00:00+02:00", NOW).utcoffset() == timedelta(hours=2)
    for bad in ("0h", "2 days", "soon", ""):
        with pytest.raises(UsageError, match="--since"):
            runs_view.parse_when("--since", bad, NOW)


def test_parse_metadata_statuses_and_steps() -> None:
    assert runs_view.parse_metadata(["a=1", "b=x=y", "a=2"]) == {"a": "2", "b": "x=y"}
    assert runs_view.parse_statuses(["failed,cancelled", "running"]) == ["failed", "cancelled", "running"]
    assert runs_view.parse_step("2") == 2 and runs_view.parse_step("two") == "two"
    for bad_call in (
        lambda: runs_view.parse_metadata(["novalue"]),
        lambda: runs_view.parse_statuses(["failed,"]),
        lambda: runs_view.parse_step(" "),
    ):
        with pytest.raises(UsageError):
            bad_call()


def test_cells() -> None:
    assert [runs_view.duration(ms) for ms in (None, 5, 1500, 125_000, 3_725_000)] == [
        "-",
        "5 ms",
        "1.50 s",
        "2m05s",
        "1h02m05s",
    ]
    assert runs_view.version_cell(0) == "draft" and runs_view.version_cell(3) == "3"
    assert runs_view.error_text({"code": "X", "message": "m", "stepId": "s"}) == "X: m (step s)"
    assert runs_view.error_text("CODE:  two\nlines") == "CODE: two lines"
    assert runs_view.error_text(None) is None
