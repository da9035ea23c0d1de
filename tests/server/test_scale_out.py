"""Scaled out for real: two API processes (`noukai serve --no-workers`) and two worker processes
(`noukai worker`) on this machine's PostgreSQL, without a bus and with the Redis bus.

Any API serves any run's stream; a cancel taken by one API stops a run another process executes;
a worker killed mid-step loses nothing (the other worker re-runs the step as attempt 2); a worker
stopped with SIGTERM hands its runs over at once instead of when the lease expires; and 500 runs
submitted through both APIs all complete with contiguous logs. Measured figures are printed
(`pytest -s`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from noukai.types import events as ev
from tests._services import REDIS_URL, fresh_postgres_database, require_redis
from tests.conftest import REPO_ROOT, ServerProcess, _server_env, free_port
from tests.sse_client import iter_frames

pytestmark = pytest.mark.postgres

LEASE_SECONDS = 4.0
"""Long enough that a hand-over within it cannot be the lease's expiry; short enough that the
SIGKILL case (which does wait for it) stays quick."""
GRACE_SECONDS = 0.5
WORKER_SLOTS = 16
HANG_GUARD = 30.0
"""Seconds to wait for what should happen much sooner: a guard against hangs, not a measure."""

WORDS = 40
PACED = {
    "slug": "paced",
    "steps": [
        {"id": "nap", "type": "python", "function": "time.sleep", "args": {"seconds": 0.3, "value": "a"}},
        {
            "id": "talk",
            "type": "llm",
            "model": "builtin:echo",
            "prompt": "{{ message }}",
            "params": {"token_delay_ms": 10},
        },
        {"id": "end", "type": "template", "template": "{{ steps.nap.output }}: {{ steps.talk.output }}"},
    ],
}
ENDLESS = {
    "slug": "endless",
    "steps": [{"id": "wait", "type": "python", "function": "time.sleep", "args": {"seconds": 3600}}],
}
SLOW_STEP = {
    "slug": "slow-step",
    "steps": [
        {"id": "intro", "type": "template", "template": "start"},
        {
            "id": "slow",
            "type": "llm",
            "model": "builtin:echo",
            "prompt": "{{ message }}",
            "params": {"token_delay_ms": 50},  # 60 words: about 3 s
        },
        {"id": "outro", "type": "template", "template": "{{ steps.intro.output }}: {{ steps.slow.output }}"},
    ],
}
QUICK = {"slug": "quick", "steps": [{"id": "say", "type": "template", "template": "q{{ message }}"}]}


@dataclass
class WorkerProcess:
    """A `noukai worker` child process."""

    name: str
    log: Path
    args: tuple[str, ...]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        self.log.write_bytes(b"")
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "noukai_server", "worker", *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )

    def wait_started(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + HANG_GUARD
        while " started: " not in self.log_text():
            assert self.process.poll() is None, f"worker {self.name} exited:\n{self.log_text()}"
            assert time.monotonic() < deadline, f"worker {self.name} did not start:\n{self.log_text()}"
            time.sleep(0.05)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def holds(self, run_id: str) -> bool:
        return f"run {run_id} started" in self.log_text()

    def wait(self) -> int:
        """Wait for the process to exit by itself; its exit code."""
        assert self.process is not None
        code = self.process.wait(timeout=HANG_GUARD)
        self.process = None
        return code

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process is None:
            return 0
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=HANG_GUARD)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code


@dataclass
class Cluster:
    database_url: str
    apis: list[ServerProcess]
    workers: list[WorkerProcess]
    bus: str
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.apis[0].dev_key

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def job(self, api: int, slug: str, message: str = "go", client: httpx.Client | None = None) -> str:
        post = client.post if client is not None else httpx.post
        response = post(
            f"{self.apis[api].api_url}/seq/dev/main/{slug}/jobs",
            json={"message": message},
            headers=self.headers(),
            timeout=HANG_GUARD,
        )
        assert response.status_code == 202, response.text
        return str(response.json()["executionId"])

    def run(self, api: int, run_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.apis[api].api_url}/runs/{run_id}", headers=self.headers(), timeout=10)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            return list(conn.execute(query, params).fetchall())

    def logs(self) -> str:
        parts = [f"--- api {n}\n{api.log_text()[-2000:]}" for n, api in enumerate(self.apis)]
        parts += [f"--- {w.name}\n{w.log_text()[-2000:]}" for w in self.workers]
        return "\n".join(parts)

    def record(self, name: str, seconds: float) -> None:
        self.figures[name] = seconds
        print(f"\n[scale-out, bus={self.bus}] {name}: {seconds:.3f} s")


def wait_until(
    check: Callable[[], bool], what: str, timeout: float = HANG_GUARD, cluster: Cluster | None = None
) -> float:
    """Poll `check` until true; the seconds it took. Fails with the processes' logs on timeout."""
    begun = time.monotonic()
    while not check():
        if time.monotonic() - begun > timeout:
            raise AssertionError(f"timed out waiting for {what}\n{cluster.logs() if cluster else ''}")
        time.sleep(0.01)
    return time.monotonic() - begun


