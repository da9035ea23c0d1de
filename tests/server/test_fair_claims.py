"""Fair claiming on a real server with its defaults: on a 3-slot server, three endless jobs of one
org no longer keep another org's run queued (measured before: queued forever). Each org holds at
most half of the worker's slots (1 of 3), through the queue and through the API's direct hand-off."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.conftest import ServerProcess

ENDLESS = {
    "slug": "endless",
    "steps": [{"id": "wait", "type": "python", "function": "time.sleep", "args": {"seconds": 3600}}],
}
QUICK = {"slug": "quick", "steps": [{"id": "say", "type": "template", "template": "done"}]}


def _job(server: ServerProcess, key: str, org: str, slug: str) -> str:
    response = httpx.post(
        f"{server.api_url}/seq/{org}/main/{slug}/jobs",
        json={},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["executionId"])


def _status(server: ServerProcess, key: str, run_id: str) -> str:
    response = httpx.get(
        f"{server.api_url}/runs/{run_id}", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    return str(response.json()["status"])


def test_one_orgs_endless_jobs_leave_room_for_another_org(make_server: Any) -> None:
    server: ServerProcess = make_server(extra_args=("--concurrency", "3"))
    busy, other = server.create_key("org-b"), server.create_key("org-a")
    server.put_flow(busy, "org-b", "main", ENDLESS)
    server.put_flow(other, "org-a", "main", QUICK)
    endless = [_job(server, busy, "org-b", "endless") for _ in range(3)]
    quick = _job(server, other, "org-a", "quick")

    deadline = time.monotonic() + 10
    while _status(server, other, quick) != "completed":
        assert time.monotonic() < deadline, f"org-a's run never ran:\n{server.log_text()[-3000:]}"
        time.sleep(0.05)
    states = sorted(_status(server, busy, run_id) for run_id in endless)
    assert states == ["queued", "queued", "running"], states
    for run_id in endless:
        httpx.post(f"{server.api_url}/runs/{run_id}/cancel", headers={"Authorization": f"Bearer {busy}"})
