"""Services the tests need (PostgreSQL, Redis): whether they answer, and what a test does when one
does not. ``python -m tests.services postgres URL|redis URL`` exits 0 when the service answers."""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def postgres_answers(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=3).ping())
    except redis.RedisError:
        return False


def service_missing(reason: str) -> NoReturn:
    """Skip a test with a clear reason on a developer machine without the service; fail instead
    when SPREAD_REQUIRE_SERVICES is set (CI installs every service, so a miss there is a bug)."""
    import pytest

    if os.environ.get("SPREAD_REQUIRE_SERVICES"):
        pytest.fail(f"{reason}, and SPREAD_REQUIRE_SERVICES requires it")
    pytest.skip(f"{reason} (CI installs it)")


if __name__ == "__main__":
    service, url = sys.argv[1], sys.argv[2]
    check = {"postgres": postgres_answers, "redis": redis_answers}[service]
    sys.exit(0 if check(url) else 1)
