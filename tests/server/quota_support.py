"""What the timeout and run-cap tests share: flows that never end by themselves, job submission,
run state over the API, /health latency sampling, and direct reads of the server's SQLite file."""

from __future__ import annotations

import sqlite3
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import ServerProcess

HANG_GUARD = 60.0
"""Seconds to wait for what should happen much sooner: a guard against hangs, not a measure."""


def endless(slug: str, *, step: dict[str, Any] | None = None, **flow: Any) -> dict[str, Any]:
    """A flow whose one step sleeps for 1e9 seconds (the attack): only a timeout ends it."""
    nap = {"id": "nap", "type": "python", "function": "time.sleep", "args": {"seconds": 1e9}}
    return {"slug": slug, **flow, "steps": [{**nap, **(step or {})}]}


QUICK = {"slug": "quick", "steps": [{"id": "say", "type": "template", "template": "done"}]}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def submit(server: ServerProcess, key: str, org: str, slug: str, project: str = "main") -> httpx.Response:
    return httpx.post(
        f"{server.api_url}/seq/{org}/{project}/{slug}/jobs", json={}, headers=auth(key), timeout=30
    )


def job(server: ServerProcess, key: str, org: str, slug: str) -> str:
    response = submit(server, key, org, slug)
    assert response.status_code == 202, response.text
    return str(response.json()["executionId"])


def run_info(server: ServerProcess, key: str, run_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.api_url}/runs/{run_id}", headers=auth(key), timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def status_is(server: ServerProcess, key: str, run_id: str, status: str) -> Callable[[], bool]:
    """A check for `wait_for`: the run has `status` (asked over the API)."""
    return lambda: run_info(server, key, run_id)["status"] == status


def wait_for(
    check: Callable[[], bool], what: str, server: ServerProcess, timeout: float = HANG_GUARD
) -> float:
    """Poll `check` until true; the seconds it took. Fails with the server's log on timeout."""
    begun = time.monotonic()
    while not check():
        assert time.monotonic() - begun < timeout, (
            f"timed out waiting for {what}\n{server.log_text()[-4000:]}"
        )
        time.sleep(0.02)
    return time.monotonic() - begun


def sql(server: ServerProcess, query: str, *params: object) -> list[tuple[Any, ...]]:
    """Read the server's SQLite file directly (WAL: a reader never blocks the server)."""
    conn = sqlite3.connect(server.data_dir / "noukai.db", timeout=10)
    try:
        return list(conn.execute(query, params).fetchall())
    finally:
        conn.close()


def unfinished(server: ServerProcess) -> int:
    return int(sql(server, "SELECT count(*) FROM runs WHERE status IN ('queued', 'running')")[0][0])


def key_id(key: str) -> str:
    """The id part of an API key (`nk_<id>_<secret>`), as `runs.api_key_id` stores it."""
    from noukai_server.store.keys import parse_api_key

    parsed = parse_api_key(key)
    assert parsed is not None
    return parsed


class HealthProbe:
    """Times GET /health every 20 ms on a thread while a test attacks the server."""

    def __init__(self, server: ServerProcess) -> None:
        self._url = f"{server.api_url}/health"
        self._stop = threading.Event()
        self.latencies: list[float] = []
        self._thread = threading.Thread(target=self._probe, daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=HANG_GUARD)

    def _probe(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                begun = time.perf_counter()
                assert client.get(self._url).status_code == 200
                self.latencies.append(time.perf_counter() - begun)
                self._stop.wait(0.02)

    def p99(self) -> float:
        return statistics.quantiles(self.latencies, n=100)[98]
