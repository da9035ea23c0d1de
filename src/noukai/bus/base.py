"""The bus interface shared by the in-process broker and the Redis one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One entry of a run's log: `data` is the event's JSON, serialised once when it was emitted."""

    run_id: str
    seq: int
    type: str
    data: bytes


class Subscription(Protocol):
    """An async iterator of events; cancelling a pending `__anext__` loses nothing."""

    def __aiter__(self) -> Subscription: ...

    async def __anext__(self) -> LogEvent: ...

    async def aclose(self) -> None: ...


class Bus(Protocol):
    async def publish(self, run_id: str, events: Sequence[LogEvent]) -> None:
        """Deliver already-stored events to every live subscriber of the run."""
        ...

    def subscribe(self, run_id: str) -> Subscription:
        """Events published after this call, in order. Subscribe *before* reading the stored log
        so nothing falls between the two; readers drop duplicates by seq."""
        ...

    async def announce_work(self) -> None:
        """Wake idle workers: a run became claimable."""
        ...

    async def wait_for_work(self, max_wait: float) -> None:
        """Return when work was announced, or after `max_wait` seconds."""
        ...

    async def aclose(self) -> None: ...
