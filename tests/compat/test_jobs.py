"""`execute_async()` jobs of the published SDK: submit, poll, wait."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.compat.conftest import noukai_sdk  # noqa: F401 - skips without the SDK
from tests.conftest import ServerProcess


def test_execute_async_then_wait_returns_the_result(client: Any) -> None:
    job = client.flow("three-steps").execute_async(message="queued")
    assert uuid.UUID(job.execution_id)
    status = job.wait(timeout=30, poll_interval=0.1)
    assert status.status == "completed"
    assert status.result == "three: two: one: queued"
    assert status.error is None


def test_poll_shows_the_states(client: Any, server: ServerProcess) -> None:
    slug = f"nap-{uuid.uuid4().hex[:6]}"
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
                    "args": {"seconds": 0.8, "value": "{{ parameters.v }}"},
                }
            ],
        },
    )
    job = client.flow(slug).execute_async(parameters={"v": 7})
    seen = {job.poll().status}
    final = job.wait(timeout=30, poll_interval=0.05)
    seen.add(final.status)
    assert seen >= {"completed"} and seen & {"pending", "running"}
    assert final.result == 7


def test_a_failing_job_reports_failed_with_a_string_error(client: Any) -> None:
    job = client.flow("broken").execute_async(parameters={"config": {}})
    status = job.wait(timeout=30, poll_interval=0.1)
    assert status.status == "failed"
    assert isinstance(status.error, str) and status.error.startswith("TEMPLATE_ERROR")


@pytest.mark.anyio
async def test_async_client_jobs(async_client_factory: Any) -> None:
    async with async_client_factory() as sdk:
        job = await sdk.flow("echo").execute_async(message="async job")
        status = await job.wait(timeout=30, poll_interval=0.1)
    assert status.result == "async job"
