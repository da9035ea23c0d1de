"""The `[mcp.servers.NAME]` tables of noukai.toml: which MCP servers agent steps may use.

A server is either a local process spoken to over stdio (`command`, `args`, `env`) or a remote
streamable-HTTP endpoint (`url`, `headers`). Values of `env` and `headers` may read the server's
own environment with `${VAR}` (`$$` is a literal `$`), so secrets such as tokens stay out of the
file; they are resolved here, once, so a missing variable stops the server at startup rather than
at the first tool call. Resolved values are kept out of the dataclass `repr` so they never reach
a log line.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from noukai_server.config import ConfigError

SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
"""Short enough that `NAME__tool` still fits a model's 64-character function names."""
DEFAULT_TIMEOUT_SECONDS = 30.0
STDIO_KEYS = frozenset({"command", "args", "env"})
HTTP_KEYS = frozenset({"url", "headers"})
COMMON_KEYS = frozenset({"timeout_seconds"})
ALLOWED_KEYS = tuple(sorted(STDIO_KEYS | HTTP_KEYS | COMMON_KEYS))
_REFERENCE = re.compile(r"\$\$|\$\{([^}]*)\}")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class McpServerConfig:
    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Extra environment of a stdio server (beside the MCP SDK's safe defaults such as PATH)."""
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Sent with every HTTP request; may carry secrets, hence not in the repr."""
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    """Bounds starting the session, listing tools and each tool call."""

    def __post_init__(self) -> None:
        if (self.command is None) == (self.url is None):
            raise ValueError(f"MCP server {self.name!r} needs exactly one of command and url")

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "stdio" if self.command is not None else "http"


def parse_mcp_servers(
    table: Mapping[str, Any], *, source: str, environ: Mapping[str, str] | None = None
) -> dict[str, McpServerConfig]:
    """Parse the `mcp.servers` table (server name -> its table) read from `source` (a path, for
    messages). `environ` resolves `${VAR}` references (default: the process environment).
    Raises `ConfigError` naming the offending `mcp.servers.NAME.key` and what is allowed."""
    env = os.environ if environ is None else environ
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: mcp.servers must be a table of servers ([mcp.servers.NAME])")
    servers: dict[str, McpServerConfig] = {}
    for name, body in table.items():
        servers[name] = _parse_server(str(name), body, source, env)
    return servers


def _parse_server(name: str, body: Any, source: str, environ: Mapping[str, str]) -> McpServerConfig:
    where = f"{source}: mcp.servers.{name}"
    if not SERVER_NAME.match(name):
        raise ConfigError(
            f"{where}: the server name must be 1-32 letters, digits, '_' or '-' "
            "(it prefixes the tool names the model sees)"
        )
    if not isinstance(body, Mapping):
        raise ConfigError(f"{where} must be a table ([mcp.servers.{name}])")
    for key in body:
        if key not in ALLOWED_KEYS:
            raise ConfigError(f"{where}.{key} is not a known key (allowed: {', '.join(ALLOWED_KEYS)})")
    has_command, has_url = "command" in body, "url" in body
    if has_command == has_url:
        problem = "sets both command and url" if has_command else "sets neither command nor url"
        raise ConfigError(
            f"{where} {problem}: set command (a stdio server, with optional args and env) "
            "or url (a streamable HTTP server, with optional headers)"
        )
    transport_keys, other_keys = (STDIO_KEYS, HTTP_KEYS) if has_command else (HTTP_KEYS, STDIO_KEYS)
    for key in sorted(other_keys & body.keys()):
        kind = "a stdio (command)" if has_command else "an HTTP (url)"
        raise ConfigError(
            f"{where}.{key} does not apply to {kind} server (allowed: "
            f"{', '.join(sorted(transport_keys | COMMON_KEYS))})"
        )
    timeout = _timeout(body.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS), f"{where}.timeout_seconds")
    if has_command:
        return McpServerConfig(
            name=name,
            command=_text(body["command"], f"{where}.command"),
            args=_strings(body.get("args", []), f"{where}.args"),
            env=_resolved_table(body.get("env", {}), f"{where}.env", environ),
            timeout_seconds=timeout,
        )
    url = _text(body["url"], f"{where}.url")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.url must be an http:// or https:// URL, got {url!r}")
    return McpServerConfig(
        name=name,
        url=url,
        headers=_resolved_table(body.get("headers", {}), f"{where}.headers", environ),
        timeout_seconds=timeout,
    )


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be a non-empty string, got {_kind(value)}")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where} must be an array of strings, got {_kind(value)}")
    return tuple(value)


def _timeout(value: Any, where: str) -> float:
    # bool is an int in Python; `timeout_seconds = true` is a mistake, not one second.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a positive number of seconds, got {_kind(value)}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{where} must be a positive number of seconds, got {value!r}")
    return float(value)


def _resolved_table(value: Any, where: str, environ: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table of strings, got {_kind(value)}")
    resolved: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise ConfigError(f"{where}.{key} must be a string, got {_kind(item)}")
        resolved[str(key)] = _interpolate(item, f"{where}.{key}", environ)
    return resolved


def _interpolate(text: str, where: str, environ: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        variable = match.group(1)
        if not _VARIABLE.match(variable):
            raise ConfigError(
                f"{where}: ${{{variable}}} is not a valid environment variable reference "
                "(use ${NAME} with letters, digits and '_', or $$ for a literal $)"
            )
        if variable not in environ:
            raise ConfigError(f"{where} reads environment variable {variable}, which is not set")
        return environ[variable]

    return _REFERENCE.sub(replace, text)


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return f"string {value!r}"
    return {bool: "a boolean", int: "an integer", float: "a number", list: "an array"}.get(
        type(value), "a table" if isinstance(value, Mapping) else type(value).__name__
    )
