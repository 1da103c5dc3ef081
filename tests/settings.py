"""Settings of the test run: the demo node's settings with a fixed key shared with node processes."""

from __future__ import annotations

from spread_project.settings import *  # noqa: F403

TEST_SECRET_KEY = "spread-tests-secret-key-shared-with-node-processes-0123456789"
SECRET_KEY = TEST_SECRET_KEY
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
