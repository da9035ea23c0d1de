"""`/metrics` scaled out: one API process and two `noukai worker` processes on PostgreSQL and Redis,
sharing one `PROMETHEUS_MULTIPROC_DIR`. The API's scrape adds up every process's figures: the
runs finished on either worker, and the slot gauges of the live workers (a stopped worker's slots
leave the sums, its counts stay)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests._services import REDIS_URL, fresh_postgres_database, require_redis
from tests.conftest import ServerProcess, _server_env, free_port
from tests.server.test_metrics import Samples, samples, total, value
from tests.server.test_scale_out import HANG_GUARD, WorkerProcess, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

SLOTS = 4
QUICK = {"slug": "quick", "steps": [{"id": "say", "type": "template", "template": "q{{ message }}"}]}
NAP = {
    "slug": "nap",
    "steps": [
        {"id": "nap", "type": "python", "function": "time.sleep", "args": {"seconds": 60, "value": "z"}}
    ],
}


@dataclass
class Deployment:
    api: ServerProcess
    workers: list[WorkerProcess]
    multiproc_dir: Path

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api.dev_key}"}

    def job(self, slug: str) -> str:
        response = httpx.post(
            f"{self.api.api_url}/seq/dev/main/{slug}/jobs",
            json={"message": "go"},
            headers=self.headers(),
            timeout=HANG_GUARD,
        )
        assert response.status_code == 202, response.text
        return str(response.json()["executionId"])

    def status(self, run_id: str) -> str:
        response = httpx.get(f"{self.api.api_url}/runs/{run_id}", headers=self.headers(), timeout=HANG_GUARD)
        assert response.status_code == 200, response.text
        return str(response.json()["status"])

    def scrape(self) -> Samples:
        response = httpx.get(f"{self.api.base_url}/metrics", timeout=HANG_GUARD)
        assert response.status_code == 200, response.text
        return samples(response.text)


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    require_redis()
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    # Left by an earlier run of the deployment (its process is gone): unreadable, so a scrape
    # fails unless the first process to start empties the directory.
    (multiproc / f"counter_{_dead_pid()}.db").write_bytes(b"not an mmap file")
    env = {**_server_env(), "NOUKAI_REDIS_URL": REDIS_URL, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    with fresh_postgres_database() as url:
        data_dir = tmp_path / "api"
        data_dir.mkdir()
        api = ServerProcess(free_port(), data_dir, env, ("--no-workers", "--database-url", url))
        workers = [
            WorkerProcess(
                f"worker{n}",
                tmp_path / f"worker{n}.log",
                ("--database-url", url, "--concurrency", str(SLOTS), "--grace-seconds", "0"),
                env,
            )
            for n in range(2)
        ]
        try:
            api.start()  # migrates the empty database; empties the stale directory
            for worker in workers:
                worker.spawn()
            for worker in workers:
                worker.wait_started()
            for flow in (QUICK, NAP):
                api.put_flow(api.dev_key, "dev", "main", flow)
            yield Deployment(api, workers, multiproc)
        finally:
            for worker in workers:
                worker.stop(signal.SIGKILL)
            api.stop()


def test_two_workers_add_up(deployment: Deployment) -> None:
    runs = 24
    ids = [deployment.job("quick") for _ in range(runs)]
    wait_until(lambda: all(deployment.status(i) == "completed" for i in ids), "every quick run completed")
    found = deployment.scrape()
    assert value(found, "noukai_runs_started_total", flow="dev/main/quick") == runs
    assert value(found, "noukai_runs_finished_total", flow="dev/main/quick", status="completed") == runs
    assert value(found, "noukai_run_queue_wait_seconds_count") == runs
    assert value(found, "noukai_step_attempts_total", type="template", outcome="completed") == runs
    assert value(found, "noukai_worker_slots", state="busy") == 0
    assert value(found, "noukai_worker_slots", state="free") == 2 * SLOTS
    assert value(found, "noukai_queue_runs", status="queued") == 0
    # Both workers took part, each through its own files.
    pids = {w.process.pid for w in deployment.workers if w.process is not None}
    written = {int(f.stem.rsplit("_", 1)[1]) for f in deployment.multiproc_dir.glob("counter_*.db")}
    assert pids <= written, (pids, written)
    assert all(sum(1 for i in ids if w.holds(i)) > 0 for w in deployment.workers)

    naps = [deployment.job("nap") for _ in range(3)]
    wait_until(lambda: all(deployment.status(i) == "running" for i in naps), "three naps running")
    found = deployment.scrape()
    assert value(found, "noukai_worker_slots", state="busy") == 3
    assert value(found, "noukai_worker_slots", state="free") == 2 * SLOTS - 3
    assert value(found, "noukai_queue_runs", status="running") == 3
    for run_id in naps:
        cancel = httpx.post(f"{deployment.api.api_url}/runs/{run_id}/cancel", headers=deployment.headers())
        assert cancel.status_code == 200, cancel.text
    wait_until(lambda: all(deployment.status(i) == "cancelled" for i in naps), "the naps cancelled")

    # A worker that stops takes its slots out of the sums; its counts stay.
    assert deployment.workers[0].stop(signal.SIGTERM) == 0
    found = deployment.scrape()
    assert value(found, "noukai_worker_slots", state="free") == SLOTS
    assert value(found, "noukai_worker_slots", state="busy") == 0
    assert value(found, "noukai_runs_finished_total", flow="dev/main/quick", status="completed") == runs
    assert value(found, "noukai_runs_finished_total", flow="dev/main/nap", status="cancelled") == 3
    assert total(found, "noukai_runs_started_total") == runs + 3
    # A worker killed outright cannot retire its gauges: the next scrape does.
    assert deployment.workers[1].stop(signal.SIGKILL) != 0
    found = deployment.scrape()
    assert value(found, "noukai_worker_slots", state="free") == 0
    assert value(found, "noukai_runs_finished_total", flow="dev/main/quick", status="completed") == runs
    assert os.path.isdir(deployment.multiproc_dir)


def test_a_worker_serves_its_own_metrics_port(tmp_path: Path) -> None:
    """`--metrics-port`: a worker on a host with no API process is scraped directly."""
    port = free_port()
    with fresh_postgres_database() as url:
        data_dir = tmp_path / "api"
        data_dir.mkdir()
        api = ServerProcess(free_port(), data_dir, _server_env(), ("--no-workers", "--database-url", url))
        worker = WorkerProcess(
            "worker",
            tmp_path / "worker.log",
            ("--database-url", url, "--concurrency", "3", "--metrics-port", str(port)),
            _server_env(),
        )
        try:
            api.start()
            worker.spawn()
            worker.wait_started()
            deadline = time.monotonic() + HANG_GUARD
            while True:
                try:
                    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, worker.log_text()
                    time.sleep(0.05)
            found = samples(text)
            assert value(found, "noukai_worker_slots", state="free") == 3
            assert value(found, "noukai_worker_slots", state="busy") == 0
        finally:
            worker.stop(signal.SIGKILL)
            api.stop()
