"""The sync and async twins of the SDK stay the same API.

For every pair (`Noukai`/`AsyncNoukai`, `Flow`/`AsyncFlow`, ...) each public method, property and
protocol method of one twin has a counterpart on the other with the same parameter names, kinds,
defaults and annotations. Annotations are compared after mapping the sync names to their async
counterparts (`Flow` -> `AsyncFlow`, `Iterator` -> `AsyncIterator`, ...); an `async def` on the
async side counts as returning an awaitable of its annotation. The few intended differences are
listed below, each with its reason.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, get_overloads

import pytest

from noukai import AsyncNoukai, Noukai
from noukai._flows import AsyncFlow, Flow
from noukai._jobs import AsyncJob, Job
from noukai._models import AsyncPausedResult, PausedResult
from noukai._runs import AsyncRun, AsyncRuns, Run, Runs
from noukai._streams import AsyncStream, Stream
from noukai._threads import AsyncThreads, AsyncThreadStream, Threads, ThreadStream

PAIRS: list[tuple[type, type]] = [
    (Noukai, AsyncNoukai),
    (Flow, AsyncFlow),
    (Run, AsyncRun),
    (Runs, AsyncRuns),
    (Job, AsyncJob),
    (Stream, AsyncStream),
    (PausedResult, AsyncPausedResult),
    (Threads, AsyncThreads),
    (ThreadStream, AsyncThreadStream),
]

RENAMED: dict[str, str] = {
    # Python's async protocols and the async close have their own names.
    "close": "aclose",
    "__enter__": "__aenter__",
    "__exit__": "__aexit__",
    "__iter__": "__aiter__",
    "__next__": "__anext__",
}
"""Sync member name -> async member name, where the language (or `aclose` convention) renames it."""

DUNDERS = ("__init__", *RENAMED)
"""Non-public members that are still API: the constructor and the protocol methods."""

INTENTIONAL: dict[tuple[str, str], str] = {
    # (sync class, sync member) -> why the twins differ there. Empty names the async-only side.
}
"""Members allowed to exist on one twin only (none today; add one with its reason)."""

ANNOTATION_NAMES: dict[str, str] = {
    "Noukai": "AsyncNoukai",
    "Flow": "AsyncFlow",
    "Run": "AsyncRun",
    "Runs": "AsyncRuns",
    "Job": "AsyncJob",
    "Threads": "AsyncThreads",
    "ThreadStream": "AsyncThreadStream",
    "Stream": "AsyncStream",
    "PausedResult": "AsyncPausedResult",
    "Iterator": "AsyncIterator",
    "Iterable": "AsyncIterable",
    "SyncTransport": "AsyncTransport",
    "ToolHandler": "AsyncToolHandler",
    # The user's own HTTP client is the async flavour of the same library.
    "Client": "AsyncClient",
}
"""Sync type name -> the async twin's type name, for comparing annotations word by word."""

ANNOTATION_REWRITES: dict[str, str] = {
    # A sync generator's send and return types are both spelt; an async generator has no return.
    "Generator[T, None, None]": "AsyncGenerator[T, None]",
    "Generator[ThreadEvent, None, None]": "AsyncGenerator[ThreadEvent, None]",
}
"""Whole sync annotations whose async spelling differs beyond a rename."""


def to_async_annotation(annotation: str) -> str:
    text = ANNOTATION_REWRITES.get(annotation, annotation)
    return re.sub(r"\b[A-Za-z_]\w*\b", lambda m: ANNOTATION_NAMES.get(m.group(0), m.group(0)), text)


