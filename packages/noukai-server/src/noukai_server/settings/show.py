"""`noukai config show`: the effective settings and where each came from, secrets masked.

Provider keys never appear at all, only the variable that holds each and whether it is set; URLs
that may carry a password (the database's, Redis's) show `***` in its place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from noukai_server.settings.loader import LoadedSettings
from noukai_server.settings.table import SETTINGS

_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):(?P<secret>[^/@]*)@")


def mask_url(url: str) -> str:
    """`postgresql://app:s3cret@db/x` -> `postgresql://app:***@db/x`."""
    return _PASSWORD.sub(lambda m: f"{m.group('head')}:***@", url)


def _plain(value: Any, secret: bool) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(item, False) for item in value]
    if isinstance(value, Mapping):
        return dict(value)
    if secret and isinstance(value, str):
        return mask_url(value) if "://" in value else "***"  # a URL keeps all but its password
    return value


def effective(loaded: LoadedSettings, environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings as JSON-able data: {section: {key: {value, source}}} plus the named entries."""
    config = loaded.config
    settings: dict[str, dict[str, Any]] = {}
    for row in SETTINGS:
        value = _plain(getattr(config, row.field), row.secret)
        settings.setdefault(row.section, {})[row.key] = {"value": value, "source": loaded.sources[row.field]}
    providers: dict[str, Any] = {
        name: {"kind": "built-in", "api_key_env": env, "api_key_set": bool(environ.get(env))}
        for name, env in (("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY"))
    }
    for name, entry in loaded.providers.items():
        providers[name] = {
            "kind": entry.provider.kind,
            "base_url": entry.provider.base_url,
            "api_key_env": entry.api_key_env,
            "api_key_set": entry.key_is_set,
            "headers": dict(entry.headers_as_written),
            "timeout_seconds": entry.provider.timeout_seconds,
            "models": {
                ref.partition(":")[2]: {"input_per_million": str(i), "output_per_million": str(o)}
                for ref, (i, o) in entry.prices.items()
            },
        }
    return {
        "config_file": str(config.config_file) if config.config_file else None,
        "settings": settings,
        "providers": providers,
        "functions": {name: entry.path for name, entry in config.functions.items()},
        "tools": {name: entry.path for name, entry in config.tools.items()},
        "mcp_servers": sorted(config.mcp_servers),
    }


def as_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=False)


def _toml_value(value: Any) -> str:
    # json.dumps writes strings, numbers, booleans and lists the way TOML does.
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def as_toml(data: Mapping[str, Any]) -> str:
    """A readable, TOML-shaped listing: each setting with its source as a comment."""
    lines = [f"# config file: {data['config_file'] or 'none'}"]
    for section, keys in data["settings"].items():
        lines += ["", f"[{section}]"]
        for key, item in keys.items():
            value, source = item["value"], item["source"]
            if value is None:
                lines.append(f"# {key} is not set  ({source})")
            else:
                lines.append(f"{key} = {_toml_value(value)}  # {source}")
    for name, provider in data["providers"].items():
        if provider["api_key_env"] is None:
            about_key = "none (the endpoint checks no key)"
        else:
            about_key = f"{provider['api_key_env']} ({'set' if provider['api_key_set'] else 'NOT SET'})"
        lines += ["", f"[providers.{_key(name)}]  # key: {about_key}"]
        for key, value in provider.items():
            if key not in ("api_key_set", "models") and value not in (None, {}):
                lines.append(f"{key} = {_toml_value(value)}")
        for model, price in provider.get("models", {}).items():
            lines += [f"models.{_key(model)} = {_toml_value(price)}"]
    for section in ("functions", "tools"):
        if data[section]:
            lines += ["", f"[{section}]"] + [f"{_key(n)} = {json.dumps(p)}" for n, p in data[section].items()]
    if data["mcp_servers"]:
        lines += ["", f"# MCP servers: {', '.join(data['mcp_servers'])}"]
    return "\n".join(lines) + "\n"
