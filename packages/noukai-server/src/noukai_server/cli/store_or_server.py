"""How a management command (`keys`, `credits`, `flows push`) finds what it works on: the local
store the server uses (never created here), or a running server's HTTP API when a URL is set.

The command-line options they share are declared once here, so every command reads them alike.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from noukai_server.config import ConfigError

if TYPE_CHECKING:
    from noukai_server.cli.remote import Remote
    from noukai_server.config import ServerConfig
    from noukai_server.store import Store

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="NOUKAI_DATA_DIR",
        show_default=False,
        help="Where the embedded store lives (default .noukai; store.data_dir in noukai.toml).",
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="NOUKAI_DATABASE_URL",
        help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db (default: SQLite).",
    ),
]
ServerUrl = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="NOUKAI_BASE_URL",
        show_default=False,
        help="A running server's URL: talk to it through its HTTP API (remote mode, the default "
        "whenever a URL is set) instead of opening a local store.",
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar="NOUKAI_API_KEY", show_default=False, help="The API key (remote mode)."),
]
Local = Annotated[
    bool,
    typer.Option("--local", help="Open the local store (--data-dir / --database-url) even if a URL is set."),
]

T = TypeVar("T")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: message` on stderr; the exit to raise (1: refused, 2: a usage error)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


def load_config(
    data_dir: Path | None, database_url: str | None, config_file: Path | None = None, **overrides: object
) -> ServerConfig:
    """The effective settings: the file, the environment, then these options (None: not given);
    exit 1 with the message when one is not allowed."""
    from noukai_server.settings import load_server_config

    try:
        return load_server_config(
            config_file, None, data_dir=data_dir, database_url=database_url, **overrides
        )
    except ConfigError as exc:
        raise fail(str(exc)) from exc


async def open_existing_store(
    data_dir: Path | None, database_url: str | None, hint: str, config_file: Path | None = None
) -> Store:
    """Open the store the server uses, never creating one: exit 1 (nothing created) when the SQLite
    file does not exist or the database has no Noukai schema yet. An existing store is brought up
    to date like `serve` does."""
    from noukai_server.store import Store
    from noukai_server.store.db import Database, normalise_url
    from noukai_server.store.errors import StoreError
    from noukai_server.store.migrate import current_revision

    try:
        url = load_config(data_dir, database_url, config_file).resolved_database_url
        dialect, parsed = normalise_url(url)
    except (ConfigError, StoreError) as exc:
        raise fail(str(exc)) from exc
    todo = (
        "`noukai serve` (or `noukai migrate`) creates it; point at the server's store with "
        f"--data-dir DIR (or NOUKAI_DATA_DIR) or --database-url URL; {hint}"
    )
    missing = _missing_file(parsed.database or "") if dialect == "sqlite" else None
    if missing is not None:
        raise fail(f"no Noukai store here: {missing} does not exist (nothing was created).\n  {todo}")
    where = parsed.render_as_string(hide_password=True)
    try:
        db = await Database.open(url)
    except Exception as exc:
        raise fail(f"cannot open the database {where}: {exc}") from exc
    try:
        async with db.read() as conn:
            revision = await current_revision(conn)
    finally:
        await db.close()
    if revision is None:
        raise fail(f"no Noukai store here: the database {where} has no Noukai schema.\n  {todo}")
    return await Store.connect(url)


def _missing_file(path: str) -> Path | None:
    """The SQLite file's absolute path when it does not exist (opening it would create it)."""
    file = Path(path).resolve()
    return None if file.is_file() else file


def server_url(ctx: typer.Context, url: str | None, local: bool) -> str | None:
    """The server URL in remote mode, None in local mode; exit 2 for a contradictory command line."""
    given = {name for name in ("url", "data_dir", "database_url") if _on_command_line(ctx, name)}
    if local:
        if "url" in given:
            raise fail("--local and --url exclude each other", code=2)
        return None
    if not (url or "").strip():
        return None
    if given & {"data_dir", "database_url"}:
        source = "--url" if "url" in given else f"NOUKAI_BASE_URL ({url})"
        raise fail(
            f"{source} selects remote mode, where --data-dir and --database-url do not apply; "
            "add --local to use the local store, or drop them to use the server",
            code=2,
        )
    return url


def _on_command_line(ctx: typer.Context, name: str) -> bool:
    # By name: typer ships its own copy of click, whose ParameterSource is not click's.
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def admin_remote(
    ctx: typer.Context, url: str | None, api_key: str | None, local: bool, *, purpose: str | None = None
) -> Remote | None:
    """In remote mode, the server to manage through its admin API (exit 2 without an
    `--api-key`, saying what `purpose` needs); None in local mode."""
    from noukai_server.cli.remote import Remote
    from noukai_server.cli.run import UsageError

    server = server_url(ctx, url, local)
    if server is None:
        return None
    try:
        return Remote.of(server, api_key)
    except UsageError as exc:
        if purpose is None:
            raise fail(str(exc), code=2) from exc
        raise fail(
            f"{exc}: {purpose} at {server} needs an admin key of the org"
            " (or manage the store directly: --local --data-dir DIR)",
            code=2,
        ) from exc


def remotely(call: Callable[[], T]) -> T:
    """`call`, a request to the server; exit 1 with the server's refusal."""
    from noukai_server.cli.remote import RemoteFailure

    try:
        return call()
    except RemoteFailure as exc:
        raise fail(str(exc)) from exc
