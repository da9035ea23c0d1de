"""Credits: an org's balance, the grants that move it, its usage, and the refusal at the run's
door. A run of an org whose credit balance is not positive is refused before anything is written;
each completed step is charged by the run's log writer, with its checkpoint (`Store.record_step`).

The views built here are the bodies of the admin API (`api/routes/credits.py`) and what
`noukai credits` prints, so both say the same thing. Amounts are decimal strings of dollars with
six places: the store keeps integer micro-dollars, and a string carries them exactly.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from noukai.types.errors import ErrorCode
from noukai_server.runtime.errors import RequestRejected
from noukai_server.store import (
    USAGE_GROUPS,
    BadAmount,
    CreditBalance,
    CreditGrant,
    OrgNotFound,
    Store,
    UsageRow,
    micro_to_usd,
    usd_to_micro,
)

RECENT_GRANTS: Final = 20
"""How many of the latest grants a view of an org's credits lists."""


async def refuse_without_credit(store: Store, org: str) -> None:
    """402 INSUFFICIENT_CREDITS when `org` has a balance and it is zero or less; an org without a
    balance is unlimited (the self-hosted default). One primary-key read per run."""
    balance = await store.credit_balance_micro_usd(org)
    if balance is not None and balance <= 0:
        raise RequestRejected(
            ErrorCode.INSUFFICIENT_CREDITS,
            f"org {org!r} has no credit left (balance {micro_to_usd(balance)} USD): "
            "an admin adds some with `noukai credits add` or POST /api/v1/orgs/{org}/credits",
            balanceUsd=micro_to_usd(balance),
        )


class CreditService:
    """What admins ask of an org's credits and usage (authorisation is the caller's)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(self, org: str, usd: str | Decimal, note: str | None = None) -> dict[str, Any]:
        """Add `usd` dollars (negative: a correction) and return the org's credits view.
        422 VALIDATION_ERROR for a bad amount, 404 NOT_FOUND for an unknown org."""
        try:
            amount = usd_to_micro(usd)
        except BadAmount as exc:
            raise RequestRejected(
                ErrorCode.VALIDATION_ERROR,
                f"invalid request: usd: {exc}",
                errors=[{"loc": ["body", "usd"], "message": str(exc)}],
            ) from None
        try:
            await self._store.add_credits(org, amount, note=note)
        except OrgNotFound:
            raise RequestRejected(ErrorCode.NOT_FOUND, f"no org {org!r}") from None
        return await self.show(org)

    async def show(self, org: str) -> dict[str, Any]:
        balance = await self._store.credit_balance(org)
        grants = await self._store.list_credit_grants(org, limit=RECENT_GRANTS)
        return credits_view(org, balance, grants)

    async def usage(
        self, org: str, *, since: datetime | None, until: datetime | None, group_by: str
    ) -> dict[str, Any]:
        """Usage in `[since, until)` (aware datetimes) by `group_by`; 422 VALIDATION_ERROR for a
        range that ends before it starts or an unknown grouping."""
        if group_by not in USAGE_GROUPS:
            raise RequestRejected(
                ErrorCode.VALIDATION_ERROR, f"invalid request: group_by: use one of {', '.join(USAGE_GROUPS)}"
            )
        if since is not None and until is not None and until < since:
            raise RequestRejected(
                ErrorCode.VALIDATION_ERROR,
                "invalid request: `to` is before `from`",
                errors=[{"loc": ["query", "to"], "message": "before `from`"}],
            )
        rows = await self._store.usage(org, since=since, until=until, group_by=group_by)
        return usage_view(org, group_by, since, until, rows)


def credits_view(org: str, balance: CreditBalance | None, grants: list[CreditGrant]) -> dict[str, Any]:
    """The body of `GET /orgs/{org}/credits`."""
    return {
        "org": org,
        "limited": balance is not None,
        "balanceUsd": None if balance is None else micro_to_usd(balance.balance_micro_usd),
        "updatedAt": None if balance is None else balance.updated_at.isoformat(),
        "grants": [_grant(grant) for grant in grants],
    }


def _grant(grant: CreditGrant) -> dict[str, Any]:
    return {
        "id": grant.id,
        "amountUsd": micro_to_usd(grant.amount_micro_usd),
        "balanceUsd": micro_to_usd(grant.balance_micro_usd),
        "note": grant.note,
        "createdAt": grant.created_at.isoformat(),
    }


def usage_view(
    org: str, group_by: str, since: datetime | None, until: datetime | None, rows: list[UsageRow]
) -> dict[str, Any]:
    """The body of `GET /orgs/{org}/usage`."""
    total = UsageRow(
        org,
        sum(row.cost_micro_usd for row in rows),
        sum(row.prompt_tokens for row in rows),
        sum(row.completion_tokens for row in rows),
        sum(row.steps for row in rows),
        # A run has one project, flow and key: its steps never fall in two groups.
        sum(row.runs for row in rows),
    )
    return {
        "org": org,
        "groupBy": group_by,
        "from": None if since is None else since.isoformat(),
        "to": None if until is None else until.isoformat(),
        "usage": [_usage_group(row) for row in rows],
        "total": _usage_group(total),
    }


def _usage_group(row: UsageRow) -> dict[str, Any]:
    return {
        "group": row.group,
        "costUsd": micro_to_usd(row.cost_micro_usd),
        "tokens": {
            "prompt": row.prompt_tokens,
            "completion": row.completion_tokens,
            "total": row.prompt_tokens + row.completion_tokens,
        },
        "steps": row.steps,
        "runs": row.runs,
    }
