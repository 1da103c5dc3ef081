"""Settings of end-to-end replication nodes: quick link heartbeats, peer-table polling and
reconnects, so that tests wait fractions of a second for a link to notice a change."""

from __future__ import annotations

from tests.node_settings import *  # noqa: F403
from tests.node_settings import SPREAD

SPREAD = {
    **SPREAD,
    "REPLICATION_HEARTBEAT": 0.2,
    "PEER_POLL_INTERVAL": 0.2,
    "RECONNECT_MAX_BACKOFF": 1.0,
}
