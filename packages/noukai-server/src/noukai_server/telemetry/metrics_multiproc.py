"""The files of prometheus-client's multiprocess mode: set up at a process's start, tidied at its end.

With `PROMETHEUS_MULTIPROC_DIR` set, each process (`noukai serve`, every `noukai worker` on the
host) writes its values to `<type>_<pid>.db` files there (gauges: `gauge_<mode>_<pid>.db`), and
`/metrics` sums them. prometheus-client's rules: the directory must be emptied between runs of the
deployment, and a process that ends must be marked dead so that its live gauges leave the sums,
while its counters and histograms stay in them (so totals never go backwards while others run).

Who empties it: the first process to start when no other live process has files there (the
deployment is starting, everything in it is stale). A process that starts beside live ones
(a worker added or restarted) only marks the dead ones dead. Its own pid's files, if any, belong
to a dead process whose pid was reused (containers reuse small pids): their live gauges are
removed too. All of this must run before `metrics.install`, which creates this process's files.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, multiprocess

from noukai_server.telemetry.metrics import MULTIPROC_ENV, install, installed, multiprocess_dir

logger = logging.getLogger("noukai.metrics")


class MultiprocDirUnusable(RuntimeError):
    """`PROMETHEUS_MULTIPROC_DIR` names a directory this process cannot create or write to: the
    operator's setting, named in the message."""


_PID: Final = re.compile(r"_(\d+)\.db$")

# prometheus-client leaves these two untyped; typed here once.
mark_process_dead: Callable[[int, str], None] = multiprocess.mark_process_dead
_collect_files: Callable[[CollectorRegistry, str], object] = multiprocess.MultiProcessCollector


def start() -> None:
    """Collect metrics in this process from now on: the directory made ready first, then the
    metrics installed (once per process; a second call does nothing)."""
    if installed() is None:
        prepare()
        install()


def prepare() -> Path | None:
    """Make the multiprocess directory ready for this process (see the module's docstring); the
    directory, or None when multiprocess mode is off."""
    path = multiprocess_dir()
    if path is None:
        return None
    directory = _directory(path)
    own = os.getpid()
    pids = _pids(directory)
    others_alive = any(pid != own and _alive(pid) for pid in pids)
    if not others_alive:
        stale = list(directory.glob("*.db"))
        for file in stale:
            file.unlink(missing_ok=True)
        if stale:
            logger.info("metrics: emptied %s (%d stale files, no live process)", directory, len(stale))
        return directory
    for pid in pids:
        if pid == own or not _alive(pid):
            mark_process_dead(pid, str(directory))
    return directory


def retire_dead() -> None:
    """Take the live gauges of processes that died without `process_exit` (SIGKILL, a crash) out
    of the sums: called before each scrape, so a killed worker's slots leave them at once rather
    than at the next start of a process. A glob and a signal-0 per live-gauge file: microseconds."""
    path = multiprocess_dir()
    if path is None:
        return
    for file in Path(path).glob("gauge_live*_*.db"):
        match = _PID.search(file.name)
        if match is not None and not _alive(pid := int(match.group(1))):
            mark_process_dead(pid, path)


def process_exit() -> None:
    """This process is ending: its live gauges (busy slots, open streams) leave the sums."""
    path = multiprocess_dir()
    if path is not None:
        mark_process_dead(os.getpid(), path)


def scrape_registry() -> CollectorRegistry | None:
    """A registry that reads every process's files (multiprocess mode), or None: then the default
    registry holds this process's metrics."""
    path = multiprocess_dir()
    if path is None:
        return None
    registry = CollectorRegistry()
    _collect_files(registry, str(_directory(path)))
    return registry


def _directory(path: str) -> Path:
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable")
    except OSError as exc:
        raise MultiprocDirUnusable(f"{MULTIPROC_ENV}={path} is unusable: {exc.strerror or exc}") from exc
    return directory


def _pids(directory: Path) -> set[int]:
    pids = set()
    for file in directory.glob("*.db"):
        match = _PID.search(file.name)
        if match is not None:
            pids.add(int(match.group(1)))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        return True
    return True
