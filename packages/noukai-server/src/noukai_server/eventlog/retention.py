"""Pruning finished runs' event logs past their retention, in small batches so live traffic (on
SQLite, one writer) never waits long behind it.

A run recorded in a replay session keeps its log for the longer of the two retention periods:
the log is what the session's snapshots are made of, and what its traces are made of.

Threads past their TTL are erased by the same sweep (`Store.erase_expired_threads`)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from noukai_server.store import Store, rate_counters

logger = logging.getLogger("noukai.retention")
THREAD_BATCH = 50
"""Expired threads erased per write."""


class RetentionTask:
    def __init__(
        self,
        store: Store,
        *,
        retention_seconds: float,
        interval_seconds: float = 3600.0,
        batch_runs: int = 200,
        session_retention_seconds: float | None = None,
    ) -> None:
        self._store = store
        self._retention = timedelta(seconds=retention_seconds)
        self._session_retention = timedelta(seconds=max(retention_seconds, session_retention_seconds or 0))
        self._interval = interval_seconds
        self._batch = batch_runs
        self._task: asyncio.Task[None] | None = None

    async def prune_once(self) -> int:
        now = datetime.now(UTC)
        cutoff = now - self._retention
        session_cutoff = now - self._session_retention
        total = 0
        while True:
            pruned = await self._store.prune_events(
                cutoff, max_runs=self._batch, session_finished_before=session_cutoff
            )
            total += pruned
            if pruned < self._batch:
                break
            await asyncio.sleep(0.05)  # let queued writes through between batches
        await self.erase_expired_threads()
        await rate_counters.sweep_expired(self._store)  # request-rate windows that have passed
        return total

    async def erase_expired_threads(self) -> int:
        """Erase the threads past their TTL (messages, and their runs' logs and contents), a few
        per write; a thread with an active run waits for the run to end."""
        erased = 0
        while True:
            count = await self._store.erase_expired_threads(max_threads=THREAD_BATCH)
            erased += count
            if count < THREAD_BATCH:
                if erased:
                    logger.info("erased %d expired threads", erased)
                return erased
            await asyncio.sleep(0.05)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="noukai-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                pruned = await self.prune_once()
                if pruned:
                    logger.info("pruned the event logs of %d finished runs", pruned)
            except Exception:
                logger.exception("pruning old event logs failed; will retry")
            await asyncio.sleep(self._interval)