@pytest.fixture(scope="module", params=["none", pytest.param("redis", marks=pytest.mark.redis)])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    bus = str(request.param)
    env = {**_server_env(), "NOUKAI_LEASE_SECONDS": str(LEASE_SECONDS)}
    if bus == "redis":
        require_redis()  # skips loudly on a laptop without Redis, fails under CI=true
        env["NOUKAI_REDIS_URL"] = REDIS_URL
    root = tmp_path_factory.mktemp(f"scale-{bus}")
    with fresh_postgres_database() as url:
        apis = []
        for n in range(2):
            data_dir = root / f"api{n}"
            data_dir.mkdir()
            apis.append(ServerProcess(free_port(), data_dir, env, ("--no-workers", "--database-url", url)))
        workers = [
            WorkerProcess(
                f"worker{n}",
                root / f"worker{n}.log",
                (
                    "--database-url",
                    url,
                    "--concurrency",
                    str(WORKER_SLOTS),
                    "--grace-seconds",
                    str(GRACE_SECONDS),
                ),
                env,
            )
            for n in range(2)
        ]
        cluster = Cluster(url, apis, workers, bus)
        try:
            apis[0].start()  # the first start migrates the empty database
            for worker in workers:
                worker.spawn()
            apis[1].start()
            for worker in workers:
                worker.wait_started()
            for flow in (PACED, ENDLESS, SLOW_STEP, QUICK):
                apis[0].put_flow(apis[0].dev_key, "dev", "main", flow)
            yield cluster
        finally:
            for worker in workers:
                worker.stop(signal.SIGKILL)
            for api in apis:
                api.stop()
            if os.environ.get("NOUKAI_KEEP_TEST_DATA") is None:
                shutil.rmtree(root, ignore_errors=True)


def test_a_run_created_on_one_api_streams_complete_from_the_other(cluster: Cluster) -> None:
    message = " ".join(f"w{i}" for i in range(WORDS))
    run_id = cluster.job(0, "paced", message)
    frames = []
    with httpx.stream(
        "GET",
        f"{cluster.apis[1].api_url}/runs/{run_id}/events",
        headers=cluster.headers(),
        timeout=HANG_GUARD,
    ) as response:
        assert response.status_code == 200, response.read()
        for frame in iter_frames(response):
            if frame.id is not None:
                frames.append(frame)
    ids = [frame.id for frame in frames]
    assert ids == list(range(1, len(frames) + 1)), ids  # in order, no gap, no duplicate
    assert frames[-1].event == ev.FLOW_COMPLETED
    assert frames[-1].json["result"] == f"a: {message}"
    stored = cluster.sql("SELECT seq, data FROM run_events WHERE run_id = %s ORDER BY seq", run_id)
    assert [(seq, data) for seq, data in stored] == [(frame.id, frame.data) for frame in frames]


