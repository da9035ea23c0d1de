"""Value kinds of the settings table: how a TOML value or an environment string becomes a typed
value, and the sentence saying what is allowed (which every error message quotes)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class Invalid(ValueError):
    """The value is not of the kind; the caller names where it came from and what is allowed."""


@dataclass(frozen=True, slots=True)
class Kind:
    allowed: str
    """What is allowed, e.g. "an integer >= 1"."""
    from_value: Callable[[Any], Any]
    """From a TOML value (or a command-line option's already-typed value); raises `Invalid`."""
    from_env: Callable[[str], Any]
    """From an environment variable's text; raises `Invalid`."""


def _number(value: Any, *, integer: bool) -> int | float:
    # bool is an int in Python, never a number in a config file.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid
    if integer and not isinstance(value, int):
        raise Invalid
    return value


def _parse_number(text: str, *, integer: bool) -> int | float:
    try:
        return int(text.strip()) if integer else float(text.strip())
    except ValueError:
        raise Invalid from None


def number(*, integer: bool, minimum: float, exclusive: bool = False, maximum: int | None = None) -> Kind:
    """An integer or a number, at least `minimum` (more than it when `exclusive`)."""
    noun = "an integer" if integer else "a number"
    bound = f"> {minimum:g}" if exclusive else f">= {minimum:g}"
    allowed = f"{noun} {bound}" + (f" and <= {maximum}" if maximum is not None else "")
    if not integer:
        allowed += " (seconds, e.g. 15 or 2.5; no unit)"

    def check(value: int | float) -> int | float:
        too_small = value <= minimum if exclusive else value < minimum
        if too_small or (maximum is not None and value > maximum) or value != value:  # NaN
            raise Invalid
        return value if integer else float(value)

    return Kind(
        allowed,
        lambda value: check(_number(value, integer=integer)),
        lambda text: check(_parse_number(text, integer=integer)),
    )


def _bool_text(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise Invalid


def _bool_value(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid
    return value


BOOLEAN = Kind("true or false (environment: 1/0, true/false, yes/no, on/off)", _bool_value, _bool_text)


def _text_value(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid
    return value.strip()


TEXT = Kind("a non-empty string", _text_value, _text_value)


def _path_value(value: Any) -> Path:
    if isinstance(value, Path):
        return value
    return Path(_text_value(value))


PATH = Kind("a path (a non-empty string)", _path_value, _path_value)


def _paths_value(value: Any) -> tuple[Path, ...]:
    if not isinstance(value, list | tuple):
        raise Invalid
    return tuple(_path_value(item) for item in value)


def _paths_text(text: str) -> tuple[Path, ...]:
    return tuple(Path(part) for part in text.split(os.pathsep) if part.strip())


PATHS = Kind(
    "a list of paths (environment: separated by the OS path separator, ':' on Unix)",
    _paths_value,
    _paths_text,
)


def choice(*options: str) -> Kind:
    def pick(value: Any) -> str:
        if not isinstance(value, str) or value.strip().lower() not in options:
            raise Invalid
        return value.strip().lower()

    return Kind("one of " + ", ".join(options), pick, pick)


def count_map(minimum: int) -> Kind:
    """A table of name -> integer >= minimum; from the environment `name=N,other=M`."""

    def from_mapping(value: Any) -> dict[str, int]:
        if not isinstance(value, Mapping):
            raise Invalid
        out: dict[str, int] = {}
        for name, count in value.items():
            number = _number(count, integer=True)
            if not isinstance(name, str) or not name or number < minimum:
                raise Invalid
            out[name] = int(number)
        return out

    def from_text(text: str) -> dict[str, int]:
        pairs: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, count = part.partition("=")
            if not sep:
                raise Invalid
            pairs[name.strip()] = int(_parse_number(count, integer=True))
        return from_mapping(pairs)

    return Kind(
        f"a table of name = integer >= {minimum} (environment: name=N,other=M)", from_mapping, from_text
    )


def optional(kind: Kind) -> Kind:
    """`kind`, or nothing: the empty string in the environment means unset (None)."""
    return Kind(kind.allowed, kind.from_value, lambda text: kind.from_env(text) if text.strip() else None)
