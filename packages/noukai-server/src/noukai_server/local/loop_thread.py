"""The event loop that runs a `LocalFlow`'s engine, on a daemon thread of its own.

The sync API never runs a loop on the caller's thread (no `asyncio.run`, no
`run_until_complete`), so it also works from code that already runs inside an event loop (a
notebook, an async web handler). The async API uses the same loop, so every model client and MCP
session of the flow lives on one loop whoever calls, and a stop from any thread reaches a run
through `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """A running event loop on a daemon thread; `close` stops it and joins the thread."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def closed(self) -> bool:
        return self._loop.is_closed() or not self._thread.is_alive()

    def on_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule `coroutine` on the loop; the future is resolved from the loop's thread."""
        if self.closed:
            coroutine.close()
            raise RuntimeError("this flow is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def call(self, callback: Callable[[], None]) -> None:
        """Run `callback` on the loop's thread soon, from any thread; nothing once closed."""
        if not self.closed:
            self._loop.call_soon_threadsafe(callback)

    def call_or_fail(self, callback: Callable[[], None]) -> None:
        """`call`, or RuntimeError when the loop is closed (a run cannot start on it)."""
        if self.closed:
            raise RuntimeError("this flow is closed")
        self._loop.call_soon_threadsafe(callback)

    def close(self, timeout: float = 10.0) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        if not self.on_loop_thread():
            self._thread.join(timeout)
