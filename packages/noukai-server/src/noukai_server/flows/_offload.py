"""Parsing and validating flow documents off the event loop, a few at a time.

Parsing 1 MiB of YAML is pure Python and takes a good fraction of a second; validating it runs
pydantic over every value. On the event loop, ten such pushes at once would freeze every stream of
every tenant. On worker threads the loop keeps getting the GIL (a thread running bytecode yields
it every 5 ms), and the limiter keeps a burst of pushes from taking every thread the server has.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")

MAX_CONCURRENT_PARSES = 1
"""Documents parsed at once per process; more wait their turn (the machine's cores, not more)."""

_parsing = anyio.CapacityLimiter(MAX_CONCURRENT_PARSES)


async def parse_off_loop(parse: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`parse(*args, **kwargs)` on a worker thread, at most MAX_CONCURRENT_PARSES at once."""
    return await anyio.to_thread.run_sync(partial(parse, *args, **kwargs), limiter=_parsing)