def _text(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return ""
    if isinstance(annotation, str):
        return annotation
    return inspect.formatannotation(annotation)


def _strip_awaitable(annotation: str) -> str:
    match = re.fullmatch(
        r"(?:typing\.|collections\.abc\.)?(?:Awaitable|Coroutine\[Any, Any,)\[?(.*)\]", annotation
    )
    return match.group(1).strip() if match else annotation


def members(cls: type) -> dict[str, Any]:
    """Public members (methods, properties) and the API dunders of `cls`, inherited ones too."""
    found: dict[str, Any] = {}
    for name in dir(cls):
        if name.startswith("_") and name not in DUNDERS and name not in RENAMED.values():
            continue
        attr = inspect.getattr_static(cls, name)
        if isinstance(attr, property | staticmethod | classmethod) or inspect.isfunction(attr):
            found[name] = attr
    return found


def _function(attr: Any) -> Callable[..., Any]:
    if isinstance(attr, property):
        assert attr.fget is not None
        return attr.fget
    if isinstance(attr, staticmethod | classmethod):
        return attr.__func__
    return attr  # type: ignore[no-any-return]


def compare_functions(where: str, sync_fn: Callable[..., Any], async_fn: Callable[..., Any]) -> list[str]:
    """Every way `async_fn` differs from the async twin of `sync_fn` (empty when they match)."""
    problems: list[str] = []
    if inspect.iscoroutinefunction(sync_fn) or inspect.isasyncgenfunction(sync_fn):
        problems.append(f"{where}: the sync twin is async")
    sync_sig = inspect.signature(sync_fn)
    async_sig = inspect.signature(async_fn)
    sync_params = list(sync_sig.parameters.values())
    async_params = list(async_sig.parameters.values())
    sync_names = [p.name for p in sync_params]
    async_names = [p.name for p in async_params]
    if sync_names != async_names:
        problems.append(f"{where}: parameters {sync_names} != {async_names}")
    for sp, ap in zip(sync_params, async_params, strict=False):
        if sp.name != ap.name:
            continue
        if sp.kind != ap.kind:
            problems.append(f"{where}({sp.name}): kind {sp.kind.name} != {ap.kind.name}")
        if sp.default != ap.default:
            problems.append(f"{where}({sp.name}): default {sp.default!r} != {ap.default!r}")
        expected = to_async_annotation(_text(sp.annotation))
        if expected != _text(ap.annotation):
            problems.append(f"{where}({sp.name}): annotation {expected!r} != {_text(ap.annotation)!r}")
    expected_return = to_async_annotation(_text(sync_sig.return_annotation))
    actual_return = _text(async_sig.return_annotation)
    if inspect.iscoroutinefunction(async_fn):
        pass  # `async def f() -> X` is awaited to an X: compare X itself
    else:
        actual_return = _strip_awaitable(actual_return)
    if expected_return != actual_return:
        problems.append(f"{where}: returns {expected_return!r} != {actual_return!r}")
    return problems


def compare_twins(sync_cls: type, async_cls: type) -> list[str]:
    """Every API difference between `sync_cls` and `async_cls` not listed in `INTENTIONAL`."""
    problems: list[str] = []
    sync_members = members(sync_cls)
    async_members = members(async_cls)
    # Members both twins inherit from one shared base (pydantic's `BaseModel`, a `_...Base`
    # helper) are one definition: they cannot drift apart.
    shared = {name for name, attr in sync_members.items() if async_members.get(name) is attr}
    sync_members = {name: attr for name, attr in sync_members.items() if name not in shared}
    async_members = {name: attr for name, attr in async_members.items() if name not in shared}
    paired: dict[str, str] = {}
    for name in sync_members:
        twin = RENAMED.get(name, name)
        if twin in async_members:
            paired[name] = twin
        elif (sync_cls.__name__, name) not in INTENTIONAL:
            problems.append(f"{sync_cls.__name__}.{name} has no twin {async_cls.__name__}.{twin}")
    for name in async_members:
        if name not in paired.values() and (async_cls.__name__, name) not in INTENTIONAL:
            problems.append(f"{async_cls.__name__}.{name} has no twin on {sync_cls.__name__}")
    for sync_name, async_name in paired.items():
        sync_attr, async_attr = sync_members[sync_name], async_members[async_name]
        where = f"{sync_cls.__name__}.{sync_name}"
        if type(sync_attr) is not type(async_attr):
            problems.append(f"{where}: {type(sync_attr).__name__} vs {type(async_attr).__name__}")
            continue
        sync_fn, async_fn = _function(sync_attr), _function(async_attr)
        problems += compare_functions(where, sync_fn, async_fn)
        sync_overloads, async_overloads = get_overloads(sync_fn), get_overloads(async_fn)
        if len(sync_overloads) != len(async_overloads):
            problems.append(f"{where}: {len(sync_overloads)} overloads != {len(async_overloads)}")
        for index, (so, ao) in enumerate(zip(sync_overloads, async_overloads, strict=False)):
            problems += compare_functions(f"{where}[overload {index}]", so, ao)
    return problems


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS, ids=[s.__name__ for s, _ in PAIRS])
def test_twins_have_the_same_api(sync_cls: type, async_cls: type) -> None:
    assert compare_twins(sync_cls, async_cls) == []


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS, ids=[s.__name__ for s, _ in PAIRS])
def test_every_pair_is_really_compared(sync_cls: type, async_cls: type) -> None:
    """The comparison is not vacuous: each pair has API members defined on the twins themselves."""
    own = [name for name, attr in members(sync_cls).items() if attr is not members(async_cls).get(name)]
    assert own, f"{sync_cls.__name__} shares every member with {async_cls.__name__}"


