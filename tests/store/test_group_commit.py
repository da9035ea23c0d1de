"""Concurrent writes: each one succeeds or fails on its own, and what one path writes the other
reads back identically (on SQLite the per-run calls use raw sqlite3, the rest SQLAlchemy)."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

import pytest

from noukai_server.store import EventRow, EventSequenceError, LeaseLost, RunUpdate, Store, sqlite_hot

from .conftest import make_flow, new_run

pytestmark = pytest.mark.anyio


def _events(first: int, count: int) -> list[EventRow]:
    return [EventRow(seq, "step_output", f'{{"seq":{seq}}}') for seq in range(first, first + count)]


async def _claimed_runs(store: Store, count: int) -> list[tuple[str, int]]:
    flow = await make_flow(store)
    for _ in range(count):
        await store.create_run(new_run(flow))
    claimed = []
    for _ in range(count):
        run = await store.claim_next_run("w1", 30)
        assert run is not None
        claimed.append((run.id, run.attempt))
    return claimed


async def test_one_failing_write_among_concurrent_ones_fails_alone(store: Store) -> None:
    claimed = await _claimed_runs(store, 12)
    stale_id, stale_attempt = claimed[5]

    async def write(run_id: str, attempt: int) -> None:
        fence = attempt - 1 if run_id == stale_id else attempt
        await store.record(run_id, fence, _events(1, 5), RunUpdate(cursor=1))

    outcomes = await asyncio.gather(*(write(*c) for c in claimed), return_exceptions=True)
    for (run_id, _), outcome in zip(claimed, outcomes, strict=True):
        if run_id == stale_id:
            assert isinstance(outcome, LeaseLost)
            assert await store.read_events(run_id) == []
            assert (await store.get_run(run_id)).cursor == 0  # type: ignore[union-attr]
        else:
            assert outcome is None
            assert [e.seq for e in await store.read_events(run_id)] == [1, 2, 3, 4, 5]
            assert (await store.get_run(run_id)).last_seq == 5  # type: ignore[union-attr]
    assert stale_attempt == 1


async def test_concurrent_writes_share_transactions_on_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite only: its single writer group-commits; on PostgreSQL each write commits by itself.
    batches: list[int] = []
    run_batch = sqlite_hot._run_batch

    def counting(conn, jobs):  # type: ignore[no-untyped-def]
        batches.append(len(jobs))
        return run_batch(conn, jobs)

    async with await Store.connect(f"sqlite+aiosqlite:///{tmp_path / 'group.db'}") as store:
        claimed = await _claimed_runs(store, 20)
        monkeypatch.setattr(sqlite_hot, "_run_batch", counting)
        await asyncio.gather(*(store.record(r, a, _events(1, 3)) for r, a in claimed))
    assert sum(batches) == 20
    assert len(batches) < 20, batches


async def test_a_failing_job_is_undone_alone_within_its_transaction(tmp_path: Path) -> None:
    async with await Store.connect(f"sqlite+aiosqlite:///{tmp_path / 'undo.db'}") as store:
        claimed = await _claimed_runs(store, 3)
        (a, attempt_a), (b, attempt_b), (c, attempt_c) = claimed
        # The middle write continues the log at the wrong seq: it fails after the first write of
        # the same transaction succeeded, and before the third.
        outcomes = await asyncio.gather(
            store.record(a, attempt_a, _events(1, 2)),
            store.record(b, attempt_b, _events(2, 2)),
            store.record(c, attempt_c, _events(1, 2)),
            return_exceptions=True,
        )
        assert outcomes[0] is None and outcomes[2] is None
        assert isinstance(outcomes[1], EventSequenceError)
        assert [e.seq for e in await store.read_events(a)] == [1, 2]
        assert await store.read_events(b) == []
        assert [e.seq for e in await store.read_events(c)] == [1, 2]


async def test_a_cancelled_writer_still_writes(store: Store) -> None:
    [(run_id, attempt)] = await _claimed_runs(store, 1)
    task = asyncio.create_task(store.record(run_id, attempt, _events(1, 3)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [e.seq for e in await store.read_events(run_id)] == [1, 2, 3]


async def test_both_paths_read_the_same_run(store: Store) -> None:
    flow = await make_flow(store)
    created = await store.create_run(new_run(flow, session_id="s-1", input={"message": "héllo", "n": 7}))
    # What create_run returns is what is stored.
    assert dataclasses.replace(created, created=False) == await store.get_run(created.id)
    claimed = await store.claim_next_run("w1", 30)
    assert claimed is not None
    await store.record(
        claimed.id,
        claimed.attempt,
        _events(1, 2),
        RunUpdate(status="completed", result={"text": "done", "score": 1.5}, state={"k": [1, 2]}),
    )
    [listed] = await store.list_session_runs("s-1")  # a SQLAlchemy read on both dialects
    fetched = await store.get_run(created.id)
    assert fetched is not None and fetched == listed
    assert fetched.input == {"message": "héllo", "n": 7}
    assert fetched.result == {"text": "done", "score": 1.5}
    assert fetched.completed_at is not None and fetched.completed_at.tzinfo is not None
    assert fetched.started_at == claimed.started_at


async def test_a_write_waits_for_another_process_holding_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    async with await Store.connect(f"sqlite+aiosqlite:///{path}") as store:
        [(run_id, attempt)] = await _claimed_runs(store, 1)
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # what another process's writer would hold
        try:
            write = asyncio.create_task(store.record(run_id, attempt, _events(1, 2)))
            await asyncio.sleep(0.3)
            assert not write.done()  # waiting (on a thread), the event loop free meanwhile
        finally:
            other.execute("COMMIT")
            other.close()
        await asyncio.wait_for(write, 10)
        assert [e.seq for e in await store.read_events(run_id)] == [1, 2]


@pytest.mark.parametrize("every", [1, 10**9])
async def test_wal_is_checkpointed_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: int
) -> None:
    # The loop's writer never checkpoints by itself (an fsync would stall the loop): a thread does,
    # every CHECKPOINT_EVERY commits. Pages reach the database file only through a checkpoint.
    monkeypatch.setattr(sqlite_hot, "CHECKPOINT_EVERY", every)
    path = tmp_path / "wal.db"
    async with await Store.connect(f"sqlite+aiosqlite:///{path}") as store:
        claimed = await _claimed_runs(store, 5)
        before = path.stat().st_size
        for run_id, attempt in claimed:
            await store.record(
                run_id, attempt, [EventRow(s, "step_output", "x" * 2000) for s in range(1, 51)]
            )
        await asyncio.sleep(0.3)
        grew = path.stat().st_size > before
    assert grew == (every == 1)
