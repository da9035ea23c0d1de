"""`noukai worker` as a process: its refusals (exit 1 with the reason, the password hidden), and,
on the embedded SQLite store beside `noukai serve --no-workers`, executing runs, logging its start
and stop, and a second signal cutting the grace period short."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import REPO_ROOT, ServerProcess, _server_env
from tests.server.test_scale_out import SLOW_STEP, WorkerProcess, wait_until


def _worker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "noukai_server", "worker", *args],
        env=_server_env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )


def test_a_store_that_cannot_be_opened_is_refused_with_the_reason() -> None:
    done = _worker("--database-url", "postgresql+psycopg://nobody:s3cret@127.0.0.1:1/nodb")
    assert done.returncode == 1
    assert "error: cannot open the store at postgresql+psycopg://nobody:***@127.0.0.1:1/nodb" in done.stderr
    assert "s3cret" not in done.stderr


def test_a_bus_that_cannot_be_opened_is_refused_with_the_reason(tmp_path: Path) -> None:
    done = _worker("--data-dir", str(tmp_path), "--redis-url", "http://not-redis:1")
    assert done.returncode == 1
    assert "error: cannot open the bus at http://not-redis:1" in done.stderr


def test_bad_options_are_usage_errors(tmp_path: Path) -> None:
    assert _worker("--data-dir", str(tmp_path), "--log-level", "loud").returncode == 2
    assert _worker("--data-dir", str(tmp_path), "--concurrency", "0").returncode == 2


def test_a_worker_beside_an_api_only_server_runs_the_runs_and_drains(
    make_server: Any, tmp_path: Path
) -> None:
    server: ServerProcess = make_server(extra_args=("--no-workers",))
    headers = {"Authorization": f"Bearer {server.dev_key}"}
    worker = WorkerProcess(
        "worker",
        tmp_path / "worker.log",
        ("--data-dir", str(server.data_dir), "--grace-seconds", "60"),
        server.env,
    )
    worker.spawn()
    try:
        worker.wait_started()
        quick = httpx.post(
            f"{server.api_url}/seq/dev/main/three-steps/execute",
            json={"message": "w"},
            headers=headers,
            timeout=30,
        )
        assert quick.json()["result"] == "three: two: one: w"
        assert worker.holds(quick.json()["executionId"])
        assert f"run {quick.json()['executionId']} started" not in server.log_text()  # the API ran nothing

        server.put_flow(server.dev_key, "dev", "main", SLOW_STEP)
        text = " ".join(f"w{i}" for i in range(60))
        run_id = httpx.post(
            f"{server.api_url}/seq/dev/main/slow-step/jobs", json={"message": text}, headers=headers
        ).json()["executionId"]

        def status() -> str:
            return str(httpx.get(f"{server.api_url}/runs/{run_id}", headers=headers).json()["status"])

        wait_until(lambda: status() == "running" and worker.holds(run_id), "the slow run to start")
        time.sleep(0.3)
        assert worker.process is not None
        worker.process.send_signal(signal.SIGTERM)
        wait_until(lambda: "draining" in worker.log_text(), "the drain to begin")
        begun = time.monotonic()
        worker.process.send_signal(signal.SIGTERM)  # the second signal: no 60 s grace period
        assert worker.wait() == 0
        assert time.monotonic() - begun < 10
        log = worker.log_text()
        assert "second signal" in log and "stopped; 1 run(s) handed back" in log
        assert status() == "queued"  # handed back at once, not left to its lease
    finally:
        worker.stop(signal.SIGKILL)