def test_a_cancel_through_the_other_api_stops_a_running_run_within_a_second(cluster: Cluster) -> None:
    run_id = cluster.job(0, "endless")
    wait_until(lambda: cluster.run(0, run_id)["status"] == "running", "the run to start", cluster=cluster)
    time.sleep(0.2)  # into the step
    asked = time.monotonic()
    response = httpx.post(
        f"{cluster.apis[1].api_url}/runs/{run_id}/cancel", headers=cluster.headers(), timeout=10
    )
    assert response.status_code == 200, response.text
    wait_until(lambda: cluster.run(1, run_id)["status"] == "cancelled", "the cancel", cluster=cluster)
    latency = time.monotonic() - asked
    cluster.record("cancel latency (API 2 -> worker, run cancelled)", latency)
    assert latency < 1.0
    last = cluster.sql("SELECT type FROM run_events WHERE run_id = %s ORDER BY seq DESC LIMIT 1", run_id)
    assert last == [(ev.RUN_CANCELLED,)]


def test_500_runs_over_both_apis_complete_with_contiguous_logs(cluster: Cluster) -> None:
    count = 500
    begun = time.monotonic()

    def submit(n: int) -> str:
        with httpx.Client() as client:
            return cluster.job(n % 2, "quick", str(n), client)

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(submit, range(count)))
    assert len(set(ids)) == count

    def all_done() -> bool:
        rows = cluster.sql("SELECT status, count(*) FROM runs WHERE id = ANY(%s) GROUP BY status", ids)
        states: dict[str, int] = dict(rows)
        assert "failed" not in states, states
        return states.get("completed", 0) == count

    wait_until(all_done, f"{count} runs to complete", timeout=60, cluster=cluster)
    cluster.record(
        f"{count} runs submitted through 2 APIs and completed by 2 workers", time.monotonic() - begun
    )
    broken = cluster.sql(
        "SELECT runs.id FROM runs LEFT JOIN run_events ON run_events.run_id = runs.id "
        "WHERE runs.id = ANY(%s) "
        "GROUP BY runs.id, runs.last_seq "
        "HAVING count(run_events.seq) <> runs.last_seq OR min(run_events.seq) <> 1 "
        "OR max(run_events.seq) <> runs.last_seq",
        ids,
    )
    assert broken == []
    results = dict(cluster.sql("SELECT id, result::text FROM runs WHERE id = ANY(%s)", ids))
    assert results[ids[7]] == '"q7"'
    both = cluster.sql(
        "SELECT count(DISTINCT lease_owner) FROM runs WHERE id = ANY(%s) AND lease_owner IS NOT NULL", ids
    )
    assert both == [(0,)]  # finished runs hold no lease


def _holder(cluster: Cluster, run_id: str) -> WorkerProcess:
    found: list[WorkerProcess] = []

    def held() -> bool:
        found[:] = [worker for worker in cluster.workers if worker.holds(run_id)]
        return bool(found)

    wait_until(held, "a worker to start the run", cluster=cluster)
    assert len(found) == 1
    return found[0]


def _slow_step_running(cluster: Cluster, run_id: str) -> None:
    def running() -> bool:
        rows = cluster.sql(
            "SELECT count(*) FROM run_events WHERE run_id = %s AND type = %s AND data LIKE %s",
            run_id,
            ev.STEP_OUTPUT,
            '%"stepId":"slow"%',
        )
        return int(rows[0][0]) > 0

    wait_until(running, "the slow step to stream", cluster=cluster)


def _attempts(cluster: Cluster, run_id: str) -> list[tuple[int, str]]:
    steps = httpx.get(
        f"{cluster.apis[1].api_url}/seq/dev/main/slow-step/runs/{run_id}/steps/slow/trace",
        params={"attempt": "all"},
        headers=cluster.headers(),
        timeout=10,
    ).json()
    return [(attempt["attempt"], attempt["status"]) for attempt in steps["attempts"]]


