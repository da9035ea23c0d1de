"""Credit balances, grants and step charges in the store, on SQLite (the hot path) and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from noukai_server.store import (
    BadAmount,
    EventRow,
    LeaseLost,
    OrgNotFound,
    RunRecord,
    RunUpdate,
    StepCharge,
    Store,
    micro_to_usd,
    usd_to_micro,
)
from tests.store.conftest import FakeClock, make_flow, make_run

pytestmark = pytest.mark.anyio


def charge(step_index: int, total: str, prompt: int = 0, completion: int = 0) -> StepCharge:
    return StepCharge(step_index, Decimal(total), prompt, completion)


def event(seq: int) -> EventRow:
    return EventRow(seq, "step_completed", '{"x": 1}')


async def claimed_run(store: Store, **overrides: Any) -> RunRecord:
    run = await make_run(store, **overrides)
    claimed = await store.claim_next_run("w1", 30)
    assert claimed is not None and claimed.id == run.id
    return claimed


# -- amounts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "micro"),
    [
        ("12.5", 12_500_000),
        ("0.000001", 1),
        ("-3", -3_000_000),
        (Decimal("1e2"), 100_000_000),
        (2, 2_000_000),
    ],
)
def test_usd_to_micro_is_exact(amount: str | int | Decimal, micro: int) -> None:
    assert usd_to_micro(amount) == micro


@pytest.mark.parametrize("amount", ["0", "0.0000001", "abc", "NaN", "Infinity", "2000000000", ""])
def test_bad_amounts_are_refused(amount: str) -> None:
    with pytest.raises(BadAmount):
        usd_to_micro(amount)


def test_micro_to_usd() -> None:
    assert micro_to_usd(12_500_000) == "12.500000"
    assert micro_to_usd(-250) == "-0.000250"
    assert micro_to_usd(0) == "0.000000"


# -- balances and grants --------------------------------------------------------------------------


async def test_an_org_without_a_balance_is_unlimited(store: Store) -> None:
    await store.ensure_org("acme")
    assert await store.credit_balance("acme") is None
    assert await store.credit_balance_micro_usd("acme") is None
    assert await store.list_credit_grants("acme") == []


async def test_grants_and_corrections(store: Store, clock: FakeClock) -> None:
    await store.ensure_org("acme")
    first = await store.add_credits("acme", 10_000_000, note="welcome")
    assert (first.amount_micro_usd, first.balance_micro_usd, first.note) == (
        10_000_000,
        10_000_000,
        "welcome",
    )
    clock.advance(1)
    second = await store.add_credits("acme", -2_500_000)
    assert second.balance_micro_usd == 7_500_000
    balance = await store.credit_balance("acme")
    assert balance is not None and balance.balance_micro_usd == 7_500_000 and not balance.exhausted
    assert await store.credit_balance_micro_usd("acme") == 7_500_000
    grants = await store.list_credit_grants("acme")
    assert [g.id for g in grants] == [second.id, first.id]
    assert [g.amount_micro_usd for g in grants] == [-2_500_000, 10_000_000]
    assert len(await store.list_credit_grants("acme", limit=1)) == 1


async def test_a_correction_can_take_the_balance_below_zero(store: Store) -> None:
    await store.ensure_org("acme")
    await store.add_credits("acme", 1_000_000)
    grant = await store.add_credits("acme", -3_000_000)
    assert grant.balance_micro_usd == -2_000_000
    balance = await store.credit_balance("acme")
    assert balance is not None and balance.exhausted


async def test_credits_for_an_unknown_org_are_refused(store: Store) -> None:
    with pytest.raises(OrgNotFound):
        await store.add_credits("nobody", 1_000_000)
    assert await store.credit_balance("nobody") is None


async def test_concurrent_first_grants_both_count(store: Store) -> None:
    await store.ensure_org("acme")
    await asyncio.gather(*(store.add_credits("acme", 1_000_000) for _ in range(5)))
    assert await store.credit_balance_micro_usd("acme") == 5_000_000


# -- charging steps --------------------------------------------------------------------------------


async def test_a_step_is_charged_with_its_checkpoint(store: Store) -> None:
    run = await claimed_run(store)
    await store.add_credits(run.org_id, 5_000_000)
    recorded = await store.record_step(
        run.id, run.attempt, [event(1)], RunUpdate(cursor=1), charge(0, "1.25", 10, 3)
    )
    assert recorded.balance_micro_usd == 3_750_000 and not recorded.exhausted
    stored = await store.get_run(run.id)
    assert stored is not None and (stored.cursor, stored.last_seq) == (1, 1)
    [row] = await store.usage(run.org_id)
    assert (row.cost_micro_usd, row.prompt_tokens, row.completion_tokens, row.steps, row.runs) == (
        1_250_000,
        10,
        3,
        1,
        1,
    )


async def test_charges_are_differences_of_the_run_total(store: Store) -> None:
    run = await claimed_run(store)
    await store.add_credits(run.org_id, 1_000_000)
    # Three steps of 0.0000004 USD each: each alone rounds to 0 micro-dollars, their total to 1.
    for index, total in enumerate(["0.0000004", "0.0000008", "0.0000012"]):
        await store.record_step(run.id, run.attempt, [], RunUpdate(cursor=index + 1), charge(index, total))
    assert await store.credit_balance_micro_usd(run.org_id) == 1_000_000 - 1
    [row] = await store.usage(run.org_id)
    assert row.cost_micro_usd == 1  # the run's rounded total, not three rounded parts


async def test_a_step_already_charged_is_not_charged_again(store: Store) -> None:
    run = await claimed_run(store)
    await store.add_credits(run.org_id, 5_000_000)
    await store.record_step(run.id, run.attempt, [], RunUpdate(cursor=1), charge(0, "1"))
    # The same step's charge again (say, a write taken twice), even with a larger total.
    again = await store.record_step(run.id, run.attempt, [], RunUpdate(cursor=1), charge(0, "3"))
    assert again.balance_micro_usd is None  # it spent nothing: no balance to tell
    assert await store.credit_balance_micro_usd(run.org_id) == 4_000_000
    [row] = await store.usage(run.org_id)
    assert (row.cost_micro_usd, row.steps) == (1_000_000, 1)


async def test_a_zombie_is_not_charged(store: Store, clock: FakeClock) -> None:
    run = await claimed_run(store)
    await store.add_credits(run.org_id, 5_000_000)
    clock.advance(60)  # the lease expires; another worker takes the run as attempt 2
    retried = await store.claim_next_run("w2", 30)
    assert retried is not None and retried.attempt == 2
    with pytest.raises(LeaseLost):
        await store.record_step(run.id, 1, [event(1)], RunUpdate(cursor=1), charge(0, "2"))
    assert await store.credit_balance_micro_usd(run.org_id) == 5_000_000
    assert await store.usage(run.org_id) == []
    recorded = await store.record_step(run.id, 2, [event(1)], RunUpdate(cursor=1), charge(0, "2"))
    assert recorded.balance_micro_usd == 3_000_000


async def test_the_balance_can_run_out(store: Store) -> None:
    run = await claimed_run(store)
    await store.add_credits(run.org_id, 1_000_000)
    first = await store.record_step(run.id, run.attempt, [], RunUpdate(cursor=1), charge(0, "0.6"))
    assert not first.exhausted
    second = await store.record_step(run.id, run.attempt, [], RunUpdate(cursor=2), charge(1, "1.2"))
    assert second.exhausted and second.balance_micro_usd == -200_000


async def test_an_unlimited_org_is_charged_nothing_but_its_usage_is_kept(store: Store) -> None:
    run = await claimed_run(store)
    recorded = await store.record_step(run.id, run.attempt, [], RunUpdate(cursor=1), charge(0, "2", 5, 5))
    assert recorded.balance_micro_usd is None and not recorded.exhausted
    assert await store.credit_balance(run.org_id) is None
    [row] = await store.usage(run.org_id)
    assert row.cost_micro_usd == 2_000_000


async def test_a_free_step_writes_no_usage(store: Store) -> None:
    run = await claimed_run(store)
    await store.add_credits(run.org_id, 1_000_000)
    recorded = await store.record_step(run.id, run.attempt, [], RunUpdate(cursor=1), charge(0, "0"))
    assert recorded.balance_micro_usd is None and not recorded.exhausted  # nothing spent, nothing read
    assert await store.credit_balance_micro_usd(run.org_id) == 1_000_000
    assert await store.usage(run.org_id) == []


async def test_a_free_step_after_others_drained_the_org_goes_on_and_a_paid_one_stops(store: Store) -> None:
    run = await claimed_run(store)
    await store.add_credits(run.org_id, 1_000_000)
    await store.add_credits(run.org_id, -1_000_000)  # as if the org's other runs had spent it all
    free = await store.record_step(run.id, run.attempt, [], RunUpdate(cursor=1), charge(0, "0"))
    assert not free.exhausted  # a free step cannot overdraw: the run goes on
    paid = await store.record_step(run.id, run.attempt, [], RunUpdate(cursor=2), charge(1, "0.25"))
    assert paid.exhausted and paid.balance_micro_usd == -250_000  # one paid step over, then it stops


async def test_concurrent_runs_lose_no_charge(store: Store) -> None:
    flow = await make_flow(store)
    runs = [await make_run(store, flow) for _ in range(8)]
    claimed = [await store.claim_next_run(f"w{i}", 30) for i in range(len(runs))]
    await store.add_credits(flow.org_id, 100_000_000)

    async def steps(run: RunRecord) -> None:
        for index in range(5):
            total = str(Decimal("0.5") * (index + 1))
            await store.record_step(
                run.id, run.attempt, [], RunUpdate(cursor=index + 1), charge(index, total)
            )

    await asyncio.gather(*(steps(run) for run in claimed if run is not None))
    # 8 runs of 5 steps at 0.50 USD: exactly 20 USD spent, whatever the interleaving.
    assert await store.credit_balance_micro_usd(flow.org_id) == 80_000_000


# -- usage ------------------------------------------------------------------------------------------------


async def test_usage_by_project_flow_and_key_and_time(store: Store, clock: FakeClock) -> None:
    grader = await make_flow(store, project="web", slug="grader")
    speller = await make_flow(store, project="app", slug="speller")
    key, _ = await store.create_api_key("acme", name="ci")
    start = clock()
    for flow, key_id, total in ((grader, key.id, "1"), (grader, None, "2"), (speller, key.id, "4")):
        await make_run(store, flow, api_key_id=key_id)
        run = await store.claim_next_run("w", 30)
        assert run is not None
        await store.record_step(run.id, run.attempt, [], RunUpdate(cursor=1), charge(0, total, 1, 2))
        clock.advance(10)
    by_project = {row.group: row.cost_micro_usd for row in await store.usage("acme", group_by="project")}
    assert by_project == {"web": 3_000_000, "app": 4_000_000}
    by_flow = await store.usage("acme", group_by="flow")
    assert [(row.group, row.cost_micro_usd, row.runs) for row in by_flow] == [
        ("app/speller", 4_000_000, 1),
        ("web/grader", 3_000_000, 2),
    ]
    by_key = {row.group: row.cost_micro_usd for row in await store.usage("acme", group_by="key")}
    assert by_key == {key.id: 5_000_000, None: 2_000_000}
    [whole] = await store.usage("acme")
    assert (whole.group, whole.cost_micro_usd, whole.prompt_tokens, whole.completion_tokens) == (
        "acme",
        7_000_000,
        3,
        6,
    )
    # [since, until): the second run's step alone.
    window = await store.usage(
        "acme", since=start + timedelta(seconds=5), until=start + timedelta(seconds=15)
    )
    assert [(row.cost_micro_usd, row.steps) for row in window] == [(2_000_000, 1)]
    assert await store.usage("other") == []
