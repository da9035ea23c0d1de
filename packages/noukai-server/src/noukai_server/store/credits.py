"""Credit balances, the grants that move them, and the per-step charges that spend them (usage).

Money is integer micro-dollars (`MICRO_USD` per dollar): exact on SQLite and PostgreSQL alike
(SQLite has no exact decimal column), and a balance moves by one atomic `balance = balance - ?`.
A step's exact cost (a `Decimal`, `RunState.cost_usd`) is rounded once per run, not per step: each
charge is the run's cumulative cost rounded to micro-dollars minus what the run was already
charged, so a run's charges always add up to its rounded total, however many steps it has.

Charges are written in the same transaction as the step's checkpoint (the fenced write that moves
the run's cursor past the step), keyed by (run id, step index): a step is charged exactly when its
completion is durable, a retried attempt after a lost worker finds the charge already there (or
finds neither, and is charged once when it completes), and a zombie's write is refused whole by the
attempt fence.

The charging statements are plain SQL with named parameters, run both by the SQLite hot path
(`sqlite3`) and through SQLAlchemy (`sync_execute`), so the two paths cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from .db import dialect_insert
from .errors import NotFoundError
from .schema import UTCDateTime, credit_balances, credit_grants, flows, orgs, projects, step_charges

MICRO_USD: Final = 1_000_000
"""Micro-dollars per dollar."""
MAX_GRANT_MICRO_USD: Final = 1_000_000_000 * MICRO_USD
"""The largest single grant or correction (a billion dollars): far below 64 bits, so no sum of a
sane number of them overflows a BigInteger."""

UsageGroup = Literal["org", "project", "flow", "key"]
USAGE_GROUPS: Final[tuple[UsageGroup, ...]] = ("org", "project", "flow", "key")


class OrgNotFound(NotFoundError):
    """No org has this id."""


class BadAmount(ValueError):
    """An amount of dollars that is not a finite number with at most six decimals, is zero, or is
    larger than `MAX_GRANT_MICRO_USD`: the caller's mistake."""


def usd_to_micro(amount: str | int | float | Decimal) -> int:
    """An amount of dollars as micro-dollars, exactly; `BadAmount` if it cannot be one."""
    try:
        # str() first: a float like 0.1 becomes "0.1", what its writer meant.
        value = Decimal(str(amount)) if not isinstance(amount, Decimal) else amount
    except InvalidOperation:
        raise BadAmount(f"{amount!r} is not an amount of dollars") from None
    if not value.is_finite():
        raise BadAmount(f"{amount!r} is not an amount of dollars")
    micro = value * MICRO_USD
    if micro != micro.to_integral_value():
        raise BadAmount(f"{amount} has more than six decimals (the unit is a millionth of a dollar)")
    if micro == 0:
        raise BadAmount("the amount must not be zero")
    if abs(micro) > MAX_GRANT_MICRO_USD:
        raise BadAmount(f"{amount} is more than {MAX_GRANT_MICRO_USD // MICRO_USD} dollars")
    return int(micro)


def micro_to_usd(micro: int) -> str:
    """Micro-dollars as a plain decimal string of dollars, six decimals (`"-0.000250"`)."""
    return format(Decimal(micro).scaleb(-6), "f")


def cost_to_micro(cost: Decimal) -> int:
    """An exact cost rounded to micro-dollars, half up (as `format_cost` rounds costs on the wire)."""
    return int((cost * MICRO_USD).to_integral_value(rounding=ROUND_HALF_UP))


@dataclass(frozen=True, slots=True)
class CreditBalance:
    org_id: str
    balance_micro_usd: int
    updated_at: datetime

    @property
    def exhausted(self) -> bool:
        return self.balance_micro_usd <= 0


