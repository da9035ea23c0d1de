"""Render deadlines that a template checks itself, and the bounded pool that renders off the loop.

Python threads cannot be stopped from outside safely (an exception injected into a thread can land
while it holds a lock and leak it), so a runaway template stops itself: `FlowEnvironment` compiles
a `tick()` into every loop iteration, attribute or item lookup and intercepted operator, and a
deadline check into every filter, test and call (`checked`, `checkpoint`). A tick is a countdown
on the render's `RenderJob` that reads the clock every `_CHECK_EVERY` ticks; a check reads it at
once. Past the deadline, or once the job is expired because its caller gave up, either raises
TemplateError. Without a loop or one of those operations a template runs in time linear in its own
source, and the sandbox caps (`_caps`) keep every single C-level operation small, so a check is
never far away.

A render with no job on its thread (inline cheap renders, `load_flow` checks) pays one
thread-local attribute read per tick or check.
"""

from __future__ import annotations

import asyncio
import functools
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from noukai_server.flows._errors import TemplateError

T = TypeVar("T")
# Ticks between two reads of the clock: about one read per millisecond of a tight template loop.
_CHECK_EVERY = 1000
# How long past its deadline a caller waits for a started render before giving up on it (the
# render stops itself at its next tick; this only covers a thread held in one long C call).
BACKSTOP_SECONDS = 1.0


class RenderJob:
    """One render's deadline, checked by its ticks and checks; `expire()` stops it from any thread."""

    __slots__ = ("_budget", "_deadline", "_expired", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._deadline = math.inf
        self._expired = False
        self._budget = _CHECK_EVERY

    @property
    def deadline(self) -> float:
        """When the render must stop (monotonic clock); infinite until it starts."""
        return self._deadline

    def start(self) -> None:
        self._deadline = time.monotonic() + self.seconds

    def expire(self) -> None:
        """Stop the render at its next tick: its caller was cancelled or gave up waiting."""
        self._expired = True
        self._budget = 0

    def check(self) -> None:
        """Raise TemplateError if the render is past its deadline or expired."""
        if self._expired or time.monotonic() >= self._deadline:
            # Stays at zero: every later tick raises again, whatever caught this one.
            self._budget = 0
            raise self.past_deadline()
        self._budget = _CHECK_EVERY

    def past_deadline(self) -> TemplateError:
        return TemplateError(f"template ran past its {self.seconds:g} s limit")


class _Current(threading.local):
    job: RenderJob | None = None


_current = _Current()


@contextmanager
def rendering_under(job: RenderJob) -> Iterator[RenderJob]:
    """Make `job` the deadline of the renders on this thread, until the block ends."""
    previous, _current.job = _current.job, job
    try:
        yield job
    finally:
        _current.job = previous


def tick() -> None:
    """Count one step of the render on this thread; raises TemplateError past its deadline."""
    job = _current.job
    if job is not None:
        # Inlined rather than a method: this runs for every lookup and operator of every render.
        job._budget -= 1
        if job._budget <= 0:
            job.check()


def checkpoint() -> None:
    """Check the deadline now, before a filter, test or call: unlike a lookup, one of those may
    take time linear in its data (`sort`, `s.count(…)`), so a countdown of them would stretch."""
    job = _current.job
    if job is not None:
        job.check()


def checked(function: Any) -> Callable[..., Any]:
    """`function`, checking the deadline before each call (for filters and tests)."""

    @functools.wraps(function)  # keeps `jinja_pass_arg`, so Jinja still passes what it expects
    def checked_call(*args: Any, **kwargs: Any) -> Any:
        job = _current.job  # checkpoint() inlined: this runs for every filter of every render
        if job is not None:
            job.check()
        return function(*args, **kwargs)

    return checked_call


def ticking(iterable: Iterable[T]) -> Iterable[T]:
    """`iterable`, ticking once per item when this thread renders with a deadline."""
    job = _current.job
    if job is None:
        return iterable
    return _ticking(iterable, job)


def _ticking(iterable: Iterable[T], job: RenderJob) -> Iterator[T]:
    for item in iterable:
        job._budget -= 1
        if job._budget <= 0:
            job.check()
        yield item


class RenderPool:
    """Runs renders on at most `max_threads` reused threads, each with a `seconds` deadline that
    its ticks enforce. Threads are never killed: a render past its deadline raises and returns its
    thread to the pool. Safe to share between threads and event loops."""

    def __init__(self, seconds: float, *, max_threads: int = 16) -> None:
        if seconds <= 0 or max_threads < 1:
            raise ValueError("seconds and max_threads must be positive")
        self.seconds = seconds
        self.max_threads = max_threads
        self._executor = ThreadPoolExecutor(max_threads, thread_name_prefix="noukai-render")
        self._lock = threading.Lock()
        self._busy = 0

    def busy(self) -> int:
        """How many renders are running right now (for tests and diagnostics)."""
        with self._lock:
            return self._busy

    async def run(self, call: Callable[[], T]) -> T:
        """`call()` on a pool thread under a fresh deadline. Cancelling the caller stops the render."""
        job = RenderJob(self.seconds)
        waiting = asyncio.wrap_future(self._executor.submit(self._run, job, call))
        try:
            while True:
                # A queued render has no deadline yet; renders ahead of it end by theirs.
                limit = job.deadline + BACKSTOP_SECONDS - time.monotonic()
                if limit <= 0:
                    raise job.past_deadline()
                done, _ = await asyncio.wait((waiting,), timeout=min(limit, self.seconds))
                if done:
                    return cast(T, waiting.result())
        finally:
            if not waiting.done():
                # Cancelled, or gave up at the backstop: a queued job never starts, a running one
                # stops at its next tick.
                job.expire()
                waiting.cancel()

    def _run(self, job: RenderJob, call: Callable[[], Any]) -> Any:
        with self._lock:
            self._busy += 1
        job.start()
        try:
            with rendering_under(job):
                return call()
        finally:
            with self._lock:
                self._busy -= 1
