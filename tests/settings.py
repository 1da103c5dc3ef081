"""Settings of the test run: the demo node's settings with a fixed key shared with node processes."""

from __future__ import annotations

import atexit
import shutil
import tempfile

from spread_project.settings import *  # noqa: F403
from spread_project.settings import SPREAD

TEST_SECRET_KEY = "spread-tests-secret-key-shared-with-node-processes-0123456789"
SECRET_KEY = TEST_SECRET_KEY
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

#: The in-process tests' blob files (their database is in memory, or a test database on PostgreSQL).
TEST_BLOB_ROOT = tempfile.mkdtemp(prefix="spread-test-blobs-")
atexit.register(shutil.rmtree, TEST_BLOB_ROOT, ignore_errors=True)
SPREAD = {
    **SPREAD,
    "BLOB_STORE": {"BACKEND": "spread_core.blobs.files.FileBlobStore", "OPTIONS": {"ROOT": TEST_BLOB_ROOT}},
}
