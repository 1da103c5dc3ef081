"""Settings of end-to-end node processes with a small upload limit, so a test can send a value
over ``SPREAD["MAX_UPLOAD"]`` (and past the inline size, so a blob upload is started first)."""

from __future__ import annotations

from tests.node_settings import *  # noqa: F403
from tests.node_settings import SPREAD

SMALL_MAX_UPLOAD = 64 * 1024

SPREAD = {**SPREAD, "MAX_UPLOAD": SMALL_MAX_UPLOAD}
