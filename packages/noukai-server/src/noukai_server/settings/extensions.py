"""`[functions]` and `[tools]`: the operator's Python callables, imported at start and registered
beside the built-in ones.

An entry is `name = "package.module:callable"`, or an inline table with `path` (and, for tools,
`description` and `timeout_seconds`). A table without `path` is a namespace, so that
`text.shout = "..."` (TOML's dotted key) names the function `text.shout`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from noukai_server.config import ConfigError, OperatorCallable, ServerConfig
from noukai_server.engine import FunctionRegistry, ToolRegistry, default_functions, default_tools
from noukai_server.settings.source import ConfigFile, did_you_mean

_ENTRY_KEYS = {"functions": ("path",), "tools": ("path", "description", "timeout_seconds")}


def make_importable(directory: Path) -> None:
    """Put the config file's folder on `sys.path`, so its entries may name modules kept beside it
    whatever the working directory (the `noukai` script, unlike `python -m`, does not add it)."""
    folder = str(directory)
    if folder not in sys.path:
        sys.path.insert(0, folder)


def import_callable(path: str) -> Callable[..., Any]:
    """`package.module:attribute.path` -> the object; raises ValueError saying what failed."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError('expected "package.module:callable"')
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # whatever the module raises while importing
        raise ValueError(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not callable(target):
        raise ValueError(f"{attribute!r} of {module_name!r} is not callable")
    return target  # type: ignore[no-any-return]


def _entries(table: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and "path" not in value:
            yield from _entries(value, f"{name}.")
        else:
            yield name, value


def parse_callables(section: str, table: Any, file: ConfigFile) -> dict[str, OperatorCallable]:
    """Import every entry of `[functions]` or `[tools]`; a ConfigError names the entry and path."""

    def fail(name: str, message: str) -> ConfigError:
        # A dotted name is written quoted ("text.shout") or as a dotted key (text.shout): try both.
        found = file.line_of((section,), name) != file.line_of((section,))
        key = name if found else name.rpartition(".")[2]
        return ConfigError(f"{file.where((section,), key)}: [{section}] {name}: {message}")

    if not isinstance(table, Mapping):
        raise ConfigError(
            f'{file.where((section,))}: [{section}] must be a table of name = "module:callable"'
        )
    make_importable(file.directory)
    found: dict[str, OperatorCallable] = {}
    for name, value in _entries(table):
        options: Mapping[str, Any] = value if isinstance(value, Mapping) else {"path": value}
        for key in options:
            if key not in _ENTRY_KEYS[section]:
                allowed = ", ".join(_ENTRY_KEYS[section])
                raise fail(
                    name, f"unknown key {key!r}{did_you_mean(key, _ENTRY_KEYS[section])}; allowed: {allowed}"
                )
        path = options.get("path")
        if not isinstance(path, str):
            raise fail(name, f'{path!r} is not allowed: expected "package.module:callable"')
        description = options.get("description")
        if description is not None and not isinstance(description, str):
            raise fail(name, "description must be a string")
        timeout = options.get("timeout_seconds", 30.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise fail(name, f"timeout_seconds {timeout!r} is not allowed: expected a number > 0")
        try:
            function = import_callable(path)
        except ValueError as exc:
            raise fail(name, f"{path}: {exc}") from exc
        found[name] = OperatorCallable(name, path, function, description, float(timeout))
    # Registering now reports a name clash or an undescribable signature before the server starts.
    try:
        _register(section, found, default_functions(), default_tools())
    except _EntryRefused as exc:
        raise fail(exc.name, exc.reason) from exc
    return found


class _EntryRefused(ValueError):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name, self.reason = name, reason


def _register(
    section: str,
    entries: Mapping[str, OperatorCallable],
    functions: FunctionRegistry,
    tools: ToolRegistry,
) -> None:
    for entry in entries.values():
        if section == "functions":
            if entry.name in functions:
                raise _EntryRefused(
                    entry.name, f"{entry.path} clashes with the built-in function {entry.name!r}"
                )
            functions.register(entry.name, entry.function)
            continue
        if entry.name in tools:
            raise _EntryRefused(entry.name, f"{entry.path} clashes with the built-in tool {entry.name!r}")
        try:
            tools.register(
                entry.function,
                name=entry.name,
                description=entry.description,
                timeout_seconds=entry.timeout_seconds,
            )
        except (TypeError, ValueError) as exc:
            raise _EntryRefused(entry.name, f"{entry.path}: {exc}") from exc


def build_registries(config: ServerConfig) -> tuple[FunctionRegistry, ToolRegistry]:
    """The built-in functions and tools plus the config's (checked when the config was loaded)."""
    functions, tools = default_functions(), default_tools()
    _register("functions", config.functions, functions, tools)
    _register("tools", config.tools, functions, tools)
    return functions, tools
