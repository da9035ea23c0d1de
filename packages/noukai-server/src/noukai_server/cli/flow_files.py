"""Flow files on disk -> drafts of the dev project: `serve` at start (`--flows`, `[flows] dirs`)
and on every change under `serve --reload`."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from noukai_server.config import ServerConfig
    from noukai_server.engine import FunctionRegistry, ToolRegistry
    from noukai_server.flows import FlowSpec
    from noukai_server.runtime.flow_admin import FlowChecks
    from noukai_server.store import Store

FLOW_SUFFIXES = (".yaml", ".yml", ".json")
logger = logging.getLogger("noukai_server.cli")


class BadFlowFile(Exception):
    """The file is not a valid flow here; the message says why (without the file's name)."""


def flow_checks(config: ServerConfig, functions: FunctionRegistry, tools: ToolRegistry) -> FlowChecks:
    """The checks the server configured by `config` applies to a pushed flow: its functions with
    their signatures (the config's beside the built-ins), its tools and its model providers."""
    from noukai_server.engine.tool_source import ToolSources
    from noukai_server.mcp.tools import McpTools
    from noukai_server.providers import ModelRegistry
    from noukai_server.runtime.flow_admin import FlowChecks

    # McpTools starts nothing until a tool is resolved: here it only names the `mcp:` servers.
    agent_tools = ToolSources(tools, McpTools(config.mcp_servers))
    return FlowChecks.of(functions, agent_tools, ModelRegistry(config.providers))


def is_flow_file(path: Path) -> bool:
    return path.suffix in FLOW_SUFFIXES and not path.name.startswith(".")


def read_flow_file(path: Path, checks: FlowChecks) -> FlowSpec:
    """Validate a flow file as the server's push would; `BadFlowFile` says why it is refused."""
    from noukai_server.flows import FlowValidationError

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadFlowFile(f"cannot be read: {exc}") from exc
    try:
        return checks.parse(text, filename=path.name)
    except FlowValidationError as exc:
        raise BadFlowFile(exc.message.removeprefix(f"{path.name}: ")) from exc


async def load_flow_files(
    store: Store, config: ServerConfig, paths: Iterable[Path], checks: FlowChecks
) -> list[str]:
    """Save each flow file as a draft of the dev project, unless its draft is already the same. A
    file that is not a valid flow, or would close a loop of flows running flows, is skipped (a
    warning in the log); returns `name: reason` for each skipped file."""
    from noukai_server.flows import parse_off_loop
    from noukai_server.runtime.errors import RequestRejected
    from noukai_server.runtime.flow_admin import save_flow

    skipped: list[str] = []
    for path in paths:
        try:
            # Off the event loop: `serve --reload` reads changed files while the server serves.
            spec = await parse_off_loop(read_flow_file, path, checks)
        except BadFlowFile as exc:
            logger.warning("skipped flow file %s: %s", path, exc, extra={"file": str(path)})
            skipped.append(f"{path.name}: {exc}")
            continue
        current = await store.get_flow(config.dev_org, config.dev_project, spec.slug)
        if current is not None and current.draft == spec.to_document():
            continue  # unchanged: keep the draft revision, so running runs never look stale
        try:
            await save_flow(store, config.dev_org, config.dev_project, spec)
        except RequestRejected as exc:  # FLOW_CYCLE: it runs itself through the flows it names
            logger.warning("skipped flow file %s: %s", path, exc.message, extra={"file": str(path)})
            skipped.append(f"{path.name}: {exc.message}")
            continue
        logger.info("loaded %s as %s/%s/%s", path.name, config.dev_org, config.dev_project, spec.slug)
    return skipped


def flow_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if is_flow_file(path))
