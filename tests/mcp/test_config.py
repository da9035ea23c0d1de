"""`[mcp.servers.NAME]` tables: what is accepted, and every refusal naming the key, the file and
what is allowed."""

from __future__ import annotations

from typing import Any

import pytest

from noukai_server.config import ConfigError, ServerConfig
from noukai_server.mcp.config import McpServerConfig, parse_mcp_servers

SOURCE = "/etc/noukai/noukai.toml"
ENV = {"MCP_TOKEN": "s3cret-token", "HOME_DIR": "/home/op"}


def parse(table: Any) -> dict[str, McpServerConfig]:
    return parse_mcp_servers(table, source=SOURCE, environ=ENV)


def refusal(table: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse(table)
    message = str(info.value)
    assert message.startswith(f"{SOURCE}: mcp.servers"), message
    return message


def test_a_stdio_server() -> None:
    servers = parse(
        {"files": {"command": "npx", "args": ["-y", "srv", "${HOME_DIR}"], "env": {"TOKEN": "${MCP_TOKEN}"}}}
    )
    files = servers["files"]
    assert files == McpServerConfig(
        name="files",
        command="npx",
        args=("-y", "srv", "${HOME_DIR}"),  # args are passed as written: only env and headers read variables
        env={"TOKEN": "s3cret-token"},
        timeout_seconds=30.0,
    )
    assert files.transport == "stdio"


def test_an_http_server_with_headers_from_the_environment() -> None:
    servers = parse(
        {
            "search": {
                "url": "https://mcp.example.com/mcp",
                "headers": {"Authorization": "Bearer ${MCP_TOKEN}", "X-Price": "$$5", "X-Team": "ops"},
                "timeout_seconds": 5,
            }
        }
    )
    search = servers["search"]
    assert search.transport == "http"
    assert search.headers == {"Authorization": "Bearer s3cret-token", "X-Price": "$5", "X-Team": "ops"}
    assert search.timeout_seconds == 5.0


def test_secrets_stay_out_of_the_repr() -> None:
    servers = parse(
        {
            "a": {"url": "http://127.0.0.1:1/mcp", "headers": {"Authorization": "Bearer ${MCP_TOKEN}"}},
            "b": {"command": "srv", "env": {"KEY": "${MCP_TOKEN}"}},
        }
    )
    assert "s3cret" not in repr(servers)
    assert "s3cret" not in repr(ServerConfig(mcp_servers=servers))


def test_the_process_environment_is_the_default() -> None:
    servers = parse_mcp_servers({"a": {"command": "srv", "env": {"P": "${PATH}"}}}, source=SOURCE)
    assert servers["a"].env["P"]


def test_no_servers() -> None:
    assert parse({}) == {}
    assert ServerConfig().mcp_servers == {}


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (["files"], "mcp.servers must be a table of servers ([mcp.servers.NAME])"),
        ({"files": "npx"}, "mcp.servers.files must be a table ([mcp.servers.files])"),
        ({"my.files": {"command": "x"}}, "mcp.servers.my.files: the server name must be 1-32 letters"),
        ({"f" * 33: {"command": "x"}}, "the server name must be 1-32 letters, digits, '_' or '-'"),
        (
            {"files": {"comand": "npx"}},
            "mcp.servers.files.comand is not a known key "
            "(allowed: args, command, env, headers, timeout_seconds, url)",
        ),
        (
            {"files": {"command": "npx", "url": "http://x/mcp"}},
            "mcp.servers.files sets both command and url: set command (a stdio server, with optional "
            "args and env) or url (a streamable HTTP server, with optional headers)",
        ),
        ({"files": {"args": ["x"]}}, "mcp.servers.files sets neither command nor url: set command"),
        (
            {"files": {"command": "npx", "headers": {}}},
            "mcp.servers.files.headers does not apply to a stdio (command) server "
            "(allowed: args, command, env, timeout_seconds)",
        ),
        (
            {"files": {"url": "http://x/mcp", "env": {}}},
            "mcp.servers.files.env does not apply to an HTTP (url) server "
            "(allowed: headers, timeout_seconds, url)",
        ),
        ({"files": {"command": ""}}, "mcp.servers.files.command must be a non-empty string, got string ''"),
        (
            {"files": {"command": ["npx"]}},
            "mcp.servers.files.command must be a non-empty string, got an array",
        ),
        ({"files": {"url": 5}}, "mcp.servers.files.url must be a non-empty string, got an integer"),
        (
            {"files": {"url": "ftp://x/mcp"}},
            "mcp.servers.files.url must be an http:// or https:// URL, got 'ftp://x/mcp'",
        ),
        ({"files": {"command": "x", "args": "-y"}}, "mcp.servers.files.args must be an array of strings"),
        ({"files": {"command": "x", "args": ["-p", 80]}}, "args must be an array of strings, got an array"),
        ({"files": {"command": "x", "env": ["A=1"]}}, "mcp.servers.files.env must be a table of strings"),
        (
            {"files": {"command": "x", "env": {"A": 1}}},
            "mcp.servers.files.env.A must be a string, got an integer",
        ),
        (
            {"files": {"url": "http://x/mcp", "headers": {"X": True}}},
            "mcp.servers.files.headers.X must be a string, got a boolean",
        ),
        (
            {"files": {"url": "http://x/mcp", "headers": {"Authorization": "Bearer ${NOPE}"}}},
            "mcp.servers.files.headers.Authorization reads environment variable NOPE, which is not set",
        ),
        (
            {"files": {"command": "x", "env": {"A": "${1BAD}"}}},
            "mcp.servers.files.env.A: ${1BAD} is not a valid environment variable reference "
            "(use ${NAME} with letters, digits and '_', or $$ for a literal $)",
        ),
        (
            {"files": {"command": "x", "timeout_seconds": "30"}},
            "mcp.servers.files.timeout_seconds must be a positive number of seconds, got string '30'",
        ),
        (
            {"files": {"command": "x", "timeout_seconds": True}},
            "timeout_seconds must be a positive number of seconds, got a boolean",
        ),
        (
            {"files": {"command": "x", "timeout_seconds": 0}},
            "mcp.servers.files.timeout_seconds must be a positive number of seconds, got 0",
        ),
        (
            {"files": {"command": "x", "timeout_seconds": float("inf")}},
            "timeout_seconds must be a positive number of seconds, got inf",
        ),
        ({"files": {"command": "x", "timeout_seconds": {}}}, "got a table"),
        ({"files": {"command": "x", "timeout_seconds": None}}, "got NoneType"),
    ],
)
def test_refusals(table: Any, expected: str) -> None:
    assert expected in refusal(table)


def test_a_missing_variable_is_named_but_no_value_is_shown() -> None:
    message = refusal({"a": {"url": "http://x/mcp", "headers": {"A": "${MCP_TOKEN}", "B": "${GONE}"}}})
    assert "GONE" in message and "s3cret" not in message


def test_the_dataclass_refuses_both_or_neither_transport() -> None:
    with pytest.raises(ValueError, match="exactly one of command and url"):
        McpServerConfig(name="x")
    with pytest.raises(ValueError, match="exactly one of command and url"):
        McpServerConfig(name="x", command="a", url="http://b")
