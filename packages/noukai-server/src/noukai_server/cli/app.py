"""The `noukai` command: serve, manage keys and flows, check the settings.

Every command reads the same settings (`settings.load_server_config`): noukai.toml (`--config`,
`NOUKAI_CONFIG`, else ./noukai.toml), `NOUKAI_*` variables over it, options over both. Every
command takes `--data-dir` and `--database-url`; without a database URL the store is SQLite in the
data dir.

Only `serve` and `migrate` create a store. `keys` and `flows push` open an existing one (else exit
1, nothing created), and only in local mode: when a server URL is configured (`--url` or
`NOUKAI_BASE_URL`, unless `--local`), they go through the server's HTTP API (`cli/remote.py`,
`cli/remote_keys.py`: the keys API, with an admin `--api-key`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from noukai.types import API_PREFIX
from noukai_server import __version__
from noukai_server.cli.config_cmd import ConfigFileOption, config_app
from noukai_server.cli.config_cmd import init as init_command
from noukai_server.cli.credits_cmd import credits_app
from noukai_server.cli.flow_files import BadFlowFile, flow_checks, flow_files, load_flow_files, read_flow_file
from noukai_server.cli.run import run as run_command
from noukai_server.cli.runs_cmd import runs_app
from noukai_server.cli.store_or_server import (
    ApiKey,
    DatabaseUrl,
    DataDir,
    Local,
    ServerUrl,
    admin_remote,
)
from noukai_server.cli.store_or_server import fail as _fail
from noukai_server.cli.store_or_server import load_config as _config
from noukai_server.cli.store_or_server import open_existing_store as _open_existing_store
from noukai_server.cli.store_or_server import remotely as _remotely
from noukai_server.cli.store_or_server import server_url as _server_url
from noukai_server.cli.worker import worker as worker_command
from noukai_server.config import LOG_FORMATS, LOG_LEVELS, ConfigError

if TYPE_CHECKING:
    from noukai_server.cli.reload import FlowWatcher
    from noukai_server.cli.remote import Remote
    from noukai_server.config import ServerConfig
    from noukai_server.engine import FunctionRegistry, ToolRegistry
    from noukai_server.flows import FlowSpec
    from noukai_server.runtime.flow_admin import FlowChecks
    from noukai_server.store import ApiKeyRecord, Store

# The server, store and flow modules are imported inside the commands that need them: importing
# SQLAlchemy and FastAPI costs seconds on a slow machine, and `noukai run` or `noukai version`
# should not pay for it.

app = typer.Typer(
    name="noukai",
    help="Run LLM flows and stream every step.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
flows_app = typer.Typer(help="Push flow files as drafts and publish versions.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(flows_app, name="flows")
app.command("run")(run_command)
app.command("worker")(worker_command)
app.add_typer(config_app, name="config")
app.add_typer(credits_app, name="credits")
app.add_typer(runs_app, name="runs")
app.command("init")(init_command)

DEV_KEY_FILE = "dev-api-key"
KEEP_ALIVE_SECONDS = 75
"""How long an idle keep-alive connection stays open. Longer than clients keep theirs (httpx and
Node.js 5 s) and than the usual load balancer idle timeouts (60 s), so the client, never the
server, closes an idle connection: uvicorn's default, 5 s, equals httpx's, and a request sent on a
connection the server is closing that instant fails with a read error (seen in CI under load)."""

logger = logging.getLogger("noukai_server.cli")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as distribution_version

        try:
            sdk = distribution_version("noukai")
        except PackageNotFoundError:
            sdk = "not installed"
        typer.echo(f"noukai-server {__version__}\nnoukai (SDK) {sdk}")
        raise typer.Exit()


@app.callback()
def _main(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the server's and the SDK's versions and exit.",
        ),
    ] = False,
) -> None:
    """Run LLM flows and stream every step."""


async def _open_store(config: ServerConfig) -> Store:
    from noukai_server.store import Store

    config.data_dir.mkdir(parents=True, exist_ok=True)
    return await Store.connect(config.resolved_database_url)


_REMOTE_HINT = "or push through a running server with --url URL (or NOUKAI_BASE_URL) and --api-key KEY"
_KEYS_HINT = (
    "or manage keys through a running server with --url URL (or NOUKAI_BASE_URL) and an admin --api-key KEY"
)


def _keys_remote(ctx: typer.Context, url: str | None, api_key: str | None, local: bool) -> Remote | None:
    """`keys` in remote mode: the server to manage keys on through its keys API (with an admin
    `--api-key`; exit 2 without one); None in local mode."""
    return admin_remote(ctx, url, api_key, local, purpose="key management")


def _remote_org(org: str | None, command: str) -> str:
    if org is None:
        raise _fail(f"`keys {command}` through a server manages one org's keys: give --org ORG", code=2)
    return org


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def migrate(
    data_dir: DataDir = None, database_url: DatabaseUrl = None, config_file: ConfigFileOption = None
) -> None:
    """Bring the database schema up to date (serve does this by itself)."""
    config = _config(data_dir, database_url, config_file)

    async def run() -> None:
        store = await _open_store(config)
        await store.close()

    asyncio.run(run())
    typer.echo("database is up to date", err=True)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(show_default=False, help="Interface to bind (default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            show_default=False, help="Port (default 8080, where the published SDK's env='dev' looks)."
        ),
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    flows: Annotated[
        list[Path] | None,
        typer.Option(
            "--flows",
            show_default=False,
            help="Load every flow file here as a draft of the dev project (repeatable; replaces "
            "flows.dirs of noukai.toml).",
        ),
    ] = None,
    reload: Annotated[
        bool,
        typer.Option("--reload", help="Development: save changed flow files of the flow folders as drafts."),
    ] = False,
    config_file: ConfigFileOption = None,
    dev_key: Annotated[
        bool | None,
        typer.Option(
            "--dev-key/--no-dev-key",
            help="Create (once) and print a key for the dev org. Default: on for the embedded SQLite store.",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            show_default=False,
            help="Runs executed at once by the embedded workers (default 64; NOUKAI_WORKER_CONCURRENCY).",
        ),
    ] = None,
    workers: Annotated[
        bool,
        typer.Option(
            "--workers/--no-workers",
            help="Run the embedded workers; --no-workers serves the API only (runs are executed by "
            "`noukai worker` processes on the same store).",
        ),
    ] = True,
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis-url",
            show_default=False,
            help="The Redis bus for scaled-out deployments (NOUKAI_REDIS_URL; default: none).",
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            callback=lambda value: _one_of(value, LOG_LEVELS),
            metavar="[" + "|".join(LOG_LEVELS) + "]",
            help="What the log (stderr) shows; or NOUKAI_LOG_LEVEL (default info).",
        ),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            callback=lambda value: _one_of(value, LOG_FORMATS),
            metavar="[" + "|".join(LOG_FORMATS) + "]",
            help="text, or json: one object per line; or NOUKAI_LOG_FORMAT (default text).",
        ),
    ] = None,
) -> None:
    """Start the server with its embedded workers."""
    import uvicorn

    from noukai_server import logs
    from noukai_server.api.app import create_app
    from noukai_server.cli.serving import StreamClosingServer

    try:
        config = _config(
            data_dir,
            database_url,
            config_file,
            host=host,
            port=port,
            flows_dirs=tuple(flows) if flows else None,
            worker_concurrency=concurrency,
            embedded_workers=None if workers else False,
            redis_url=redis_url,
            log_level=log_level,
            log_format=log_format,
        )
    except ConfigError as exc:
        raise _fail(str(exc)) from exc
    if reload and not config.flows_dirs:
        raise _fail("--reload watches the flow folders, and none is configured (--flows or [flows] dirs)")
    logs.configure(config.log_level, config.log_format)
    # The port first: a server that cannot listen must say so before it prints a key to use.
    listener = _listen(config.host, config.port)
    config = replace(config, port=int(listener.getsockname()[1]))
    want_key = dev_key if dev_key is not None else config.database_url is None
    functions, tools = _registries(config)
    checks = flow_checks(config, functions, tools)
    try:
        prepared = asyncio.run(_prepare(config, want_key, checks))
    except BaseException:
        listener.close()
        raise
    _print_banner(config, prepared.key, prepared.skipped)
    server = StreamClosingServer(
        uvicorn.Config(
            create_app(config, functions=functions, tools=tools),
            loop="uvloop",
            http="httptools",
            timeout_graceful_shutdown=5,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            access_log=False,  # the request-id middleware writes the access log
            log_config=None,  # keep the handlers `logs.configure` set up
        )
    )
    watcher = _watch_flows(config, checks) if reload else None
    try:
        server.run(sockets=[listener])
    finally:
        if watcher is not None:
            watcher.stop()
    if not server.started:  # the app's startup failed; uvicorn has logged why
        raise typer.Exit(code=3)


def _one_of(value: str | None, allowed: tuple[str, ...]) -> str | None:
    if value is None or value.lower() in allowed:
        return value.lower() if value else None
    raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}")


def _listen(host: str, port: int) -> socket.socket:
    """Bind and listen on host:port (port 0: any free one), or exit 1 with one line saying why."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn chooses
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise _fail(f"cannot listen on {_hostport(host, port)}: {reason.lower()}") from exc


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class _Prepared:
    key: str | None = None
    skipped: list[str] = field(default_factory=list)
    """`file: reason` for each flow file of `--flows` that could not be loaded."""


