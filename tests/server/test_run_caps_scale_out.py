"""The two-org fairness test on PostgreSQL + Redis with two processes: an API (`noukai serve
--no-workers`) and a worker (`noukai worker`). One org's endless backlog, and one key's, never
delay another org's (or key's) runs beyond the configured caps: the caps are counted by the
worker's claim in the database, across the deployment."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests._services import REDIS_URL, fresh_postgres_database, require_redis
from tests.conftest import ServerProcess, _server_env, free_port
from tests.server.quota_support import QUICK, auth, endless, key_id, wait_for
from tests.server.test_scale_out import WorkerProcess

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

SLOTS = 6
ORG_CAP = 2
KEY_CAP = 1
START_BOUND = 2.0
"""How soon a run under its caps completes after submission, whatever the other org's backlog:
one enqueue, one Redis wake-up of the worker, one claim and a template step."""


@dataclass
class Deployment:
    url: str
    api: ServerProcess
    worker: WorkerProcess

    def key(self, org: str) -> str:
        return self.api.cli("keys", "create", "--org", org, "--database-url", self.url).strip()

    def job(self, key: str, org: str, slug: str) -> str:
        response = httpx.post(
            f"{self.api.api_url}/seq/{org}/main/{slug}/jobs", json={}, headers=auth(key), timeout=30
        )
        assert response.status_code == 202, response.text
        return str(response.json()["executionId"])

    def status(self, key: str, run_id: str) -> str:
        response = httpx.get(f"{self.api.api_url}/runs/{run_id}", headers=auth(key), timeout=30)
        assert response.status_code == 200, response.text
        return str(response.json()["status"])

    def running(self, column: str, value: str) -> int:
        import psycopg

        with psycopg.connect(self.url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            query = f"SELECT count(*) FROM runs WHERE status = 'running' AND {column} = %s"
            row = conn.execute(query.encode(), (value,)).fetchone()
        assert row is not None
        return int(row[0])

    def cancel(self, key: str, run_ids: list[str]) -> None:
        for run_id in run_ids:
            response = httpx.post(f"{self.api.api_url}/runs/{run_id}/cancel", headers=auth(key), timeout=30)
            assert response.status_code == 200, response.text
        wait_for(
            lambda: all(self.status(key, run) == "cancelled" for run in run_ids), "the cancels", self.api
        )


def _completed(deployment: Deployment, key: str, run_id: str) -> bool:
    return deployment.status(key, run_id) == "completed"


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    require_redis()  # skips loudly without Redis, fails under CI=true
    env = {
        **_server_env(),
        "NOUKAI_REDIS_URL": REDIS_URL,
        "NOUKAI_ORG_MAX_RUNNING": str(ORG_CAP),
        "NOUKAI_KEY_MAX_RUNNING": str(KEY_CAP),
    }
    with fresh_postgres_database() as url:
        (tmp_path / "api").mkdir()
        api = ServerProcess(free_port(), tmp_path / "api", env, ("--no-workers", "--database-url", url))
        worker = WorkerProcess(
            "worker", tmp_path / "worker.log", ("--database-url", url, "--concurrency", str(SLOTS)), env
        )
        try:
            api.start()  # migrates the empty database
            worker.spawn()
            worker.wait_started()
            yield Deployment(url, api, worker)
        finally:
            worker.stop(signal.SIGKILL)
            api.stop()
            if os.environ.get("NOUKAI_KEEP_TEST_DATA") is None:
                shutil.rmtree(tmp_path, ignore_errors=True)


def test_one_orgs_and_one_keys_backlogs_never_delay_the_others(deployment: Deployment) -> None:
    busy, other = deployment.key("org-x"), deployment.key("org-y")
    busy_second = deployment.key("org-x")
    api = deployment.api
    api.put_flow(busy, "org-x", "main", endless("forever", step={"timeout_seconds": 600}))
    api.put_flow(other, "org-y", "main", QUICK)
    api.put_flow(busy, "org-x", "main", QUICK)
    backlog = [deployment.job(busy, "org-x", "forever") for _ in range(8)]
    # The key's cap (1) binds before its org's (2).
    wait_for(lambda: deployment.running("api_key_id", key_id(busy)) == KEY_CAP, "org-x's run", api)
    # Another key of the same org still gets the org's second slot.
    second = deployment.job(busy_second, "org-x", "forever")
    wait_for(lambda: deployment.running("org_id", "org-x") == ORG_CAP, "org-x's second key", api)

    for _ in range(4):
        submitted = time.monotonic()
        run_id = deployment.job(other, "org-y", "quick")
        wait_for(partial(_completed, deployment, other, run_id), "org-y's run", api)
        assert time.monotonic() - submitted < START_BOUND
    # org-x at its cap: its other runs wait, even a quick one (the caps are the org's, not the flow's).
    queued_quick = deployment.job(busy_second, "org-x", "quick")
    time.sleep(0.5)
    assert deployment.status(busy_second, queued_quick) == "queued"
    assert deployment.running("org_id", "org-x") == ORG_CAP
    assert deployment.running("api_key_id", key_id(busy)) == KEY_CAP
    deployment.cancel(busy, [*backlog, second])
    # The slots freed: org-x's queued quick run goes through now.
    wait_for(lambda: deployment.status(busy_second, queued_quick) == "completed", "org-x's quick run", api)
