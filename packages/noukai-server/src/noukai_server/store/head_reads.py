"""Coalesced reads of run heads: the asks of many readers made within a few milliseconds of each
other share one statement.

Every open stream polls its run's head now and then (eventlog/follower.py); one API process holds
thousands of streams, so one statement per poll made the database round trips, not the streams,
the limit on how many a process can hold (docs/benchmarks.md, "Idle streams"). Waiting
`window` seconds for company costs a poll nothing that matters (it is the fallback behind the
bus) and turns N statements into one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from .records import RunHead

HeadFetch = Callable[[Sequence[str]], Awaitable[dict[str, RunHead]]]

WINDOW_SECONDS = 0.02
"""How long the first ask of a batch waits for others to join it."""
MAX_BATCH = 500
"""The most run ids one statement asks for; a batch that fills up goes at once."""


class HeadReads:
    """`get(run_id)` answers the run's head (None if there is no such run), batching the asks
    made in the same `window` into one `fetch` of at most `max_batch` ids.

    A caller cancelled while it waits loses only its own answer; a failed fetch raises its
    error in every caller of that batch."""

    def __init__(
        self, fetch: HeadFetch, *, window: float = WINDOW_SECONDS, max_batch: int = MAX_BATCH
    ) -> None:
        self._fetch = fetch
        self._window = window
        self._max_batch = max_batch
        self._pending: dict[str, list[asyncio.Future[RunHead | None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._fetches: set[asyncio.Task[None]] = set()
        """Batches in flight, held so the loop does not drop them half-way."""

    async def get(self, run_id: str) -> RunHead | None:
        loop = self._on_running_loop()
        answer: asyncio.Future[RunHead | None] = loop.create_future()
        self._pending.setdefault(run_id, []).append(answer)
        if len(self._pending) >= self._max_batch:
            self._send()
        elif self._timer is None:
            self._timer = loop.call_later(self._window, self._send)
        return await answer

    def _on_running_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # reused on a new loop: what waited on the old one is gone
            self._pending, self._timer, self._fetches, self._loop = {}, None, set(), loop
        return loop

    def _send(self) -> None:
        """Start fetching what is pending."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, {}
        if batch:
            assert self._loop is not None
            task = self._loop.create_task(self._answer(batch))
            self._fetches.add(task)
            task.add_done_callback(self._fetches.discard)

    async def _answer(self, batch: dict[str, list[asyncio.Future[RunHead | None]]]) -> None:
        try:
            heads = await self._fetch(list(batch))
        except BaseException as exc:
            for answers in batch.values():
                for answer in answers:
                    if not answer.done():
                        if isinstance(exc, asyncio.CancelledError):
                            answer.cancel()
                        else:
                            answer.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for run_id, answers in batch.items():
            head = heads.get(run_id)
            for answer in answers:
                if not answer.done():
                    answer.set_result(head)

    async def aclose(self) -> None:
        """Send what is pending and wait for the batches in flight (before the store closes)."""
        self._on_running_loop()
        self._send()
        if self._fetches:
            await asyncio.gather(*self._fetches, return_exceptions=True)
