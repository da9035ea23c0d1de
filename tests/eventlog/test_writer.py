"""`RunLogWriter` over a real SQLite store and the in-process bus: events are stored before they
are published, a step's events and its checkpoint share one transaction, and an update left by an
abandoned flush still lands with the next one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from noukai.types.events import StepOutputFields, StepProgressFields, StepStartedFields
from noukai_server.bus import MemoryBus
from noukai_server.engine import RunState
from noukai_server.engine.sink import CreditsExhausted, UnstorableValue
from noukai_server.eventlog.writer import RunLogWriter
from noukai_server.store import EventRow, Recorded, RunUpdate, StepCharge, Store
from tests.store.conftest import make_run

pytestmark = pytest.mark.anyio

STARTED: StepStartedFields = {"stepId": "a", "name": None, "stepIndex": 0, "type": "llm", "attempt": 1}


def delta(n: int) -> StepOutputFields:
    return {"stepId": "a", "stepIndex": 0, "attempt": 1, "outputData": f"w{n}"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RecordingStore:
    """The real store, noting each `record` call; `hold` makes writes wait until released."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.writes: list[tuple[list[int], RunUpdate | None]] = []
        self.hold: asyncio.Event | None = None

    async def record(
        self, run_id: str, attempt: int, events: Sequence[EventRow], update: RunUpdate | None = None
    ) -> None:
        self.writes.append(([e.seq for e in events], update))
        if self.hold is not None:
            await self.hold.wait()
        await self.store.record(run_id, attempt, events, update)

    async def record_step(
        self,
        run_id: str,
        attempt: int,
        events: Sequence[EventRow],
        update: RunUpdate | None,
        charge: StepCharge,
    ) -> Recorded:
        """A checkpoint's write, which carries its step's charge: noted like `record`."""
        self.writes.append(([e.seq for e in events], update))
        if self.hold is not None:
            await self.hold.wait()
        return await self.store.record_step(run_id, attempt, events, update, charge)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.connect(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}") as opened:
        yield opened


async def _writer(store: Store) -> tuple[RunLogWriter, RecordingStore, MemoryBus, str]:
    await make_run(store)
    run = await store.claim_next_run("w1", 30)
    assert run is not None
    recording = RecordingStore(store)
    bus = MemoryBus()
    writer = RunLogWriter(recording, bus, run.id, run.attempt, run.last_seq)  # type: ignore[arg-type]
    return writer, recording, bus, run.id


async def test_a_step_and_its_checkpoint_are_one_write(store: Store) -> None:
    writer, recording, bus, run_id = await _writer(store)
    subscription = bus.subscribe(run_id)
    for n in range(5):
        await writer.emit("step_output", delta(n))
    await writer.checkpoint(1, RunState(outputs={"a": "done"}))
    [(seqs, update)] = recording.writes
    assert seqs == [1, 2, 3, 4, 5]
    assert update is not None and update.cursor == 1
    run = await store.get_run(run_id)
    assert run is not None and (run.cursor, run.last_seq) == (1, 5)
    assert [e.seq for e in subscription.take_nowait()] == [1, 2, 3, 4, 5]


async def test_a_checkpoint_charges_its_step_and_says_when_credit_ran_out(store: Store) -> None:
    writer, recording, _, run_id = await _writer(store)
    run = await store.get_run(run_id)
    assert run is not None
    await store.add_credits(run.org_id, 1_000_000)
    await writer.emit("step_started", STARTED)
    await writer.checkpoint(1, RunState(cost_usd=Decimal("0.4"), prompt_tokens=3))
    assert len(recording.writes) == 1  # the events, the cursor and the charge: one write
    assert await store.credit_balance_micro_usd(run.org_id) == 600_000
    with pytest.raises(CreditsExhausted, match=r"-0\.100000 USD"):
        await writer.checkpoint(2, RunState(cost_usd=Decimal("1.1"), prompt_tokens=6))
    stored = await store.get_run(run_id)
    assert stored is not None and stored.cursor == 2  # stored before the news
    assert await store.credit_balance_micro_usd(run.org_id) == -100_000


async def test_events_are_published_only_once_stored(store: Store) -> None:
    writer, recording, bus, run_id = await _writer(store)
    subscription = bus.subscribe(run_id)
    recording.hold = asyncio.Event()
    await writer.emit("step_started", STARTED)
    await asyncio.sleep(0.05)
    assert subscription.take_nowait() == []  # the write is held: nothing is heard yet
    assert await store.read_events(run_id) == []
    recording.hold.set()
    await writer.flush()
    assert [e.seq for e in subscription.take_nowait()] == [1]