@dataclass(frozen=True, slots=True)
class CreditGrant:
    id: int
    org_id: str
    amount_micro_usd: int
    balance_micro_usd: int
    """The balance right after this grant."""
    note: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StepCharge:
    """What a step's checkpoint asks to charge: the run's totals once the step completed."""

    step_index: int
    total_cost_usd: Decimal
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Recorded:
    """The outcome of a worker write that carried a step charge."""

    promoted: str | None
    """As `Store.record` returns: a thread's waiting run made claimable by this write."""
    balance_micro_usd: int | None
    """The org's balance after the charge; None when the org has no balance (unlimited) or the
    write spent nothing (see `charge_step`)."""

    @property
    def exhausted(self) -> bool:
        return self.balance_micro_usd is not None and self.balance_micro_usd <= 0


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Usage of one group (an org, project, flow or key) over a time range."""

    group: str | None
    """The org id, `project` slug, `project/flow` slugs, or key id (None: runs without a key)."""
    cost_micro_usd: int
    prompt_tokens: int
    completion_tokens: int
    steps: int
    runs: int


# -- charging: plain SQL, shared by both paths ----------------------------------------------------

Execute = Callable[[str, Mapping[str, Any]], list[tuple[Any, ...]]]
"""Run one statement with named parameters and return its rows (empty for a write)."""

_CHARGE = (
    # One statement: the step's row, holding what the run's totals add to what it was charged so
    # far (never less than nothing), unless it adds nothing or the step is charged already (the
    # primary key: a retried write charges nothing twice). It answers the cost it charged, or no
    # row. SQLite wants a WHERE on an INSERT ... SELECT with ON CONFLICT; it has one.
    "INSERT INTO step_charges (run_id, step_index, org_id, project_id, flow_id, api_key_id, "
    "cost_micro_usd, prompt_tokens, completion_tokens, created_at) "
    "SELECT r.id, :step_index, r.org_id, r.project_id, r.flow_id, r.api_key_id, "
    "d.cost, d.prompt, d.completion, :now "
    "FROM runs r, (SELECT "
    "CASE WHEN :cost > s.cost THEN :cost - s.cost ELSE 0 END AS cost, "
    "CASE WHEN :prompt > s.prompt THEN :prompt - s.prompt ELSE 0 END AS prompt, "
    "CASE WHEN :completion > s.completion THEN :completion - s.completion ELSE 0 END AS completion "
    "FROM (SELECT coalesce(sum(cost_micro_usd), 0) AS cost, coalesce(sum(prompt_tokens), 0) AS prompt, "
    "coalesce(sum(completion_tokens), 0) AS completion FROM step_charges WHERE run_id = :run_id) s) d "
    "WHERE r.id = :run_id AND (d.cost > 0 OR d.prompt > 0 OR d.completion > 0) "
    "ON CONFLICT (run_id, step_index) DO NOTHING RETURNING cost_micro_usd"
)
_SPEND = (
    "UPDATE credit_balances SET balance_micro_usd = balance_micro_usd - :cost, updated_at = :now "
    "WHERE org_id = (SELECT org_id FROM runs WHERE id = :run_id) RETURNING balance_micro_usd"
)
BALANCE_OF_ORG = "SELECT balance_micro_usd FROM credit_balances WHERE org_id = :org"


def charge_step(execute: Execute, run_id: str, charge: StepCharge, now: Any) -> int | None:
    """Charge the run's step (inside the caller's transaction, after its fenced run update) and
    return the org's balance afterwards when the step spent money, None otherwise (an org without
    a balance, or a step that cost nothing). `now` is the time as the driver takes it.

    Idempotent: a step already charged is not charged again. The amount is the run's rounded total
    minus its earlier charges; a step that cost nothing and used no tokens writes no row and runs
    no statement. A free step does not read the balance either: it cannot overdraw, and the run's
    next step that costs something learns the balance from its own charge (so a run whose org was
    drained by other runs stops after at most one more paid step: the bound on overdraw)."""
    free_so_far = charge.total_cost_usd == 0 and charge.prompt_tokens == 0 and charge.completion_tokens == 0
    if free_so_far:  # nothing to charge (template steps of a run that has cost nothing yet)
        return None
    params = {
        "run_id": run_id,
        "step_index": charge.step_index,
        "cost": cost_to_micro(charge.total_cost_usd),
        "prompt": charge.prompt_tokens,
        "completion": charge.completion_tokens,
        "now": now,
    }
    charged = execute(_CHARGE, params)
    cost = int(charged[0][0]) if charged else 0
    if cost == 0:  # charged already, or the step added tokens but no cost
        return None
    # One atomic decrement: concurrent runs of the org queue on this row's lock (PostgreSQL) or on
    # the single writer (SQLite), so no charge is lost; the balance may go below zero by what the
    # steps in flight cost, and each of those runs stops at its next step boundary.
    rows = execute(_SPEND, {"run_id": run_id, "cost": cost, "now": now})
    return int(rows[0][0]) if rows else None


def sync_execute(conn: sa.Connection) -> Execute:
    """`Execute` on a SQLAlchemy connection (inside `AsyncConnection.run_sync`)."""

    def execute(sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        statement = sa.text(sql)
        if "now" in params:
            statement = statement.bindparams(sa.bindparam("now", type_=UTCDateTime()))
        result = conn.execute(statement, dict(params))
        return [tuple(row) for row in result] if result.returns_rows else []

    return execute


async def charge_step_async(
    conn: AsyncConnection, run_id: str, charge: StepCharge, now: datetime
) -> int | None:
    return await conn.run_sync(lambda sync: charge_step(sync_execute(sync), run_id, charge, now))


# -- balances and grants ----------------------------------------------------------------------------


async def get_balance(conn: AsyncConnection, org: str) -> CreditBalance | None:
    row = (await conn.execute(sa.select(credit_balances).where(credit_balances.c.org_id == org))).first()
    if row is None:
        return None
    m = row._mapping
    return CreditBalance(m["org_id"], m["balance_micro_usd"], m["updated_at"])


async def add_credits(
    conn: AsyncConnection, org: str, amount_micro_usd: int, note: str | None, now: datetime
) -> CreditGrant:
    """Add (or, negative, take back) credit: the org gets a balance if it had none, which makes its
    runs limited from now on. `OrgNotFound` for an unknown org."""
    if (await conn.execute(sa.select(orgs.c.id).where(orgs.c.id == org))).first() is None:
        raise OrgNotFound(f"no org {org!r}")
    # One upsert: the first grant creates the balance, later ones move it (two first grants at
    # once both land, the second as an update).
    upsert = dialect_insert(conn, credit_balances).values(
        org_id=org, balance_micro_usd=amount_micro_usd, updated_at=now
    )
    upsert = upsert.on_conflict_do_update(
        index_elements=[credit_balances.c.org_id],
        set_={
            "balance_micro_usd": credit_balances.c.balance_micro_usd + upsert.excluded.balance_micro_usd,
            "updated_at": upsert.excluded.updated_at,
        },
    )
    balance = int((await conn.execute(upsert.returning(credit_balances.c.balance_micro_usd))).scalar_one())
    inserted = await conn.execute(
        sa.insert(credit_grants)
        .values(
            org_id=org,
            amount_micro_usd=amount_micro_usd,
            balance_micro_usd=balance,
            note=note,
            created_at=now,
        )
        .returning(credit_grants.c.id)
    )
    grant_id = int(inserted.scalar_one())
    return CreditGrant(grant_id, org, amount_micro_usd, balance, note, now)


async def list_grants(conn: AsyncConnection, org: str, limit: int) -> list[CreditGrant]:
    """The org's latest grants, newest first."""
    rows = await conn.execute(
        sa.select(credit_grants)
        .where(credit_grants.c.org_id == org)
        .order_by(credit_grants.c.created_at.desc(), credit_grants.c.id.desc())
        .limit(limit)
    )
    return [
        CreditGrant(
            m["id"], m["org_id"], m["amount_micro_usd"], m["balance_micro_usd"], m["note"], m["created_at"]
        )
        for m in (row._mapping for row in rows)
    ]


