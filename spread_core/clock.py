"""Wall-clock time in integer microseconds since the epoch, the unit of event dates."""

from __future__ import annotations

import time

MICROSECONDS = 1_000_000


def now_us() -> int:
    return time.time_ns() // 1000
