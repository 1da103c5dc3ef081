"""What ``/proc`` says about the servers the suites start: their descendants, memory and CPU time
(Linux only, as every suite here)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PROC = Path("/proc")
KIB = 1024
UTIME, STIME = 11, 12  # fields 14 and 15 of /proc/<pid>/stat, counted after the command name


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses: fields follow the last ')'.
    return (PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()


def _ppid(pid: int) -> int | None:
    try:
        return int(_stat_fields(pid)[1])
    except (OSError, IndexError, ValueError):
        return None


def children(pid: int) -> list[int]:
    """The live direct children of ``pid``."""
    return [
        int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit() and _ppid(int(entry.name)) == pid
    ]


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending += children(current)
    return tree


def status_kib(pid: int, field: str = "VmRSS") -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (0 when the process is gone)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_mib(pid: int, field: str = "VmRSS") -> float:
    """``field`` summed over ``pid`` and its descendants, in MiB."""
    return round(sum(status_kib(p, field) for p in process_tree(pid)) / KIB, 1)  # kB to MiB


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads) and its live descendants, in seconds
    (the kernel counts it in clock ticks: 10 ms each where ``SC_CLK_TCK`` is 100)."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat_fields(member)
            total += int(fields[UTIME]) + int(fields[STIME])
    return total / os.sysconf("SC_CLK_TCK")
