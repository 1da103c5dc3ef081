"""Settings of end-to-end nodes for the realtime tests: heartbeats every half second (so a test
can watch an idle subscription advance) and few subscriptions per websocket (so a test can reach
the limit)."""

from __future__ import annotations

from tests.node_settings import *  # noqa: F403
from tests.node_settings import SPREAD

FAST_HEARTBEAT_INTERVAL = 0.5
SMALL_MAX_SUBSCRIPTIONS = 3

SPREAD = {
    **SPREAD,
    "HEARTBEAT_INTERVAL": FAST_HEARTBEAT_INTERVAL,
    "MAX_SUBSCRIPTIONS": SMALL_MAX_SUBSCRIPTIONS,
}