async def _prepare(config: ServerConfig, want_key: bool, checks: FlowChecks) -> _Prepared:
    store = await _open_store(config)
    try:
        prepared = _Prepared()
        for folder in config.flows_dirs:
            if not folder.is_dir():
                raise _fail(f"flow folder {folder} (--flows or [flows] dirs) is not a folder")
            prepared.skipped += await load_flow_files(store, config, flow_files(folder), checks)
        if want_key:
            prepared.key = await _dev_key(store, config)
        return prepared
    finally:
        await store.close()


def _watch_flows(config: ServerConfig, checks: FlowChecks) -> FlowWatcher:
    from noukai_server.cli.reload import FlowWatcher

    watcher = FlowWatcher(config, checks)
    watcher.start()
    return watcher


def _registries(config: ServerConfig) -> tuple[FunctionRegistry, ToolRegistry]:
    """The built-in functions and tools plus the config's [functions] and [tools]."""
    from noukai_server.settings.extensions import build_registries

    return build_registries(config)


def _parse_flow_file(path: Path, config: ServerConfig) -> FlowSpec:
    """`read_flow_file` with the checks of the server `config` describes, or exit 1 with the message."""
    try:
        return read_flow_file(path, flow_checks(config, *_registries(config)))
    except BadFlowFile as exc:
        raise _fail(f"{path}: {exc}") from exc