def test_a_worker_killed_mid_step_is_replaced_by_the_other(cluster: Cluster) -> None:
    text = " ".join(f"w{i}" for i in range(60))
    run_id = cluster.job(1, "slow-step", text)
    victim = _holder(cluster, run_id)
    _slow_step_running(cluster, run_id)
    victim.stop(signal.SIGKILL)
    killed = time.monotonic()
    try:
        wait_until(
            lambda: cluster.run(0, run_id)["status"] == "completed",
            "the other worker to finish",
            cluster=cluster,
        )
        cluster.record(
            "SIGKILL -> run completed elsewhere (includes the lease expiry)", time.monotonic() - killed
        )
        assert cluster.run(0, run_id)["result"] == f"start: {text}"
        assert _attempts(cluster, run_id) == [(1, "failed"), (2, "completed")]
        survivor = next(worker for worker in cluster.workers if worker is not victim)
        assert survivor.holds(run_id)
    finally:
        victim.spawn()
        victim.wait_started()


def test_sigterm_hands_a_workers_runs_over_without_waiting_for_the_lease(cluster: Cluster) -> None:
    text = " ".join(f"w{i}" for i in range(60))
    run_id = cluster.job(0, "slow-step", text)
    leaving = _holder(cluster, run_id)
    _slow_step_running(cluster, run_id)
    assert leaving.process is not None
    leaving.process.send_signal(signal.SIGTERM)
    survivor = next(worker for worker in cluster.workers if worker is not leaving)
    handed = wait_until(lambda: survivor.holds(run_id), "the other worker to take the run", cluster=cluster)
    cluster.record("SIGTERM -> run started on the other worker (grace 0.5 s)", handed)
    assert handed < LEASE_SECONDS - 1  # not the lease's expiry
    assert leaving.wait() == 0
    assert "handed back" in leaving.log_text() and " stopped; 1 run(s) handed back" in leaving.log_text()
    try:
        wait_until(
            lambda: cluster.run(1, run_id)["status"] == "completed", "the run to complete", cluster=cluster
        )
        # Cut off mid-step after the grace period: the step ran again, as attempt 2, elsewhere.
        assert _attempts(cluster, run_id) == [(1, "failed"), (2, "completed")]
    finally:
        leaving.spawn()
        leaving.wait_started()


def test_sigterm_on_an_api_ends_its_streams_cleanly_and_clients_resume_on_the_other(cluster: Cluster) -> None:
    """Last: it stops API 1. Its open stream ends after a whole frame with a proper end of the
    response (no error for the client) at once, not after uvicorn's graceful-shutdown timeout; the
    client resumes on API 2 with Last-Event-ID and gets the rest, with no gap and no duplicate."""
    message = " ".join(f"w{i}" for i in range(150))  # about 1.5 s of tokens
    run_id = cluster.job(0, "paced", message)
    seen: list[int] = []
    api = cluster.apis[0]
    with httpx.stream(
        "GET", f"{api.api_url}/runs/{run_id}/events", headers=cluster.headers(), timeout=HANG_GUARD
    ) as response:
        assert response.status_code == 200
        frames = iter_frames(response)
        for frame in frames:
            if frame.id is not None:
                seen.append(frame.id)
            if frame.event == ev.STEP_OUTPUT:
                break
        assert api.process is not None
        api.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        for frame in frames:  # the rest of this stream: whole frames, then a clean end
            if frame.id is not None:
                seen.append(frame.id)
        closed = time.monotonic() - signalled
    cluster.record("SIGTERM on an API -> its open stream ended cleanly", closed)
    assert closed < 2.0  # uvicorn's graceful-shutdown timeout is 5 s
    # uvicorn re-raises the signal it handled once it has shut down: -SIGTERM is its clean exit.
    assert api.process.wait(timeout=HANG_GUARD) in (0, -signal.SIGTERM)
    api.process = None
    assert "timeout graceful shutdown exceeded" not in api.log_text()
    with httpx.stream(
        "GET",
        f"{cluster.apis[1].api_url}/runs/{run_id}/events",
        headers={**cluster.headers(), "Last-Event-ID": str(seen[-1])},
        timeout=HANG_GUARD,
    ) as response:
        rest = [frame for frame in iter_frames(response) if frame.id is not None]
    ids = seen + [frame.id for frame in rest if frame.id is not None]
    assert ids == list(range(1, len(ids) + 1))
    assert rest[-1].event == ev.FLOW_COMPLETED
