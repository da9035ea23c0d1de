"""`noukai credits add|show|usage`: an org's credit balance and what its runs cost.

Local mode opens the store `noukai serve` uses (as `noukai keys` does; exit 1, nothing created,
when there is none). Remote mode (`--url` / `NOUKAI_BASE_URL`, with an org-wide admin key) goes
through the server's admin API, `/api/v1/orgs/{org}/credits` and `/usage`. Both print from the
API's own views, so they print the same thing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from noukai_server.cli.config_cmd import ConfigFileOption
from noukai_server.cli.store_or_server import (
    ApiKey,
    DatabaseUrl,
    DataDir,
    Local,
    ServerUrl,
    admin_remote,
    fail,
    open_existing_store,
    remotely,
)

if TYPE_CHECKING:
    from noukai_server.cli.remote import Remote
    from noukai_server.runtime.credits import CreditService

credits_app = typer.Typer(help="Credit balances (USD) of orgs, and their usage.", no_args_is_help=True)

OrgOption = Annotated[str, typer.Option("--org", help="The org.")]

_HINT = "or use a running server's admin API with --url URL and an admin --api-key KEY"


@credits_app.command("add")
def add(
    ctx: typer.Context,
    org: OrgOption,
    usd: Annotated[
        str, typer.Option("--usd", help="Dollars to add (negative: a correction), six decimals at most.")
    ],
    note: Annotated[str | None, typer.Option(help="Why (kept with the grant).")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config_file: ConfigFileOption = None,
    url: ServerUrl = None,
    api_key: ApiKey = None,
    local: Local = False,
) -> None:
    """Add credit to an org. Its first grant gives it a balance: from then on its runs are refused
    (402) once the balance is not positive, and each completed step is charged."""
    from noukai_server.store import BadAmount, usd_to_micro

    try:
        usd_to_micro(usd)  # refused here, before any store or server is asked
    except BadAmount as exc:
        raise fail(f"--usd: {exc}", code=2) from exc
    remote = admin_remote(ctx, url, api_key, local)
    if remote is not None:
        view = _call(remote, "POST", f"/orgs/{org}/credits", json={"usd": usd, "note": note})
    else:
        view = _local(lambda credits: credits.add(org, usd, note), data_dir, database_url, config_file)
    typer.echo(f"added {_signed(usd)} USD to {org}")
    _print_credits(view)


@credits_app.command("show")
def show(
    ctx: typer.Context,
    org: OrgOption,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config_file: ConfigFileOption = None,
    url: ServerUrl = None,
    api_key: ApiKey = None,
    local: Local = False,
) -> None:
    """Show an org's balance and its latest grants."""
    remote = admin_remote(ctx, url, api_key, local)
    if remote is not None:
        view = _call(remote, "GET", f"/orgs/{org}/credits")
    else:
        view = _local(lambda credits: credits.show(org), data_dir, database_url, config_file)
    _print_credits(view)


@credits_app.command("usage")
def usage(
    ctx: typer.Context,
    org: OrgOption,
    since: Annotated[
        datetime | None, typer.Option("--from", help="From this time (UTC unless it has a zone).")
    ] = None,
    until: Annotated[datetime | None, typer.Option("--to", help="Before this time.")] = None,
    group_by: Annotated[str, typer.Option("--group-by", help="org, project, flow or key.")] = "org",
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config_file: ConfigFileOption = None,
    url: ServerUrl = None,
    api_key: ApiKey = None,
    local: Local = False,
) -> None:
    """What an org's completed steps cost, per org, project, flow or key, over a time range."""
    from noukai_server.store import USAGE_GROUPS

    if group_by not in USAGE_GROUPS:
        raise fail(f"--group-by {group_by!r}: use one of {', '.join(USAGE_GROUPS)}", code=2)
    start, end = _utc(since), _utc(until)
    if start is not None and end is not None and end < start:
        raise fail("--to is before --from", code=2)
    remote = admin_remote(ctx, url, api_key, local)
    if remote is not None:
        params: dict[str, str] = {"group_by": group_by}
        params |= {"from": start.isoformat()} if start else {}
        params |= {"to": end.isoformat()} if end else {}
        view = _call(remote, "GET", f"/orgs/{org}/usage", params=params)
    else:
        view = _local(
            lambda credits: credits.usage(org, since=start, until=end, group_by=group_by),
            data_dir,
            database_url,
            config_file,
        )
    typer.echo("group\tcost_usd\tprompt_tokens\tcompletion_tokens\tsteps\truns")
    for row in [*view["usage"], {**view["total"], "group": "TOTAL"}]:
        tokens = row["tokens"]
        group = row["group"] if row["group"] is not None else "-"
        typer.echo(
            f"{group}\t{row['costUsd']}\t{tokens['prompt']}\t{tokens['completion']}\t{row['steps']}\t{row['runs']}"
        )


# -- plumbing -----------------------------------------------------------------------------------


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _signed(usd: str) -> str:
    return usd if usd.startswith("-") else f"+{usd}"


def _call(
    remote: Remote, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None
) -> dict[str, Any]:
    """One admin API call; exit 1 with the server's code and message when it refuses."""
    from noukai_server.cli.remote import admin_call

    return remotely(lambda: admin_call(remote, method, path, body=json, params=params))


def _local(
    work: Callable[[CreditService], Awaitable[dict[str, Any]]],
    data_dir: Path | None,
    database_url: str | None,
    config_file: Path | None,
) -> dict[str, Any]:
    """`work` on the local store; exit 1 with the code and message of a refusal."""
    from noukai_server.runtime import RequestRejected
    from noukai_server.runtime.credits import CreditService

    async def run() -> dict[str, Any]:
        store = await open_existing_store(data_dir, database_url, _HINT, config_file)
        try:
            return await work(CreditService(store))
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except RequestRejected as exc:
        raise fail(f"{exc.code.value}: {exc.message}") from exc


def _print_credits(view: dict[str, Any]) -> None:
    if not view["limited"]:
        typer.echo(f"{view['org']}: no balance: its runs are unlimited")
        return
    typer.echo(f"{view['org']}: balance {view['balanceUsd']} USD")
    for grant in view["grants"]:
        note = f"\t{grant['note']}" if grant["note"] else ""
        typer.echo(
            f"  {grant['createdAt']}\t{_signed(grant['amountUsd'])}\tbalance {grant['balanceUsd']}{note}"
        )
