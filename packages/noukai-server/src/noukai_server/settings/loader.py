"""Effective settings: the defaults, then noukai.toml, then `NOUKAI_*` variables, then the command
line, each value checked against its row of the settings table."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from noukai_server.config import ConfigError, ServerConfig
from noukai_server.providers import ProviderSettings
from noukai_server.settings.extensions import parse_callables
from noukai_server.settings.kinds import Invalid
from noukai_server.settings.providers import ProviderEntry, parse_providers
from noukai_server.settings.source import ConfigFile, did_you_mean, find_config_file
from noukai_server.settings.table import ALL_SECTIONS, SECTIONS, SETTINGS, Setting


@dataclass(frozen=True, slots=True)
class LoadedSettings:
    config: ServerConfig
    file: ConfigFile | None
    sources: Mapping[str, str]
    """Where each setting's value came from, by field: default, the file's line, a variable, the
    command line."""
    providers: Mapping[str, ProviderEntry] = field(default_factory=dict)


def load_server_config(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **cli_overrides: object,
) -> ServerConfig:
    """The settings every command uses: `config_file` (`--config`), else `NOUKAI_CONFIG`, else
    ./noukai.toml when present; then the environment (`os.environ` when None); then
    `cli_overrides` by `ServerConfig` field name (None: option not given). Raises `ConfigError`
    naming the setting, where it was set and what is allowed."""
    return load_settings(config_file, environ, cli_overrides).config


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    cli_overrides: Mapping[str, object] | None = None,
    *,
    cwd: Path | None = None,
) -> LoadedSettings:
    """`load_server_config`, with where each value came from (for `noukai config show`)."""
    environ = os.environ if environ is None else environ
    file = find_config_file(config_file, environ, cwd)
    return _load(file, environ, cli_overrides or {})


def config_from_sources(
    file: ConfigFile | None, environ: Mapping[str, str], overrides: Mapping[str, object]
) -> ServerConfig:
    return _load(file, environ, overrides).config


def _load(
    file: ConfigFile | None, environ: Mapping[str, str], overrides: Mapping[str, object]
) -> LoadedSettings:
    data: Mapping[str, Any] = file.data if file is not None else {}
    if file is not None:
        _check_layout(file)
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for row in SETTINGS:
        found = _value(row, file, environ, overrides.get(row.field))
        if found is not None:
            values[row.field], sources[row.field] = found
        else:
            sources[row.field] = "default"
    values.update({k: v for k, v in overrides.items() if v is not None and k not in sources})
    entries: dict[str, ProviderEntry] = {}
    if file is not None:
        values["config_file"] = file.path
        if "providers" in data:
            entries = parse_providers(data["providers"], file, environ)
        for section in ("functions", "tools"):
            if section in data:
                values[section] = parse_callables(section, data[section], file)
        if "mcp" in data:
            values["mcp_servers"] = _mcp_servers(data["mcp"], file, environ)
    if "providers" not in values:
        values["providers"] = ProviderSettings.from_env(
            environ,
            named={name: entry.provider for name, entry in entries.items()},
            prices={ref: price for entry in entries.values() for ref, price in entry.prices.items()},
        )
    return LoadedSettings(ServerConfig(**values), file, sources, entries)  # type: ignore[arg-type]


def _check_layout(file: ConfigFile) -> None:
    """Every section and key known; a mistyped one is an error rather than silently ignored."""
    for section, table in file.data.items():
        if section not in ALL_SECTIONS:
            hint = did_you_mean(section, ALL_SECTIONS)
            raise ConfigError(
                f"{file.where((section,), section)}: unknown section [{section}]{hint}; "
                f"sections: {', '.join(ALL_SECTIONS)}"
            )
        if not isinstance(table, Mapping):
            raise ConfigError(f"{file.where((), section)}: {section} must be a table ([{section}])")
        known = SECTIONS.get(section)
        if known is None:
            continue
        for key in table:
            if key not in known:
                raise ConfigError(
                    f"{file.where((section,), key)}: unknown key {key!r} in [{section}]"
                    f"{did_you_mean(key, known)}; allowed: {', '.join(known)}"
                )


def _value(
    row: Setting, file: ConfigFile | None, environ: Mapping[str, str], cli: object
) -> tuple[object, str] | None:
    """(value, where it came from) from the strongest source that sets it, or None."""
    expected = f"expected {row.kind.allowed}"
    if cli is not None:
        try:
            return row.kind.from_value(cli), "command line"
        except Invalid:
            raise ConfigError(f"{row.option or row.field} {cli!r} is not allowed: {expected}") from None
    text = environ.get(row.env, "")
    if text.strip():  # exported but empty means unset, as for the provider variables
        try:
            return row.kind.from_env(text), f"environment {row.env}"
        except Invalid:
            raise ConfigError(
                f"environment variable {row.env}={text!r} is not allowed ({row.name}): {expected}"
            ) from None
    if file is None or row.key not in file.data.get(row.section, {}):
        return None
    where = file.where((row.section,), row.key)
    raw = file.data[row.section][row.key]
    try:
        value = row.kind.from_value(raw)
    except Invalid:
        raise ConfigError(f"{where}: {row.name} = {_toml(raw)} is not allowed: {expected}") from None
    return _relative_to(file.directory, value), where


def _relative_to(directory: Path, value: object) -> object:
    """Paths in the file are relative to the file's folder, not to wherever the server starts."""
    if isinstance(value, Path):
        return value if value.is_absolute() else directory / value
    if isinstance(value, tuple) and all(isinstance(item, Path) for item in value):
        return tuple(_relative_to(directory, item) for item in value)
    return value


def _toml(value: Any) -> str:
    """The value as the file wrote it, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key} = {_toml(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return repr(value)


def _mcp_servers(table: Any, file: ConfigFile, environ: Mapping[str, str]) -> Mapping[str, Any]:
    if not isinstance(table, Mapping) or set(table) - {"servers"}:
        raise ConfigError(f"{file.where(('mcp',))}: [mcp] holds only [mcp.servers.NAME] tables")
    servers = table.get("servers", {})
    try:
        # Imported here: the MCP client is only needed by servers that configure one.
        from noukai_server.mcp.config import parse_mcp_servers
    except ImportError as exc:
        raise ConfigError(
            f"{file.where(('mcp', 'servers'))}: [mcp.servers] is not supported by this build: {exc}"
        ) from exc
    return parse_mcp_servers(servers, source=str(file.path), environ=environ)
