"""Settings of an end-to-end replication node that reads through to its peers on a miss."""

from __future__ import annotations

from tests.node_settings_replication import *  # noqa: F403
from tests.node_settings_replication import SPREAD

SPREAD = {**SPREAD, "READ_THROUGH": True}
