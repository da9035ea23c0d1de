"""`noukai config check|show` and `noukai init`: settings without starting a server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from noukai_server.config import ConfigError

if TYPE_CHECKING:
    from noukai_server.settings import LoadedSettings

config_app = typer.Typer(
    help="Check and show the effective settings (noukai.toml, NOUKAI_*).", no_args_is_help=True
)

ConfigFileOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        show_default=False,
        help="The settings file (default: NOUKAI_CONFIG, else ./noukai.toml when present).",
    ),
]


def _load(config_file: Path | None) -> LoadedSettings:
    from noukai_server.settings import load_settings

    try:
        return load_settings(config_file)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc


@config_app.command("check")
def check(config_file: ConfigFileOption = None) -> None:
    """Validate the settings without starting anything: exit 0 with a summary, 2 with the error."""
    loaded = _load(config_file)
    config = loaded.config
    where = str(config.config_file) if config.config_file else "no config file (environment and defaults)"
    counts = (
        f"{len(loaded.providers)} named provider(s), {len(config.functions)} function(s), "
        f"{len(config.tools)} tool(s), {len(config.flows_dirs)} flow folder(s), "
        f"{len(config.mcp_servers)} MCP server(s)"
    )
    typer.echo(f"ok: {where}: {counts}")


@config_app.command("show")
def show(
    config_file: ConfigFileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of TOML.")] = False,
) -> None:
    """Print the effective settings and where each came from; secrets masked, keys never shown."""
    from noukai_server.settings.show import as_json as render_json
    from noukai_server.settings.show import as_toml, effective

    loaded = _load(config_file)
    data = effective(loaded, os.environ)
    typer.echo(render_json(data) if as_json else as_toml(data), nl=as_json)


def init(
    directory: Annotated[
        Path, typer.Argument(help="Where to write the project (created if needed).")
    ] = Path(),
) -> None:
    """Write a starter project (noukai.toml, a flow, a tools module) that `noukai serve` runs as is."""
    from noukai_server.cli.starter import FILES

    taken = [name for name in FILES if (directory / name).exists()]
    if taken:
        typer.echo(
            f"error: {directory} already has {', '.join(taken)}; nothing was written (init never overwrites)",
            err=True,
        )
        raise typer.Exit(code=1)
    for name, text in FILES.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    where = "" if directory == Path() else f"cd {directory} && "
    typer.echo(f"wrote {', '.join(FILES)} in {directory.resolve()}\nstart it with: {where}noukai serve")