async def _dev_key(store: Store, config: ServerConfig) -> str:
    """The dev key is kept (mode 0600) in the data dir so later starts can print it again; the
    database holds only its hash."""
    from noukai_server.store import ApiKeyExpired

    path = config.data_dir / DEV_KEY_FILE
    if path.exists():
        key = path.read_text().strip()
        try:
            if await store.authenticate(key) is not None:
                return key
        except ApiKeyExpired:  # not one `serve` made (those never expire): replaced like a revoked one
            pass
    _, key = await store.create_api_key(config.dev_org, config.dev_project, name="dev")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def _print_banner(config: ServerConfig, key: str | None, skipped: list[str] | None = None) -> None:
    base = f"http://{_hostport(config.host, config.port)}"
    lines = [f"Noukai {__version__} serving on {base}  (API docs: {base}/docs)"]
    if skipped:
        folders = ", ".join(str(folder) for folder in config.flows_dirs)
        lines += [f"skipped {len(skipped)} flow file(s) of {folders} that are not valid flows:"]
        lines += [f"  {entry}" for entry in skipped]
    if key is not None:
        flow = f"{config.dev_org}/{config.dev_project}/echo"
        lines += [
            f"dev API key (org '{config.dev_org}', project '{config.dev_project}'): {key}",
            "",
            "Try it:",
            f"  curl -s {base}{API_PREFIX}/seq/{flow}/execute -H 'Authorization: Bearer {key}' \\",
            "       -H 'Content-Type: application/json' -d '{\"message\": \"hello there\"}'",
            "",
            "  # with the published SDK (pip install noukai-sdk); env='dev' means localhost:8080",
            f"  NOUKAI_API_KEY={key} NOUKAI_ENV=dev python -c \\",
            "    'from noukai_sdk import Noukai; "
            f'print(Noukai().flow("{flow}").execute(message="hello").result)\'',
            "",
            "  # with this project's SDK (in .venv; elsewhere pip install ./packages/noukai), any host",
            f"  NOUKAI_API_KEY={key} NOUKAI_BASE_URL={base} python -c \\",
            "    'from noukai import Noukai; "
            f'print(Noukai().flow("{flow}").execute(message="hello").result)\'',
        ]
    print("\n".join(lines), flush=True)


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    org: Annotated[str, typer.Option(help="The org the key belongs to.")],
    project: Annotated[str | None, typer.Option(help="Limit the key to one project.")] = None,
    name: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
    scope: Annotated[
        str,
        typer.Option(
            help="admin: everything, flows and keys included; run: start and steer runs, threads"
            " and jobs, and read; read: read runs, streams, traces, sessions and flows only."
        ),
    ] = "admin",
    expires_in: Annotated[
        str | None, typer.Option(help="Stop working after this long: 30d, 12h, 90m, 3600s, 2w.")
    ] = None,
    expires_at: Annotated[
        str | None, typer.Option(help="Stop working at this ISO 8601 time (UTC without a zone).")
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config_file: ConfigFileOption = None,
    url: ServerUrl = None,
    api_key: ApiKey = None,
    local: Local = False,
) -> None:
    """Create a key and print it (only the key, on stdout). It cannot be shown again.

    `admin` unless --scope says less: what every key could do before scopes existed."""
    from datetime import UTC, datetime

    from noukai_server.cli.key_listing import BadExpiry, expiry
    from noukai_server.store import KEY_SCOPES

    if scope not in KEY_SCOPES:
        raise _fail(f"--scope {scope!r}: use one of {', '.join(KEY_SCOPES)}", code=2)
    try:
        expires = expiry(expires_in, expires_at, datetime.now(UTC))
    except BadExpiry as exc:
        raise _fail(str(exc), code=2) from exc
    remote = _keys_remote(ctx, url, api_key, local)
    if remote is not None:
        from noukai_server.cli import remote_keys

        made = _remotely(
            lambda: remote_keys.create_key(
                remote, org, project=project, name=name, scope=scope, expires_at=expires
            )
        )
        sys.stdout.write(made + "\n")
        return

    async def run() -> str:
        store = await _open_existing_store(data_dir, database_url, _KEYS_HINT, config_file)
        try:
            _, key = await store.create_api_key(org, project, name=name, scope=scope, expires_at=expires)
            return key
        finally:
            await store.close()

    sys.stdout.write(asyncio.run(run()) + "\n")


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    org: Annotated[str | None, typer.Option(help="Only this org's keys (default: every org's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array of key objects.")] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config_file: ConfigFileOption = None,
    url: ServerUrl = None,
    api_key: ApiKey = None,
    local: Local = False,
) -> None:
    """List keys: id, name, org/project, scope, state (active, expired, revoked), creation, last
    use and expiry; never the secrets."""
    import json
    from datetime import UTC, datetime

    from noukai_server.api.key_info import key_info
    from noukai_server.cli.key_listing import key_table

    remote = _keys_remote(ctx, url, api_key, local)
    if remote is not None:
        from noukai_server.cli import remote_keys

        listed = _remotely(lambda: remote_keys.list_keys(remote, _remote_org(org, "list")))
    else:

        async def run() -> list[ApiKeyRecord]:
            store = await _open_existing_store(data_dir, database_url, _KEYS_HINT, config_file)
            try:
                return await store.list_api_keys(org)
            finally:
                await store.close()

        records, now = asyncio.run(run()), datetime.now(UTC)
        listed = [key_info(record, now) for record in records]
    typer.echo(json.dumps(listed, indent=2) if as_json else key_table(listed))


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key id (the part after nk_ and before _).")],
    org: Annotated[str | None, typer.Option(help="The key's org (needed in remote mode).")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config_file: ConfigFileOption = None,
    url: ServerUrl = None,
    api_key: ApiKey = None,
    local: Local = False,
) -> None:
    """Revoke a key at once."""
    remote = _keys_remote(ctx, url, api_key, local)
    if remote is not None:
        from noukai_server.cli import remote_keys

        _remotely(lambda: remote_keys.revoke_key(remote, _remote_org(org, "revoke"), key_id))
        return

    async def run() -> bool:
        store = await _open_existing_store(data_dir, database_url, _KEYS_HINT, config_file)
        try:
            return await store.revoke_api_key(key_id)
        finally:
            await store.close()

    if not asyncio.run(run()):
        raise _fail(f"no active key {key_id}")


