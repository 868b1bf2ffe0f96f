"""CPU time and memory of a server's whole process tree, read from /proc.

CPU is the run time of every live thread of every process of the tree (schedstat, ns; it
agrees with utime+stime and with ``perf stat -e task-clock`` within ~3 % here) plus
cutime+cstime (children that exited and were reaped, in 10 ms ticks), so a worker that exits
during a measurement is still counted, by its parent. A *thread* that exits during a
measurement loses its time (no compared server does that while it is being measured).
Memory is the sum of VmRSS (double-counts pages shared by an nginx master and its workers)
and the sum of Pss from smaps_rollup (shared pages split between sharers, the honest total).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    return raw[raw.rindex(")") + 2 :].split()


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            parents[int(entry.name)] = int(fields[1])
    return parents


def tree_pids(roots: Iterable[int]) -> list[int]:
    """The given pids and all their descendants that are alive now."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    seen: list[int] = []
    stack = [pid for pid in roots if pid in parents]
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.append(pid)
        stack.extend(children.get(pid, []))
    return sorted(seen)


def _task_runtime_ns(pid: int) -> int | None:
    """Run time of every live thread of ``pid`` in ns (/proc/PID/task/TID/schedstat)."""
    total = 0
    try:
        for task in (PROC / str(pid) / "task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError, ValueError):
        return None
    return total


def cpu_seconds(roots: Iterable[int]) -> float:
    """Cumulative CPU seconds of the tree now: its live threads plus reaped children.

    Live threads are read from schedstat (ns resolution); where that is missing, from the
    tick counters utime+stime of /proc/PID/stat. Children that exited and were reaped
    (cutime+cstime) always come from /proc/PID/stat, in ticks.
    """
    total = 0.0
    for pid in tree_pids(roots):
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # After the command name: state=0, ppid=1, ... utime=11, stime=12, cutime=13, cstime=14.
        total += (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
        runtime = _task_runtime_ns(pid)
        if runtime is None:
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        else:
            total += runtime / 1e9
    return total


@dataclass(frozen=True)
class Memory:
    """Memory of a process tree, in bytes."""

    rss: int
    pss: int
    processes: int

    @property
    def rss_mb(self) -> float:
        """Summed RSS in MB (10^6 bytes)."""
        return self.rss / 1e6

    @property
    def pss_mb(self) -> float:
        """Summed PSS in MB (10^6 bytes)."""
        return self.pss / 1e6


def _kb_field(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    return 0


def memory(roots: Iterable[int]) -> Memory:
    """RSS and PSS summed over the tree."""
    pids = tree_pids(roots)
    rss = sum(_kb_field(PROC / str(pid) / "status", "VmRSS") for pid in pids)
    pss = sum(_kb_field(PROC / str(pid) / "smaps_rollup", "Pss") for pid in pids)
    return Memory(rss, pss, len(pids))


class CpuMeter:
    """Measures the CPU seconds a process tree spends between :meth:`start` and :meth:`stop`."""

    def __init__(self, roots: Iterable[int]) -> None:
        """Meter the trees rooted at ``roots`` (re-walked at each reading)."""
        self.roots = list(roots)
        self._start = 0.0

    def start(self) -> None:
        """Take the first reading."""
        self._start = cpu_seconds(self.roots)

    def stop(self) -> float:
        """CPU seconds spent since :meth:`start`."""
        return cpu_seconds(self.roots) - self._start


def busy_seconds() -> dict[str, float]:
    """Busy CPU seconds (everything but idle and iowait) of each CPU since boot, from /proc/stat."""
    busy: dict[str, float] = {}
    for line in (PROC / "stat").read_text().splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *values = line.split()
        ticks = [int(v) for v in values[:8]]
        busy[name[3:]] = (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS
    return busy


class BusyMeter:
    """Busy seconds of every CPU between :meth:`start` and :meth:`stop` (contention check)."""

    def __init__(self) -> None:
        """Nothing is read until :meth:`start`."""
        self._start: dict[str, float] = {}

    def start(self) -> None:
        """Take the first reading."""
        self._start = busy_seconds()

    def stop(self) -> dict[str, float]:
        """Busy seconds per CPU (keyed by CPU number) since :meth:`start`."""
        now = busy_seconds()
        return {cpu: round(now[cpu] - self._start.get(cpu, 0.0), 3) for cpu in now}
