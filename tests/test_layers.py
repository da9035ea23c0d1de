"""Imports flow one way (docs/architecture.md draws the map).

The SDK (`noukai`) imports nothing of the server. Inside `noukai_server`, each folder may import
only the folders listed for it below; everything else is a layering violation. Both static
`import` statements and imports inside functions count, since a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SDK = REPO / "packages" / "noukai" / "src" / "noukai"
SERVER = REPO / "packages" / "noukai-server" / "src" / "noukai_server"

ALLOWED: dict[str, set[str]] = {
    # The foundations know nothing of each other.
    "flows": set(),
    "providers": {"telemetry"},
    "store": set(),
    "bus": set(),
    "defaults": set(),
    "logs": set(),  # the log's setup and its context (request and run ids)
    # Metrics and traces: recorded from every layer below the API, so they import none of them.
    "telemetry": {"logs"},  # logs: tracing puts trace ids on log lines
    # The engine runs steps: no HTTP, no SQL, no bus.
    "engine": {"flows", "providers", "telemetry"},
    "eventlog": {"bus", "store", "engine", "telemetry"},
    # MCP servers as a tool source for the engine: their config, sessions and tool names.
    "mcp": {"config", "engine", "providers"},
    # `ServerConfig.from_env` calls the settings loader (lazily): the table of settings reads
    # the dataclass's fields, so it cannot live below it.
    "config": {"defaults", "providers", "settings", "mcp"},  # mcp: McpServerConfig, for typing only
    # noukai.toml and NOUKAI_*: imports the operator's functions and tools into engine registries.
    "settings": {"config", "defaults", "providers", "engine", "mcp"},
    "runtime": {
        "flows",
        "providers",
        "store",
        "bus",
        "engine",
        "eventlog",
        "config",
        "defaults",
        "logs",
        "mcp",
        "telemetry",
    },
    "api": {
        "flows",
        "providers",
        "store",
        "bus",
        "engine",
        "eventlog",
        "runtime",
        "config",
        "defaults",
        "logs",
        "mcp",
        "console",  # app.py mounts its routes
        "telemetry",
    },
    "cli": {
        "flows",
        "providers",
        "store",
        "bus",
        "engine",
        "eventlog",
        "runtime",
        "config",
        "defaults",
        "api",
        "logs",
        "settings",
        "mcp",
        "telemetry",
    },
    # The web console: static files and the routes that serve them; it knows nothing else.
    "console": set(),
    # In-process flows: the engine and its parts as the server assembles them, no store or bus
    # (runtime: the request checks only); the SDK's typed events and errors.
    "local": {"flows", "providers", "engine", "mcp", "config", "settings", "runtime", "telemetry"},
    "__main__": {"cli"},
    "__init__": {"local"},  # `load_flow` and its classes, imported lazily on first use
}
FORBIDDEN_THIRD_PARTY: dict[str, set[str]] = {
    "engine": {"sqlalchemy", "fastapi", "starlette", "uvicorn", "aiosqlite", "psycopg"},
    "flows": {"sqlalchemy", "fastapi", "starlette", "uvicorn"},
    "providers": {"sqlalchemy", "fastapi", "starlette", "uvicorn"},
    "store": {"fastapi", "starlette", "uvicorn", "openai", "anthropic"},
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _folder(path: Path) -> str:
    relative = path.relative_to(SERVER).parts
    return relative[0].removesuffix(".py")


def test_every_server_folder_is_in_the_map() -> None:
    folders = {_folder(p) for p in SERVER.rglob("*.py")}
    assert folders <= set(ALLOWED), (
        f"add {sorted(folders - set(ALLOWED))} to the map and to docs/architecture.md"
    )


@pytest.mark.parametrize("path", sorted(SDK.rglob("*.py")), ids=lambda p: str(p.relative_to(SDK)))
def test_the_sdk_imports_nothing_of_the_server(path: Path) -> None:
    assert not [m for m in _imports(path) if m.split(".")[0] == "noukai_server"]


def test_server_folders_import_only_downwards() -> None:
    violations: list[str] = []
    for path in sorted(SERVER.rglob("*.py")):
        folder = _folder(path)
        for module in _imports(path):
            parts = module.split(".")
            if parts[0] == "noukai_server" and len(parts) > 1:
                target = parts[1]
                if target != folder and target not in ALLOWED[folder]:
                    violations.append(f"{path.relative_to(SERVER)} imports {module}")
            elif parts[0] in FORBIDDEN_THIRD_PARTY.get(folder, set()):
                violations.append(f"{path.relative_to(SERVER)} imports {module}")
    assert violations == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The rule is not vacuous: an upward import in the engine is reported."""
    sample = tmp_path / "sample.py"
    sample.write_text("from noukai_server.store import Store\nimport sqlalchemy\n")
    imports = _imports(sample)
    assert "noukai_server.store" in imports and "sqlalchemy" in imports
    assert "store" not in ALLOWED["engine"]
    assert "sqlalchemy" in FORBIDDEN_THIRD_PARTY["engine"]


def _imported_names(path: Path) -> set[tuple[str, str]]:
    """`(module, name)` for every `from module import name` in the file (any depth)."""
    found: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.update((node.module, alias.name) for alias in node.names)
    return found


SDK_CLIENT_USERS = {"cli", "local"}
"""The server's folders that may use the SDK itself (`noukai run` is an SDK client; in-process
flows yield the SDK's typed events and raise its errors); everything else shares only the wire
schema, `noukai.types`."""


def test_the_server_shares_only_the_wire_types_with_the_sdk() -> None:
    violations: list[str] = []
    for path in sorted(SERVER.rglob("*.py")):
        if _folder(path) in SDK_CLIENT_USERS:
            continue
        for module in _imports(path):
            parts = module.split(".")
            if parts[0] == "noukai" and module != "noukai.types" and not module.startswith("noukai.types."):
                violations.append(f"{path.relative_to(SERVER)} imports {module}")
    assert violations == []


ROUTES = SERVER / "api" / "routes"
ROUTER_MAY_USE = {"api", "runtime", "eventlog"}
"""Routers parse and serialise: they call the runtime's services (and follow the event log for
streams), never the engine, the flows compiler, the providers or the store's queries; from the
store they may name record types only."""


def _router_violations(path: Path) -> list[str]:
    violations: list[str] = []
    for module, name in _imported_names(path):
        parts = module.split(".")
        if parts[0] != "noukai_server" or len(parts) < 2 or parts[1] in ROUTER_MAY_USE:
            continue
        if parts[1] == "store" and name.endswith("Record"):
            continue
        violations.append(f"from {module} import {name}")
    for module in _imports(path):
        parts = module.split(".")
        if parts[0] == "noukai_server" and len(parts) > 1 and parts[1] not in ROUTER_MAY_USE | {"store"}:
            violations.append(f"import {module}")
    return sorted(set(violations))


@pytest.mark.parametrize("path", sorted(ROUTES.glob("*.py")), ids=lambda p: p.name)
def test_routers_reach_storage_only_through_the_runtime(path: Path) -> None:
    assert _router_violations(path) == []


def test_the_router_rule_sees_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from noukai_server.store import RunRecord, Store\n"
        "from noukai_server.runtime import RunService\n"
        "import noukai_server.engine.runner\n"
    )
    assert _router_violations(sample) == [
        "from noukai_server.store import Store",
        "import noukai_server.engine.runner",
    ]