@flows_app.command("push")
def flows_push(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="A flow file (.yaml, .yml or .json).", exists=True, dir_okay=False)
    ],
    org: Annotated[str, typer.Option(help="The org to push into.")],
    project: Annotated[str, typer.Option(help="The project to push into.")],
    publish: Annotated[
        bool, typer.Option("--publish", help="Also publish the draft as a new version.")
    ] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config_file: ConfigFileOption = None,
    url: ServerUrl = None,
    api_key: ApiKey = None,
    local: Local = False,
) -> None:
    """Validate a flow file and save it as the flow's draft (optionally publishing it): on the
    server at --url / NOUKAI_BASE_URL when one is set, else in the local store."""
    server = _server_url(ctx, url, local)
    if server is not None:
        _push_remote(server, api_key, file, org, project, publish)
        return
    from noukai_server.runtime.flow_admin import save_flow

    spec = _parse_flow_file(file, _config(data_dir, database_url, config_file))

    from noukai_server.runtime.errors import RequestRejected

    async def run() -> str:
        store = await _open_existing_store(data_dir, database_url, _REMOTE_HINT, config_file)
        try:
            flow, version = await save_flow(store, org, project, spec, publish=publish)
        finally:
            await store.close()
        text = f"{org}/{project}/{flow.slug}: draft revision {flow.draft_revision}"
        return text + (f", published as version {version.version}" if version else "")

    try:
        typer.echo(asyncio.run(run()))
    except RequestRejected as exc:  # FLOW_CYCLE, refused as the HTTP push refuses it
        raise _fail(f"{file}: {exc.code.value}: {exc.message}") from exc


def _push_remote(url: str, api_key: str | None, file: Path, org: str, project: str, publish: bool) -> None:
    from noukai_server.cli.remote import Remote, RemoteFailure, push_flow
    from noukai_server.cli.run import UsageError

    try:
        remote = Remote.of(url, api_key)
    except UsageError as exc:
        raise _fail(str(exc), code=2) from exc
    try:
        typer.echo(push_flow(remote, file, org, project, publish=publish))
    except RemoteFailure as exc:
        raise _fail(str(exc)) from exc


def main() -> None:
    app()
