"""The config file: finding it, parsing it, and pointing at the line of a key in messages.

tomllib gives no positions for keys, so a key's line is found by scanning the text for its
section's header and then for the key; when that fails (dotted keys, inline tables) the message
names the section's line, or just the file.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from noukai_server.config import ConfigError

FILE_NAME = "noukai.toml"
CONFIG_ENV = "NOUKAI_CONFIG"
_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def did_you_mean(word: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    if not close:  # a shortened name (`input` for `input_per_million`) is too far for difflib
        close = [name for name in known if name.startswith(word) or word.startswith(name)][:1]
    return f"; did you mean {close[0]!r}?" if close else ""


def _header_parts(header: str) -> tuple[str, ...]:
    """`providers.local.models."gpt-4o"` -> ("providers", "local", "models", "gpt-4o")."""
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([^.\s]+)', header)
    return tuple(a or b or c for a, b, c in parts)


@dataclass(frozen=True, slots=True)
class ConfigFile:
    path: Path
    text: str
    data: Mapping[str, Any]

    @property
    def directory(self) -> Path:
        return self.path.parent

    def line_of(self, section: tuple[str, ...], key: str | None = None) -> int | None:
        """The line of `key` in the table `section` (or of the header), 1-based; None if unseen."""
        lines = self.text.splitlines()
        header_line: int | None = None
        sub_table_line: int | None = None  # `[mcp.servers.x]` for ("mcp", "servers")
        inside = not section  # top-level keys come before any header
        key_pattern = (
            re.compile(rf"""^\s*(?:"{re.escape(key)}"|'{re.escape(key)}'|{re.escape(key)})\s*=""")
            if key
            else None
        )
        for number, line in enumerate(lines, start=1):
            match = _HEADER.match(line)
            if match:
                parts = _header_parts(match.group(1))
                inside = parts == section
                if inside and header_line is None:
                    header_line = number
                if section and parts[: len(section)] == section and sub_table_line is None:
                    sub_table_line = number
                continue
            if inside and key_pattern is not None and key_pattern.match(line):
                return number
        return header_line or sub_table_line

    def where(self, section: tuple[str, ...], key: str | None = None) -> str:
        """`path:line` for messages (just the path when the line cannot be found)."""
        line = self.line_of(section, key)
        return f"{self.path}:{line}" if line else str(self.path)


def read_config_file(path: Path) -> ConfigFile:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return ConfigFile(path.resolve(), text, data)


def find_config_file(
    explicit: Path | None, environ: Mapping[str, str], cwd: Path | None = None
) -> ConfigFile | None:
    """`--config FILE`, else `NOUKAI_CONFIG`, else `noukai.toml` in the working directory if there
    is one. An explicitly named file must exist."""
    if explicit is not None:
        return read_config_file(explicit)
    named = environ.get(CONFIG_ENV, "").strip()
    if named:
        return read_config_file(Path(named))
    default = (cwd or Path(os.getcwd())) / FILE_NAME
    return read_config_file(default) if default.is_file() else None
