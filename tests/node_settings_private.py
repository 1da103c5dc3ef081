"""Node settings of a private node: reads need a token, no anonymous device tokens."""

from __future__ import annotations

from tests.node_settings import *  # noqa: F403
from tests.node_settings import SPREAD

SPREAD = {**SPREAD, "READ_REQUIRES_TOKEN": True, "DEVICE_TOKENS": False}
