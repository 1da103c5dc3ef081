"""Settings of node processes started by the end-to-end tests: the demo settings, with an upload
lease short enough that a test can watch a dead upload expire."""

from __future__ import annotations

from spread_project.settings import *  # noqa: F403
from spread_project.settings import SPREAD

SPREAD = {**SPREAD, "UPLOAD_IDLE_TIMEOUT": 3.0}
