"""The same server, unchanged, on this machine's PostgreSQL instead of SQLite."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests._services import fresh_postgres_database

pytestmark = pytest.mark.postgres


def test_execute_and_flow_versions_on_postgres(make_server: Any) -> None:
    with fresh_postgres_database() as url:
        server = make_server(extra_args=("--database-url", url, "--dev-key"))
        headers = {"Authorization": f"Bearer {server.dev_key}"}
        response = httpx.post(
            f"{server.api_url}/seq/dev/main/three-steps/execute", json={"message": "pg"}, headers=headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["result"] == "three: two: one: pg"
        server.put_flow(
            server.dev_key,
            "dev",
            "main",
            {"slug": "pg-flow", "steps": [{"id": "a", "type": "template", "template": "published"}]},
            publish=True,
        )
        answer = httpx.post(f"{server.api_url}/seq/dev/main/pg-flow/v1/execute", json={}, headers=headers)
        assert answer.json()["result"] == "published"
        server.stop()
