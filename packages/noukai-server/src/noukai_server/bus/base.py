"""The bus interface shared by the in-process broker and the Redis one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol


def sse_frame(seq: int, event_type: str, data: bytes) -> bytes:
    """The event as one SSE frame: LF only, `id:` is the seq, blank line at the end."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, event_type.encode(), data)


@dataclass(slots=True)
class LogEvent:
    """One entry of a run's log: `data` is the event's JSON, serialised once when it was emitted,
    and `frame` the same bytes framed for SSE, so streams write them without re-encoding.

    Not `frozen`: one is made per event, and a frozen dataclass's `__init__` costs three times as
    much. Treat it as immutable all the same: the same object goes to every subscriber."""

    run_id: str
    seq: int
    type: str
    data: bytes
    frame: bytes = field(default=b"", compare=False)

    @classmethod
    def create(cls, run_id: str, seq: int, event_type: str, data: bytes) -> LogEvent:
        return cls(run_id, seq, event_type, data, sse_frame(seq, event_type, data))


class Subscription(Protocol):
    """An async iterator of events; cancelling a pending `__anext__` or `wait` loses nothing.

    Readers that want events in bursts use `take_nowait` (everything queued, no await) and `wait`
    (block until something is queued); one reader per subscription."""

    def __aiter__(self) -> Subscription: ...

    async def __anext__(self) -> LogEvent: ...

    def take_nowait(self) -> list[LogEvent]:
        """Every event queued so far, in order, removed from the queue; [] if none."""
        ...

    async def wait(self, timeout: float) -> bool:
        """Return True as soon as an event is queued (at once if one already is), False after
        `timeout` seconds without one (always, once the subscription is closed). Consumes
        nothing; may return True spuriously, so callers check `take_nowait` and wait again."""
        ...

    async def aclose(self) -> None: ...


CancelListener = Callable[[str], None]


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

    async def announce_cancel(self, run_id: str) -> None:
        """Tell whichever worker runs `run_id` to stop it now (the lease check is the fallback)."""
        ...

    def on_cancel(self, listener: CancelListener) -> None:
        """Register a worker's listener for cancellation requests."""
        ...

    async def aclose(self) -> None: ...
