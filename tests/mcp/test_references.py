"""`mcp:` references in flows (checked at push without starting a server), the names the model
sees, and how results become text."""

from __future__ import annotations

from collections.abc import Collection

import pytest
from mcp.types import (
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

from noukai_server.engine.tool_source import ToolSources
from noukai_server.engine.tools import TOOL_NAME, default_tools
from noukai_server.flows import FlowValidationError, load_flow
from noukai_server.mcp.naming import model_tool_name
from noukai_server.mcp.results import result_text
from noukai_server.mcp.tools import McpTools, parse_reference
from tests.mcp.conftest import stdio_config


def problems(tools: list[str], known: Collection[str]) -> list[str]:
    step = {"id": "a", "type": "agent", "model": "openai:gpt-4o", "prompt": "hi", "tools": tools}
    try:
        load_flow({"slug": "f", "steps": [step]}, known_tools=known)
    except FlowValidationError as exc:
        return [issue.message for issue in exc.issues]
    return []


def test_configured_servers_are_known_tools() -> None:
    sources = ToolSources(default_tools(), McpTools({"files": stdio_config("files")}))
    known = set(sources.names())
    assert known == {"add", "word_count", "current_time", "mcp:files"}
    assert problems(["add", "mcp:files", "mcp:files/read", "mcp:files/a.b/c"], known) == []


def test_push_refusals_name_the_configured_servers() -> None:
    known = {"add", "mcp:files", "mcp:search"}
    [unknown] = problems(["mcp:fils"], known)
    assert unknown.endswith(
        "unknown MCP server 'fils' in 'mcp:fils' (did you mean 'files'?); configured MCP servers: "
        "files, search (add one under [mcp.servers.NAME] in noukai.toml)"
    )
    [none] = problems(["mcp:files"], {"add"})
    assert none.endswith(
        "unknown MCP server 'files' in 'mcp:files'; no MCP servers are configured "
        "(add one under [mcp.servers.NAME] in noukai.toml)"
    )
    for bad in ("mcp:", "mcp:/add", "mcp:files/"):
        [malformed] = problems([bad], known)
        assert malformed.endswith(
            f"{bad!r} is not an MCP tool reference (write 'mcp:SERVER' or 'mcp:SERVER/tool')"
        )


def test_plain_tool_refusals_do_not_list_mcp_servers() -> None:
    [message] = problems(["ad"], {"add", "mcp:files"})
    assert message.endswith("unknown tool 'ad' (did you mean 'add'?); registered tools: add")


def test_references() -> None:
    assert parse_reference("mcp:files") == ("files", None)
    assert parse_reference("mcp:files/read") == ("files", "read")
    assert parse_reference("mcp:files/a/b") == ("files", "a/b")


@pytest.mark.parametrize(
    ("server", "tool", "expected"),
    [
        ("files", "read_file", "files__read_file"),
        ("files", "fs.read/v2", "files__fs_read_v2"),
        ("git-hub", "create issue", "git-hub__create_issue"),
    ],
)
def test_model_tool_names(server: str, tool: str, expected: str) -> None:
    assert model_tool_name(server, tool) == expected


def test_long_names_are_cut_with_a_hash_that_keeps_them_apart() -> None:
    first, second = (model_tool_name("files", "x" * 70 + suffix) for suffix in ("a", "b"))
    assert len(first) == len(second) == 64 and first != second
    assert TOOL_NAME.match(first) and first.startswith("files__xxx")
    assert model_tool_name("files", "x" * 70 + "a") == first  # stable


def test_text_parts_are_joined() -> None:
    result = CallToolResult(
        content=[TextContent(type="text", text="one"), TextContent(type="text", text="two")],
        structured_content={"n": 2},
    )
    assert result_text(result) == "one\ntwo"


def test_structured_content_without_text_is_json() -> None:
    assert (
        result_text(CallToolResult(content=[], structured_content={"n": 2, "ok": True}))
        == '{"n":2,"ok":true}'
    )


def test_other_content_is_described() -> None:
    result = CallToolResult(
        content=[
            ImageContent(type="image", data="aGk=", mime_type="image/png"),
            EmbeddedResource(
                type="resource", resource=TextResourceContents(uri="file:///a.txt", text="file text")
            ),
            ResourceLink(type="resource_link", uri="file:///b.txt", name="b"),
        ]
    )
    assert result_text(result) == "[image/png image omitted]\nfile text\n[resource file:///b.txt]"
    assert result_text(CallToolResult(content=[])) == ""
