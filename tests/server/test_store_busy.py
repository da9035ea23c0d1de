"""Out of database connections: a request that finds none free within `[store]
pool_timeout_seconds` is answered 503 SERVICE_UNAVAILABLE with Retry-After, not a 500 and not a
hang, and the server serves again as soon as a connection comes free. A real server on this
machine's PostgreSQL with a pool of one connection, held by a request that waits on a table lock
the test takes."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest

from tests._services import fresh_postgres_database

pytestmark = pytest.mark.postgres


def test_a_request_that_finds_no_free_connection_is_answered_503(make_server: Any) -> None:
    with fresh_postgres_database() as url:
        pool_of_one = {
            "NOUKAI_DATABASE_URL": url,
            "NOUKAI_DB_POOL_SIZE": "1",
            "NOUKAI_DB_POOL_OVERFLOW": "0",
            "NOUKAI_DB_POOL_TIMEOUT_SECONDS": "0.5",
        }
        server = make_server(env=pool_of_one, extra_args=("--no-workers",))
        headers = {"Authorization": f"Bearer {server.dev_key}"}
        run_url = f"{server.api_url}/runs/{uuid.uuid4()}"
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as locker:
            # Every request reads api_keys first: the first one waits on the lock, holding the
            # server's only connection.
            locker.execute("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
            with ThreadPoolExecutor(1) as pool:
                first = pool.submit(httpx.get, run_url, headers=headers, timeout=30)
                time.sleep(0.5)
                started = time.monotonic()
                refused = httpx.get(run_url, headers=headers, timeout=30)
                waited = time.monotonic() - started
                locker.rollback()  # the lock goes; the first request goes on
                answered = first.result()
        assert refused.status_code == 503, refused.text
        assert refused.json()["detail"]["code"] == "SERVICE_UNAVAILABLE"
        assert refused.headers["retry-after"] == "1"
        assert waited < 10  # the pool's timeout, not a hang
        assert answered.status_code == 404 and answered.json()["detail"]["code"] == "RUN_NOT_FOUND"
        again = httpx.get(run_url, headers=headers, timeout=30)
        assert again.status_code == 404
        assert "answered 503: no database connection came free in time" in server.log_text()
        assert "Traceback" not in server.log_text()
