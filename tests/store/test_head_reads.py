"""Run heads: one statement for many runs, and asks made together sharing it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from noukai_server.store import EventRow, RunHead, Store, StoreBusy
from noukai_server.store.head_reads import HeadReads

from .conftest import make_flow, make_run

pytestmark = pytest.mark.anyio


def ev(seq: int) -> EventRow:
    return EventRow(seq=seq, type="step_chunk", data=f'{{"n":{seq}}}')


async def test_run_heads_answer_status_and_last_seq_of_the_runs_that_exist(store: Store) -> None:
    flow = await make_flow(store)
    quiet = await make_run(store, flow)
    busy = await make_run(store, flow)
    await store.append_events_unleased(busy.id, [ev(1), ev(2), ev(3)])
    heads = await store.run_heads([quiet.id, busy.id, "no-such-run"])
    assert heads == {quiet.id: RunHead("queued", 0), busy.id: RunHead("queued", 3)}
    assert await store.run_heads([]) == {}


async def test_a_run_head_follows_its_writes_and_says_when_it_is_terminal(store: Store) -> None:
    run = await make_run(store)
    assert await store.get_run_head(run.id) == RunHead("queued", 0)
    await store.append_events_unleased(run.id, [ev(1)])
    cancelled = await store.request_cancel(run.id)
    assert cancelled is not None
    head = await store.get_run_head(run.id)
    assert head is not None and head.terminal and head.status == "cancelled"
    assert head.last_seq == cancelled.last_seq >= 1
    assert await store.get_run_head("no-such-run") is None


class CountingFetch:
    """A fetch of heads that records each batch it was asked for."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.batches: list[list[str]] = []
        self.error = error

    async def __call__(self, run_ids: Sequence[str]) -> dict[str, RunHead]:
        self.batches.append(list(run_ids))
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        return {run_id: RunHead("running", int(run_id)) for run_id in run_ids if run_id.isdigit()}


async def test_asks_made_together_share_one_fetch() -> None:
    fetch = CountingFetch()
    reads = HeadReads(fetch, window=0.01)
    answers = await asyncio.gather(*(reads.get(run_id) for run_id in ["1", "2", "2", "x"]))
    assert answers == [RunHead("running", 1), RunHead("running", 2), RunHead("running", 2), None]
    assert fetch.batches == [["1", "2", "x"]]  # one statement; the id asked twice is asked once


async def test_a_full_batch_goes_at_once_and_the_rest_waits_for_the_window() -> None:
    fetch = CountingFetch()
    reads = HeadReads(fetch, window=60, max_batch=3)  # a window no test would wait out
    answers = await asyncio.wait_for(asyncio.gather(*(reads.get(str(n)) for n in range(3))), timeout=5)
    assert [head.last_seq for head in answers if head is not None] == [0, 1, 2]
    assert fetch.batches == [["0", "1", "2"]]
    late = asyncio.ensure_future(reads.get("7"))
    await asyncio.sleep(0.05)
    assert not late.done()  # alone in its window
    await reads.aclose()  # sends what waits
    assert await late == RunHead("running", 7)


async def test_a_failed_fetch_raises_in_every_caller_of_its_batch_and_the_next_batch_is_fresh() -> None:
    fetch = CountingFetch(StoreBusy("no database connection came free in time (test)"))
    reads = HeadReads(fetch, window=0.01)
    outcomes = await asyncio.gather(reads.get("1"), reads.get("2"), return_exceptions=True)
    assert [type(outcome) for outcome in outcomes] == [StoreBusy, StoreBusy]
    fetch.error = None
    assert await reads.get("3") == RunHead("running", 3)
    assert fetch.batches == [["1", "2"], ["3"]]


async def test_a_caller_cancelled_while_it_waits_leaves_the_others_their_answers() -> None:
    fetch = CountingFetch()
    reads = HeadReads(fetch, window=0.05)
    leaving = asyncio.ensure_future(reads.get("1"))
    staying = asyncio.ensure_future(reads.get("1"))
    await asyncio.sleep(0)
    leaving.cancel()
    assert await staying == RunHead("running", 1)
    assert leaving.cancelled()


async def test_many_streams_polling_at_once_all_get_their_heads(store: Store) -> None:
    """What the idle streams of one API process do every few seconds, through the store (one
    statement: `test_asks_made_together_share_one_fetch`)."""
    flow = await make_flow(store)
    runs = [await make_run(store, flow) for _ in range(40)]
    heads = await asyncio.gather(*(store.get_run_head(run.id) for run in runs))
    assert heads == [RunHead("queued", 0)] * 40


def test_asks_on_a_new_loop_do_not_wait_for_a_batch_left_on_a_closed_one() -> None:
    fetch = CountingFetch()
    reads = HeadReads(fetch, window=60)

    async def abandon() -> None:  # the loop ends with an ask still waiting for its window
        left = asyncio.ensure_future(reads.get("1"))
        await asyncio.sleep(0)
        left.cancel()

    async def ask() -> RunHead | None:
        asked = asyncio.ensure_future(reads.get("2"))
        await asyncio.sleep(0)  # asked, waiting for its window
        await reads.aclose()
        return await asked

    asyncio.run(abandon())
    assert asyncio.run(ask()) == RunHead("running", 2)
    assert fetch.batches == [["2"]]
