from __future__ import annotations

import asyncio
import contextlib
import itertools
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from noukai_server.store import EventRow, EventSequenceError, InvalidIdentifier, RunRecord, RunUpdate, Store

from .conftest import make_run

pytestmark = pytest.mark.anyio


def ev(seq: int, data: str | None = None) -> EventRow:
    return EventRow(seq=seq, type="step_chunk", data=data if data is not None else f'{{"n":{seq}}}')


async def _running(store: Store) -> RunRecord:
    await make_run(store)
    claimed = await store.claim_next_run("w1", 60)
    assert claimed is not None
    return claimed


@pytest.mark.parametrize(
    ("first", "batch", "message"),
    [
        ([], [ev(2)], "start at seq 1, not 2"),
        ([], [ev(0)], "start at 1"),
        ([], [ev(1), ev(3)], "contiguous"),
        ([], [ev(1), ev(1)], "contiguous"),
        ([], [ev(2), ev(1)], "contiguous"),
        ([ev(1), ev(2)], [ev(2)], "start at seq 3, not 2"),
        ([ev(1), ev(2)], [ev(4)], "start at seq 3, not 4"),
        ([ev(1), ev(2)], [ev(1), ev(2), ev(3)], "start at seq 3, not 1"),
    ],
)
async def test_non_contiguous_seqs_are_refused(
    store: Store, first: list[EventRow], batch: list[EventRow], message: str
) -> None:
    run = await _running(store)
    await store.record(run.id, 1, first)
    with pytest.raises(EventSequenceError, match=message):
        await store.record(run.id, 1, batch, RunUpdate(cursor=5))
    after = await store.get_run(run.id)
    assert after is not None
    assert after.last_seq == len(first)
    assert after.cursor == 0
    assert [e.seq for e in await store.read_events(run.id)] == [e.seq for e in first]


async def test_unleased_append_checks_contiguity_too(store: Store) -> None:
    run = await make_run(store)
    with pytest.raises(EventSequenceError, match="start at seq 1, not 3"):
        await store.append_events_unleased(run.id, [ev(3)])