# -- usage ----------------------------------------------------------------------------------------------


async def usage(
    conn: AsyncConnection,
    org: str,
    since: datetime | None,
    until: datetime | None,
    group_by: UsageGroup,
) -> list[UsageRow]:
    """What the org's steps charged in `[since, until)`, per group, largest cost first."""
    charges = step_charges
    label: sa.ColumnElement[Any]
    source: sa.FromClause = charges
    if group_by == "org":
        label = charges.c.org_id
    elif group_by == "project":
        source = charges.outerjoin(projects, projects.c.id == charges.c.project_id)
        label = projects.c.slug
    elif group_by == "flow":
        source = charges.outerjoin(flows, flows.c.id == charges.c.flow_id).outerjoin(
            projects, projects.c.id == charges.c.project_id
        )
        label = projects.c.slug + "/" + flows.c.slug
    else:
        label = charges.c.api_key_id
    cost = sa.func.coalesce(sa.func.sum(charges.c.cost_micro_usd), 0)
    statement = (
        sa.select(
            label.label("grp"),
            cost.label("cost"),
            sa.func.coalesce(sa.func.sum(charges.c.prompt_tokens), 0),
            sa.func.coalesce(sa.func.sum(charges.c.completion_tokens), 0),
            sa.func.count(),
            sa.func.count(sa.distinct(charges.c.run_id)),
        )
        .select_from(source)
        .where(charges.c.org_id == org)
        .group_by(label)
        .order_by(cost.desc(), label)
    )
    if since is not None:
        statement = statement.where(charges.c.created_at >= since)
    if until is not None:
        statement = statement.where(charges.c.created_at < until)
    rows = await conn.execute(statement)
    return [
        UsageRow(group, int(cost_), int(prompt), int(completion), int(steps), int(runs))
        for group, cost_, prompt, completion, steps, runs in rows
    ]
