"""Settings of the node of the full-database fault test: its SQLite database cannot grow past
``FULL_DISK_PAGES`` pages (``PRAGMA max_page_count`` on every connection), and blob bytes are
stored in it (the database blob store), so a large upload meets a real "database or disk is
full" without filling a real disk."""

from __future__ import annotations

from spread_project.settings import SQLITE_OPTIONS
from tests.node_settings import *  # noqa: F403
from tests.node_settings import DATABASES, SPREAD

SQLITE_PAGE_SIZE = 4096
#: 4 MiB: a freshly migrated database takes about a quarter of a MiB.
FULL_DISK_PAGES = 1024
FULL_DISK_BYTES = FULL_DISK_PAGES * SQLITE_PAGE_SIZE

DATABASES = {
    "default": {
        **DATABASES["default"],
        "OPTIONS": {
            **DATABASES["default"]["OPTIONS"],
            "init_command": f"{SQLITE_OPTIONS['init_command']} PRAGMA max_page_count={FULL_DISK_PAGES};",
        },
    }
}

SPREAD = {**SPREAD, "BLOB_STORE": {"BACKEND": "spread_core.blobs.database.DatabaseBlobStore"}}
