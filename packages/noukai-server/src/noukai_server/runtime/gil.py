"""The event loop's share of the GIL while worker threads compute.

Templates, regular expressions, flow parsing and sync functions run on worker threads so that the
event loop stays free, but a thread running Python bytecode keeps the GIL until the interpreter's
switch interval (5 ms by default) asks it to let go. Every wake-up of the loop (a socket ready, a
timer) then waits up to that long, several times per request: with one runaway template on a
thread, /health's p99 was about 70 ms on a loaded 2-core machine, and under 40 ms at 1 ms. The
cost, a few microseconds per switch, falls on CPU-bound threads only.
"""

from __future__ import annotations

import sys

LOOP_SWITCH_SECONDS = 0.001


def favour_the_event_loop() -> None:
    """Shorten the GIL switch interval to LOOP_SWITCH_SECONDS (never lengthen it)."""
    if sys.getswitchinterval() > LOOP_SWITCH_SECONDS:
        sys.setswitchinterval(LOOP_SWITCH_SECONDS)
