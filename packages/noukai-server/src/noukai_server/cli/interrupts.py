"""Ctrl-C between two outputs, never in the middle of one.

Python raises KeyboardInterrupt at whatever bytecode runs when SIGINT arrives. Landing inside a
rich `Console.print` leaves the console's buffer depth raised (its `__enter__` counted, its
`__exit__` never ran), and from then on everything it prints stays in its buffer: the note that
says how to reattach was lost that way, an exit 130 with nothing on stderr, once in a suite run
under load. Landing inside a JSON line leaves half a line on stdout. So while the command writes,
the signal is only noted, and raised as soon as the writing is done.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

Handler = Callable[[int, FrameType | None], Any] | int | None


class OutputGate:
    """`writing()` marks a stretch of output; a SIGINT that arrives during one is raised as
    KeyboardInterrupt when it ends (and at once otherwise). Install the handler with
    `installed()`, which puts the previous one back."""

    def __init__(self) -> None:
        self._depth = 0
        self._pending = False

    @contextmanager
    def writing(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if self._depth == 0 and self._pending:
            self._pending = False
            raise KeyboardInterrupt

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._depth:
            self._pending = True
        else:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[OutputGate]:
        """Take over SIGINT (only possible on the main thread; elsewhere the default stays)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous: Handler = signal.signal(signal.SIGINT, self.on_signal)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)
