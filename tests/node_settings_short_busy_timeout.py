"""Settings of the node of the locked-SQLite fault test: a busy timeout of one second (the demo's
is 30 s), so that a write waiting for a lock another process holds gives up within the test."""

from __future__ import annotations

from tests.node_settings import *  # noqa: F403
from tests.node_settings import DATABASES

SHORT_BUSY_TIMEOUT = 1

DATABASES = {
    "default": {
        **DATABASES["default"],
        "OPTIONS": {**DATABASES["default"]["OPTIONS"], "timeout": SHORT_BUSY_TIMEOUT},
    }
}