def test_the_intentional_differences_are_still_needed() -> None:
    for sync_name, member in INTENTIONAL:
        sync_cls = next(s for s, _ in PAIRS if s.__name__ == sync_name)
        assert member in members(sync_cls), f"{sync_name}.{member} is gone: drop it from INTENTIONAL"


def test_the_comparison_detects_drift() -> None:
    """Two tiny twins, then copies of the async one that drift in each way the test checks."""

    class Widget:
        def get(self, key: str, *, default: int = 0) -> Iterator[Widget]:
            raise NotImplementedError

        def close(self) -> None: ...

    class AsyncWidget:
        def get(self, key: str, *, default: int = 0) -> AsyncIterator[AsyncWidget]:
            raise NotImplementedError

        async def aclose(self) -> None: ...

    ANNOTATION_NAMES["Widget"] = "AsyncWidget"
    try:
        assert compare_twins(Widget, AsyncWidget) == []

        class ExtraParameter:  # a drifted copy of AsyncWidget
            def get(self, key: str, *, default: int = 0, retries: int = 1) -> AsyncIterator[AsyncWidget]:
                raise NotImplementedError

            async def aclose(self) -> None: ...

        class OtherDefault:  # a drifted copy of AsyncWidget
            def get(self, key: str, *, default: int = 1) -> AsyncIterator[AsyncWidget]:
                raise NotImplementedError

            async def aclose(self) -> None: ...

        class OtherKind:  # a drifted copy of AsyncWidget
            def get(self, key: str, default: int = 0) -> AsyncIterator[AsyncWidget]:
                raise NotImplementedError

            async def aclose(self) -> None: ...

        class OtherAnnotation:  # a drifted copy of AsyncWidget
            def get(self, key: bytes, *, default: int = 0) -> AsyncIterator[AsyncWidget]:
                raise NotImplementedError

            async def aclose(self) -> None: ...

        class SyncReturn:  # a drifted copy of AsyncWidget
            def get(self, key: str, *, default: int = 0) -> Iterator[Widget]:
                raise NotImplementedError

            async def aclose(self) -> None: ...

        class ExtraMethod:  # a drifted copy of AsyncWidget
            def get(self, key: str, *, default: int = 0) -> AsyncIterator[AsyncWidget]:
                raise NotImplementedError

            async def aclose(self) -> None: ...

            def put(self, key: str) -> None: ...

        for drifted, expected in [
            (
                ExtraParameter,
                "parameters ['self', 'key', 'default'] != ['self', 'key', 'default', 'retries']",
            ),
            (OtherDefault, "default 0 != 1"),
            (OtherKind, "kind KEYWORD_ONLY != POSITIONAL_OR_KEYWORD"),
            (OtherAnnotation, "annotation 'str' != 'bytes'"),
            (SyncReturn, "returns 'AsyncIterator[AsyncWidget]' != 'Iterator[Widget]'"),
            (ExtraMethod, "ExtraMethod.put has no twin on Widget"),
        ]:
            problems = compare_twins(Widget, drifted)
            assert any(expected in problem for problem in problems), (drifted.__name__, problems)

        class SyncWithExtraParameter(Widget):
            def get(self, key: str, *, default: int = 0, retries: int = 1) -> Iterator[Widget]:
                raise NotImplementedError

        assert compare_twins(SyncWithExtraParameter, AsyncWidget), "a parameter added to the sync twin only"
    finally:
        del ANNOTATION_NAMES["Widget"]