async def test_an_abandoned_checkpoint_still_lands_with_the_next_write(store: Store) -> None:
    writer, recording, _, run_id = await _writer(store)
    recording.hold = asyncio.Event()
    await writer.emit("step_started", STARTED)  # its write is in flight (held)
    await asyncio.sleep(0)
    checkpoint = asyncio.create_task(writer.checkpoint(1, RunState()))
    await asyncio.sleep(0.05)
    checkpoint.cancel()  # say, the run was cancelled while its step was being checkpointed
    with pytest.raises(asyncio.CancelledError):
        await checkpoint
    recording.hold.set()
    await writer.emit_with_update(
        "run_cancelled", {"runId": run_id, "executionId": run_id}, RunUpdate(status="cancelled")
    )
    run = await store.get_run(run_id)
    assert run is not None
    assert (run.status, run.cursor, run.last_seq) == ("cancelled", 1, 2)


async def test_a_long_burst_is_delivered_while_it_is_emitted(store: Store) -> None:
    writer, _, bus, run_id = await _writer(store)
    subscription = bus.subscribe(run_id)
    for n in range(3000):  # a model that never awaits between tokens
        await writer.emit("step_output", delta(n))
    heard = subscription.take_nowait()
    assert heard, "nothing was delivered before the burst ended"
    await writer.flush()
    assert [e.seq for e in heard + subscription.take_nowait()] == list(range(1, 3001))


async def test_an_entry_is_the_envelope_then_the_fields_in_their_order(store: Store) -> None:
    writer, _, _, run_id = await _writer(store)
    await writer.emit("step_started", STARTED)
    await writer.emit(
        "step_output", {"stepId": "a", "stepIndex": 0, "attempt": 1, "loopIndex": 2, "outputData": "x"}
    )
    await writer.flush()
    assert [row.data for row in await store.read_events(run_id)] == [
        '{"eventType":"step_started","seq":1,"stepId":"a","name":null,"stepIndex":0,"type":"llm","attempt":1}',
        '{"eventType":"step_output","seq":2,"stepId":"a","stepIndex":0,"attempt":1,"loopIndex":2,"outputData":"x"}',
    ]


def _completed(output: object) -> StepProgressFields:
    return {
        "stepId": "a",
        "stepIndex": 0,
        "attempt": 1,
        "loopIndex": 2,
        "output": output,
        "durationMs": 0,
        "tokens": {"prompt": 0, "completion": 0, "total": 0},
        "costUsd": "0.000000",
    }


@pytest.mark.parametrize(
    ("output", "where", "problem"),
    [
        (2**64, "output", "an integer of 65 bits"),
        ({"rows": [1, {"id": -(2**63) - 1}]}, "output.rows[1].id", "an integer of 64 bits"),
        ([{1, 2}], "output[0]", "a value of type set"),
        ({"k": {(1, 2): "v"}}, "output.k", "a key of type tuple"),
    ],
)
async def test_an_unstorable_payload_is_refused_without_taking_a_seq(
    store: Store, output: object, where: str, problem: str
) -> None:
    """Found by issue 12: the seq was taken before serialising, so a refused event left a gap and
    every later write of the run was refused by the store (the run stayed `running`)."""
    writer, recording, bus, run_id = await _writer(store)
    await writer.emit("step_started", STARTED)
    with pytest.raises(UnstorableValue) as caught:
        await writer.emit("step_progress", _completed(output))
    refused = caught.value
    assert (refused.event_type, refused.where, refused.loop_index) == ("step_progress", where, 2)
    assert refused.problem.startswith(problem)
    assert writer.last_seq == 1
    await writer.emit("step_output", delta(0))
    await writer.flush(RunUpdate(cursor=1))
    stored = await store.read_events(run_id)
    assert [(e.seq, e.type) for e in stored] == [(1, "step_started"), (2, "step_output")]


async def test_the_widest_storable_integers_are_stored(store: Store) -> None:
    writer, _, _, run_id = await _writer(store)
    await writer.emit("step_progress", _completed([2**64 - 1, -(2**63)]))
    await writer.flush()
    [event] = await store.read_events(run_id)
    assert orjson.loads(event.data)["output"] == [2**64 - 1, -(2**63)]


async def test_settle_waits_for_the_write_in_flight(store: Store) -> None:
    writer, recording, _, run_id = await _writer(store)
    recording.hold = asyncio.Event()
    await writer.emit("step_started", STARTED)
    settled = asyncio.create_task(writer.settle())
    await asyncio.sleep(0.05)
    assert not settled.done()
    recording.hold.set()
    await settled
    run = await store.get_run(run_id)
    assert run is not None and run.last_seq == 1
