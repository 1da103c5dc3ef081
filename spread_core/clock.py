"""Wall-clock time in integer microseconds since the epoch, the unit of event dates."""

from __future__ import annotations

import time

from .conf import spread_settings
from .exceptions import DateTooFarAhead

MICROSECONDS = 1_000_000


def now_us() -> int:
    return time.time_ns() // 1000


def check_client_date(date: int) -> int:
    """``date`` (µs), given by a client for its write (``X-Spread-Etag``), if it is at most
    ``MAX_FUTURE_SKEW`` seconds ahead of this node's clock. A date far in the future would win
    every later write to the topic for as long as it stays ahead (last writer wins), so it is
    refused. Server-side code (the Python API, rollbacks) and replicated events (dated by their
    origin node) are trusted and not checked."""
    skew = spread_settings.MAX_FUTURE_SKEW
    if skew is not None and date > now_us() + int(skew * MICROSECONDS):
        raise DateTooFarAhead(
            f"The date {date} is more than {skew:g} s ahead of this node's clock (MAX_FUTURE_SKEW)."
        )
    return date