async def test_two_writers_racing_for_one_seq(store: Store) -> None:
    run = await _running(store)
    results = await asyncio.gather(
        store.record(run.id, 1, [ev(1, '"a"')]),
        store.record(run.id, 1, [ev(1, '"b"')]),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["EventSequenceError", "NoneType"]
    assert len(await store.read_events(run.id)) == 1


async def test_event_data_round_trips_byte_for_byte(store: Store) -> None:
    run = await _running(store)
    payloads = [
        '{"b":1,"a":2}',  # key order kept
        '{ "spaced" :  [1, 2.50, 1e3] }',  # whitespace and number spelling kept
        orjson.dumps({"text": "héllo — 日本語 🎉", "esc": '\u0001\n\t"\\'}).decode(),
        '{"escaped":"\\u00e9\\ud83c\\udf89"}',  # escapes not decoded
        '"just a string"',
        "[]",
        '{"big":123456789012345678901234567890}',
    ]
    events = [EventRow(seq=i + 1, type="t", data=p) for i, p in enumerate(payloads)]
    await store.record(run.id, 1, events)
    back = await store.read_events(run.id)
    assert [e.data for e in back] == payloads
    assert [e.data.encode() for e in back] == [p.encode() for p in payloads]


async def test_event_created_at_defaults_to_now_or_is_kept(store: Store) -> None:
    run = await _running(store)
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    await store.record(run.id, 1, [EventRow(1, "a", "{}", created_at=moment), EventRow(2, "b", "{}")])
    first, second = await store.read_events(run.id)
    assert first.created_at == moment
    assert second.created_at is not None
    assert second.created_at.tzinfo is UTC


async def test_read_after_seq_and_limit(store: Store) -> None:
    run = await _running(store)
    await store.record(run.id, 1, [ev(i) for i in range(1, 11)])
    assert [e.seq for e in await store.read_events(run.id)] == list(range(1, 11))
    assert [e.seq for e in await store.read_events(run.id, after_seq=7)] == [8, 9, 10]
    assert [e.seq for e in await store.read_events(run.id, after_seq=2, limit=3)] == [3, 4, 5]
    assert await store.read_events(run.id, after_seq=10) == []
    assert await store.read_events(run.id, limit=0) == []
    assert await store.read_events("no-such-run") == []


async def test_read_with_negative_limit(store: Store) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.read_events("x", limit=-1)


async def test_events_of_runs_do_not_mix(store: Store) -> None:
    a = await make_run(store)
    b = await make_run(store)
    await store.append_events_unleased(a.id, [ev(1, '"a"')])
    await store.append_events_unleased(b.id, [ev(1, '"b"'), ev(2, '"b2"')])
    assert [e.data for e in await store.read_events(a.id)] == ['"a"']
    assert [e.data for e in await store.read_events(b.id)] == ['"b"', '"b2"']


async def test_batched_write_of_500_events(store: Store) -> None:
    run = await _running(store)
    events = [
        EventRow(seq=i, type="step_chunk", data=orjson.dumps({"i": i, "t": "x" * 50}).decode())
        for i in range(1, 501)
    ]
    await store.record(run.id, 1, events, RunUpdate(cursor=1))
    after = await store.get_run(run.id)
    assert after is not None
    assert after.last_seq == 500
    assert after.cursor == 1
    back = await store.read_events(run.id)
    assert [(e.seq, e.type, e.data) for e in back] == [(e.seq, e.type, e.data) for e in events]
    await store.record(run.id, 1, [ev(501)])


@pytest.mark.parametrize("type_", ["", "t" * 65])
async def test_event_type_is_checked(store: Store, type_: str) -> None:
    run = await _running(store)
    with pytest.raises(InvalidIdentifier):
        await store.record(run.id, 1, [EventRow(1, type_, "{}")])


async def test_event_data_must_be_a_string(store: Store) -> None:
    run = await _running(store)
    with pytest.raises(TypeError, match="serialised JSON str"):
        await store.record(run.id, 1, [EventRow(1, "t", b"{}")])  # type: ignore[arg-type]


async def test_cancelled_writes_leave_the_log_consistent(store: Store) -> None:
    # A worker cancels its step task when it loses the lease, possibly in the middle of `record`.
    run = await _running(store)
    for i in range(30):
        current = await store.get_run(run.id)
        assert current is not None
        start = current.last_seq + 1
        task = asyncio.create_task(
            store.record(run.id, 1, [ev(s) for s in range(start, start + 20)], RunUpdate(cursor=i))
        )
        await asyncio.sleep((i % 6) * 0.002)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        after = await store.get_run(run.id)
        assert after is not None
        assert len(await store.read_events(run.id)) == after.last_seq  # all of a batch or none of it
    final = await store.get_run(run.id)
    assert final is not None
    await store.record(run.id, 1, [ev(final.last_seq + 1)])


@given(st.lists(st.integers(min_value=-2, max_value=8), max_size=6))
def test_check_batch_accepts_exactly_contiguous_positive_runs(seqs: list[int]) -> None:
    from noukai_server.store.events import check_batch

    events = [ev(s) for s in seqs]
    valid = all(b == a + 1 for a, b in itertools.pairwise(seqs)) and (not seqs or seqs[0] >= 1)
    if valid:
        check_batch(events)
    else:
        with pytest.raises(EventSequenceError):
            check_batch(events)


async def test_read_events_of_some_types_newest_first(store: Store) -> None:
    run = await _running(store)
    rows = [
        EventRow(seq, kind, f'{{"n":{seq}}}')
        for seq, kind in enumerate(
            [
                "run_started",
                "step_started",
                "step_output",
                "step_output",
                "step_completed",
                "step_started",
                "step_output",
            ],
            start=1,
        )
    ]
    await store.record(run.id, 1, rows)
    boundaries = {"step_started", "step_completed"}
    assert [e.seq for e in await store.read_events(run.id, types=boundaries)] == [2, 5, 6]
    assert [e.seq for e in await store.read_events(run.id, types=boundaries, newest_first=True)] == [6, 5, 2]
    [last] = await store.read_events(run.id, types=boundaries, newest_first=True, limit=1)
    assert (last.seq, last.type, last.data) == (6, "step_started", '{"n":6}')
    assert [e.seq for e in await store.read_events(run.id, 2, types=boundaries)] == [5, 6]
    assert [e.seq for e in await store.read_events(run.id, newest_first=True, limit=2)] == [7, 6]
    assert await store.read_events(run.id, types=set()) == []
    assert await store.read_events(run.id, types={"nothing_like_it"}) == []


async def test_events_keep_the_time_they_were_written_with(store: Store) -> None:
    run = await _running(store)
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    await store.record(run.id, 1, [EventRow(1, "run_started", "{}", created_at=at), EventRow(2, "x", "{}")])
    first, second = await store.read_events(run.id)
    assert first.created_at == at
    assert second.created_at is not None and second.created_at != at


async def test_events_without_timestamps(store: Store) -> None:
    run = await _running(store)
    rows = [EventRow(seq, "step_output", f'{{"n":{seq}}}') for seq in range(1, 4)]
    await store.record(run.id, run.attempt, rows)
    timed = await store.read_events(run.id)
    plain = await store.read_events(run.id, 1, timestamps=False)
    assert [(r.seq, r.type, r.data) for r in plain] == [(r.seq, r.type, r.data) for r in timed[1:]]
    assert all(r.created_at is not None for r in timed)
