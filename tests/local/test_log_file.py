"""The optional SQLite log of in-process runs: the same events, kept after the run and the process."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

import noukai
from noukai_server.local import load_flow
from tests.conftest import REPO_ROOT

ECHO = REPO_ROOT / "examples" / "flows" / "echo.yaml"


def dumped(events: list[noukai.StreamEvent]) -> list[str]:
    return [e.model_dump_json() for e in events]


def test_a_run_is_kept_in_the_file_as_it_was_streamed(tmp_path: Path) -> None:
    with load_flow(ECHO, log_path=tmp_path / "runs.db") as flow:
        result = flow.invoke("kept in a file")
        assert dumped(flow.events(result.run_id)) == dumped(result.events)


def test_the_file_outlives_the_process_that_wrote_it(tmp_path: Path) -> None:
    log = tmp_path / "runs.db"
    code = (
        "from noukai_server import load_flow\n"
        f"with load_flow({str(ECHO)!r}, log_path={str(log)!r}) as flow:\n"
        "    print(flow.invoke('from another process', run_id='written-elsewhere').result)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "from another process"
    with load_flow(ECHO, log_path=log) as flow:
        events = flow.events("written-elsewhere")
        assert isinstance(events[-1], noukai.FlowCompleted) and events[-1].result == "from another process"
        with pytest.raises(ValueError, match="already in"):
            flow.invoke("again", run_id="written-elsewhere")


def test_a_stopped_run_is_kept_up_to_its_cancel(tmp_path: Path) -> None:
    slow = {
        "slug": "slow",
        "steps": [
            {
                "id": "talk",
                "type": "llm",
                "model": "builtin:echo",
                "prompt": " ".join(["w"] * 200),
                "params": {"token_delay_ms": 20},
            }
        ],
    }
    with load_flow(slow, log_path=tmp_path / "runs.db") as flow:
        stream = flow.stream(run_id="stopped")
        streamed = []
        for event in stream:
            streamed.append(event)
            if event.type == "step_output" and len(streamed) == 4:
                threading.Thread(target=flow.stop, args=("stopped",)).start()
        kept = flow.events("stopped")
    assert dumped(kept) == dumped(streamed)
    assert kept[-1].type == "run_cancelled"


def test_reading_runs_without_a_file_or_unknown_runs_is_refused(tmp_path: Path) -> None:
    with load_flow(ECHO) as flow, pytest.raises(RuntimeError, match="pass log_path="):
        flow.events("any")
    with (
        load_flow(ECHO, log_path=tmp_path / "runs.db") as flow,
        pytest.raises(LookupError, match="no run 'nope'"),
    ):
        flow.events("nope")


def test_a_path_that_cannot_hold_a_log_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"cannot use {tmp_path} as a run log"):
        load_flow(ECHO, log_path=tmp_path)
    not_a_database = tmp_path / "notes.txt"
    not_a_database.write_text("these are notes, not a database " * 100)
    with pytest.raises(ValueError, match="notes.txt as a run log: file is not a database"):
        load_flow(ECHO, log_path=not_a_database)
