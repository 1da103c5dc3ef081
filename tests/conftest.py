"""Shared fixtures: real node processes with their own database, tokens, service guards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings

from spread_api.tokens import device_token
from spread_core.testing import LiveNode

from .settings import TEST_SECRET_KEY

REPO = Path(__file__).resolve().parent.parent
MANAGE_PY = REPO / "manage.py"
REQUIRE_SERVICES = bool(os.environ.get("SPREAD_REQUIRE_SERVICES"))


def uses_postgres() -> bool:
    return "postgresql" in settings.DATABASES["default"]["ENGINE"]


def service_missing(reason: str) -> None:
    """Skip with a clear reason on a developer machine; fail in CI (SPREAD_REQUIRE_SERVICES)."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


@pytest.fixture
def fresh_database_url(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Factory of new, empty databases of the backend this run uses (SQLite file or PostgreSQL)."""
    created: list[str] = []
    server = os.environ.get("DATABASE_URL", "")

    def make(name: str) -> str:
        if not uses_postgres():
            return f"sqlite:///{tmp_path / f'{name}.sqlite3'}"
        import psycopg

        dbname = f"spread_e2e_{name}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(server.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        created.append(dbname)
        return server.rsplit("/", 1)[0] + "/" + dbname

    yield make
    if created:
        import psycopg

        with psycopg.connect(server.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            for dbname in created:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@pytest.fixture
def make_node(tmp_path: Path, fresh_database_url: Callable[[str], str]) -> Iterator[Callable[..., LiveNode]]:
    """Start real ``spread_node`` processes (each with its own database) on loopback ports."""
    nodes: list[LiveNode] = []

    def make(name: str = "node-a", **env: str) -> LiveNode:
        node_env = {
            "DATABASE_URL": fresh_database_url(name.replace("-", "_")),
            "SECRET_KEY": TEST_SECRET_KEY,
            "SPREAD_NODE_NAME": name,
            "DJANGO_SETTINGS_MODULE": "tests.node_settings",
            "DEBUG": "0",
            **env,
        }
        node = LiveNode(MANAGE_PY, node_env, log_path=tmp_path / f"{name}.log")
        nodes.append(node)
        return node.start()

    yield make
    for node in nodes:
        node.kill()


@pytest.fixture
def node(make_node: Callable[..., LiveNode]) -> LiveNode:
    return make_node()


@pytest.fixture
def token() -> str:
    """A device token (uid ``dev-test``) that the test nodes accept."""
    return str(device_token("dev-test"))


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
