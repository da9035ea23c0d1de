"""Operator-registered Python functions that `python` steps may call.

A flow document can only *name* a function; it can never carry code. That keeps tenants from
running arbitrary Python on the server: the operator decides what exists by registering it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import anyio.to_thread
import regex  # type: ignore[import-untyped]  # no stubs published; used in one place

from noukai_server.flows._checks import argument_faults, describe_call

StepFunction = Callable[..., Any] | Callable[..., Awaitable[Any]]

# The builtins below run on worker threads, but one C call (a regex match, json.loads, str.upper)
# holds the GIL until it returns: each input is capped so no call can stall the event loop.
MAX_TEXT_CHARS = 1024 * 1024
"""The longest text (or JSON document) a builtin function takes."""
MAX_PATTERN_CHARS = 10_000
REGEX_SECONDS = 1.0
"""How long one `text.findall` may match; the `regex` engine checks it and releases the GIL."""


class FunctionRegistry:
    def __init__(self) -> None:
        self._functions: dict[str, StepFunction] = {}

    def register(self, name: str, function: StepFunction) -> None:
        if name in self._functions:
            raise ValueError(f"a function named {name!r} is already registered")
        self._functions[name] = function

    def names(self) -> Iterable[str]:
        return self._functions.keys()

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    def signature(self, name: str) -> inspect.Signature | None:
        """The signature of the function registered as `name`; None when Python cannot tell it."""
        try:
            return inspect.signature(self._functions[name])
        except (TypeError, ValueError):
            return None

    def signatures(self) -> dict[str, inspect.Signature]:
        """Each function's signature, by its public name (those without one are left out)."""
        found = {name: self.signature(name) for name in self._functions}
        return {name: signature for name, signature in found.items() if signature is not None}

    async def call(self, name: str, arguments: Mapping[str, Any]) -> Any:
        """Call `name` with keyword `arguments`; arguments that do not fit its signature raise
        TypeError naming the public name and the expected signature (never the private one)."""
        function = self._functions[name]
        signature = self.signature(name)
        if signature is not None:
            try:
                signature.bind(**arguments)
            except TypeError as exc:
                faults = "; ".join(argument_faults(signature, arguments)) or str(exc)
                raise TypeError(f"{faults}; expected {describe_call(name, signature)}") from None
        if inspect.iscoroutinefunction(function):
            return await function(**arguments)
        # Sync functions run on a worker thread so a slow one cannot stall every other run.
        # abandon_on_cancel: a step timeout or a cancel cannot interrupt the thread, so the step
        # moves on and the thread is left to finish on its own.
        return await anyio.to_thread.run_sync(lambda: function(**arguments), abandon_on_cancel=True)


def _bounded_text(text: str, what: str = "text") -> str:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"{what} is longer than {MAX_TEXT_CHARS} characters")
    return text


def _word_count(text: str) -> int:
    return len(_bounded_text(text).split())


def _split_words(text: str) -> list[str]:
    return _bounded_text(text).split()


def _parse_json(text: str) -> Any:
    try:
        return json.loads(_bounded_text(text))
    except RecursionError:
        raise ValueError("the JSON document nests too deeply") from None


def _upper(text: str) -> str:
    return _bounded_text(text).upper()


def _join(items: list[Any], separator: str = " ") -> str:
    _bounded_text(separator, "separator")
    parts: list[str] = []
    size = 0
    for item in items:
        part = str(item)
        size += len(part) + len(separator)
        if size > MAX_TEXT_CHARS + len(separator):
            raise ValueError(f"the joined text would be longer than {MAX_TEXT_CHARS} characters")
        parts.append(part)
    return separator.join(parts)


def _regex_findall(text: str, pattern: str) -> list[Any]:
    _bounded_text(text)
    if len(_bounded_text(pattern, "pattern")) > MAX_PATTERN_CHARS:
        raise ValueError(f"pattern is longer than {MAX_PATTERN_CHARS} characters")
    try:
        # `regex` rather than `re`: `re` backtracks catastrophically (`(a|aa)+$`) holding the GIL,
        # with no way to stop it; `regex` gives up after `timeout` and lets other threads run.
        found: list[Any] = regex.findall(pattern, text, timeout=REGEX_SECONDS, concurrent=True)
        return found
    except regex.error as exc:
        raise ValueError(f"invalid pattern: {exc}") from None
    except TimeoutError:
        raise TimeoutError(
            f"the pattern ran past its {REGEX_SECONDS:g} s limit on this text "
            "(it backtracks catastrophically; make it unambiguous, e.g. (a+)$ rather than (a|aa)+$)"
        ) from None


async def _sleep(seconds: float, value: Any = None) -> Any:
    await asyncio.sleep(seconds)
    return value


def default_functions() -> FunctionRegistry:
    """The functions every server offers; operators add their own beside these."""
    registry = FunctionRegistry()
    registry.register("text.word_count", _word_count)
    registry.register("text.split_words", _split_words)
    registry.register("text.upper", _upper)
    registry.register("text.join", _join)
    registry.register("text.findall", _regex_findall)
    registry.register("json.parse", _parse_json)
    registry.register("time.sleep", _sleep)
    return registry
