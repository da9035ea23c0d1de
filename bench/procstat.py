"""Server cost from /proc: CPU seconds (utime + stime, children included) and resident memory.

A target's server is its process plus any live descendants (uvicorn workers, a wrapper's child);
CPU of children that already exited is in the root's cutime + cstime.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces; everything after its closing paren is plain.
    return raw[raw.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """`pid` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def cpu_seconds(pid: int, tree: list[int] | None = None) -> float:
    """utime + stime of the tree (`tree` from `descendants(pid)`, computed when not given), plus the
    waited-for children's cutime + cstime."""
    ticks = 0
    for index, member in enumerate(tree or descendants(pid)):
        try:
            fields = _stat_fields(member)
        except OSError:
            continue
        # After the paren: state=0, ppid=1, ... utime=11, stime=12, cutime=13, cstime=14.
        ticks += int(fields[11]) + int(fields[12])
        if index == 0:
            ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


@dataclass(frozen=True, slots=True)
class Memory:
    rss_mb: float
    """VmRSS summed over the tree."""
    peak_mb: float
    """VmHWM (high-water mark) summed over the tree."""


def memory(pid: int, tree: list[int] | None = None) -> Memory:
    rss = peak = 0
    for member in tree or descendants(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak += int(line.split()[1])
    return Memory(rss / 1024, peak / 1024)


def self_cpu_seconds() -> float:
    """This process's own CPU (the load generator)."""
    times = os.times()
    return times.user + times.system


def system_busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine, all CPUs (from /proc/stat); with the server's and
    the client's own, gives what other processes took meanwhile."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice: guests are already in user.
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]
    return busy / CLOCK_TICKS


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


# -- several processes (the scaled deployment: API, worker, PostgreSQL, Redis) -----------------------

Roles = dict[str, list[int]]
"""role -> the root pids counted under it (each with its live descendants)."""


def role_cpu(roles: Roles) -> dict[str, dict[int, float]]:
    """role -> {pid: CPU seconds so far}; a snapshot to subtract with `cpu_between`."""
    return {role: {pid: cpu_seconds(pid) for pid in pids} for role, pids in roles.items()}


def cpu_between(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds per role between two snapshots. A pid first seen in `after` started meanwhile,
    so all its CPU counts. A process that exits between the two is lost unless its parent is the
    root counted (then it is in the root's cutime): hence PostgreSQL is counted by its postmaster,
    whose backends come and go, not by the backends themselves."""
    return {
        role: sum(seconds - before.get(role, {}).get(pid, 0.0) for pid, seconds in pids.items())
        for role, pids in after.items()
    }


def role_rss_mb(roles: Roles) -> dict[str, float]:
    return {role: sum(memory(pid).rss_mb for pid in pids) for role, pids in roles.items()}
