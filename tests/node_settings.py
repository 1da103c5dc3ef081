"""Settings of node processes started by the end-to-end tests: the demo settings, with an upload
lease short enough that a test can watch a dead upload expire. ``SPREAD_TEST_LEAN_PATH=0`` in the
environment turns the lean path off (tests that run the same cases through both request paths)."""

from __future__ import annotations

import os

from spread_project.settings import *  # noqa: F403
from spread_project.settings import SPREAD

SPREAD = {
    **SPREAD,
    "UPLOAD_IDLE_TIMEOUT": 3.0,
    "LEAN_PATH": os.environ.get("SPREAD_TEST_LEAN_PATH", "1") == "1",
}
