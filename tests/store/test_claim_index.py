"""The claim reads its own partial index (`ix_runs_claimable`), not the whole table's history.

On a queue table every run ends up `completed` (or failed, cancelled), and on PostgreSQL each
update of a run's status leaves a dead entry in the `(status, available_at)` index until vacuum
comes: a soak measured the claim at 15 ms after 60 s and 46 ms after 6 minutes, reading 10,705
index entries to find 44 claimable rows. These tests pin the plan: with thousands of ended runs
beside one queued run, the claim's plan names the partial index, on both stores.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from noukai_server.store import OrgCaps, Store
from noukai_server.store.queue import cancels_statement, claim_statement
from noukai_server.store.runs_repo import RUN_COLUMNS
from noukai_server.store.sqlite_hot import _CLAIM, _capped_claim

from .conftest import make_run

pytestmark = pytest.mark.anyio

ENDED_RUNS = 5000


def _copies_of(run_id: str, series: str) -> str:
    """SQL that inserts ENDED_RUNS completed copies of the run, numbered by `series`'s `n`."""
    chosen = {"id": "'ended-' || n", "status": "'completed'", "idempotency_key": "NULL"}
    columns = ", ".join(RUN_COLUMNS)
    values = ", ".join(chosen.get(name, f"runs.{name}") for name in RUN_COLUMNS)
    return f"{series} INSERT INTO runs ({columns}) SELECT {values} FROM runs, g WHERE runs.id = '{run_id}'"


def _postgres_plan(url: str, run_id: str, statement: sa.ClauseElement) -> str:
    import psycopg

    compiled = statement.compile(dialect=postgresql.psycopg.dialect())  # type: ignore[no-untyped-call]
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        series = f"WITH g(n) AS (SELECT generate_series(1, {ENDED_RUNS}))"
        conn.execute(_copies_of(run_id, series).encode())
        conn.execute("ANALYZE runs")
        rows = conn.execute(f"EXPLAIN {compiled.string}".encode(), compiled.params).fetchall()
    return "\n".join(str(row[0]) for row in rows)


def _claim_on_sqlite(caps: OrgCaps | None) -> tuple[str, list[Any]]:
    """The hot path's claim SQL and its parameters: owner, expiry x2, started, updated, now (the
    subquery), [the capped orgs' and keys' now and HAVING values,] now (the outer test)."""
    now = datetime.now(UTC).isoformat()
    sql, cap_params = (_CLAIM, []) if caps is None else _capped_claim(caps, "w1", now)
    return sql, ["w1", now, now, now, now, now, *cap_params, now]


def _sqlite_plan(path: str, run_id: str, sql: str, params: list[Any]) -> str:
    conn = sqlite3.connect(path)
    try:
        series = f"WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {ENDED_RUNS})"
        conn.execute(_copies_of(run_id, series))
        conn.commit()
        conn.execute("ANALYZE")
        rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    finally:
        conn.close()
    return "\n".join(str(row[-1]) for row in rows)


KEY_CAPPED = OrgCaps(default=2, default_per_worker=True, key_default=1, key_overrides={"k1": 3})


@pytest.mark.parametrize(
    "caps",
    [None, OrgCaps(default=2, default_per_worker=True), KEY_CAPPED],
    ids=["plain", "capped", "key-capped"],
)
async def test_the_claim_reads_the_partial_index_beside_thousands_of_ended_runs(
    store: Store, store_url: str, caps: OrgCaps | None
) -> None:
    queued = await make_run(store)
    if store.dialect == "postgresql":
        plan = _postgres_plan(store_url, queued.id, claim_statement("w1", 30, datetime.now(UTC), caps))
    else:
        plan = _sqlite_plan(store_url.split("///", 1)[1], queued.id, *_claim_on_sqlite(caps))
    assert "ix_runs_claimable" in plan, plan
    claimed = await store.claim_next_run("w1", 30, caps=caps)
    assert claimed is not None and claimed.id == queued.id


async def test_the_cancel_check_reads_the_partial_index_too(store: Store, store_url: str) -> None:
    """Every worker asks it every second: it must not read the history of ended runs either."""
    queued = await make_run(store)
    if store.dialect == "postgresql":
        plan = _postgres_plan(store_url, queued.id, cancels_statement("w1"))
    else:
        compiled = cancels_statement("w1").compile(dialect=sqlite.dialect())
        plan = _sqlite_plan(store_url.split("///", 1)[1], queued.id, compiled.string, ["w1"])
    assert "ix_runs_claimable" in plan, plan
    assert await store.cancels_for("w1") == []
