"""Settings of the end-to-end node of the slow-subscriber test: large inline values (so a few
hundred updates overflow every socket buffer between the node and a client that does not read),
a short SEND_TIMEOUT (so the node drops that client soon), and fast heartbeats."""

from __future__ import annotations

from tests.node_settings import *  # noqa: F403
from tests.node_settings import SPREAD

LARGE_INLINE_MAX = 64 * 1024
SHORT_SEND_TIMEOUT = 1.0

SPREAD = {
    **SPREAD,
    "INLINE_MAX": LARGE_INLINE_MAX,
    "SEND_TIMEOUT": SHORT_SEND_TIMEOUT,
    "HEARTBEAT_INTERVAL": 0.5,
}
