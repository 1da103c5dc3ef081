"""Node processes for the tests: each with a new, empty database of the run's backend."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from django.conf import settings

from spread_core.testing import LiveNode

from .settings import TEST_SECRET_KEY

REPO = Path(__file__).resolve().parent.parent
MANAGE_PY = REPO / "manage.py"


def uses_postgres() -> bool:
    return "postgresql" in settings.DATABASES["default"]["ENGINE"]


class Databases:
    """New, empty databases: SQLite files under ``directory``, or PostgreSQL databases on the
    run's server (``DATABASE_URL``), dropped by ``drop_all``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.server = os.environ.get("DATABASE_URL", "").rsplit("/", 1)[0]
        self.created: list[str] = []

    def new(self, name: str) -> str:
        if not uses_postgres():
            return f"sqlite:///{self.directory / f'{name}.sqlite3'}"
        import psycopg

        dbname = f"spread_e2e_{name}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(f"{self.server}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        self.created.append(dbname)
        return f"{self.server}/{dbname}"

    def drop_all(self) -> None:
        if not self.created:
            return
        import psycopg

        with psycopg.connect(f"{self.server}/postgres", autocommit=True) as conn:
            for dbname in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        self.created.clear()


class Nodes:
    """Starts ``spread_node`` processes on loopback ports, each with its own database and log."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.databases = Databases(directory)
        self.started: list[LiveNode] = []

    def start(self, name: str = "node-a", **env: str) -> LiveNode:
        node_env = {
            "DATABASE_URL": self.databases.new(name.replace("-", "_")),
            "SECRET_KEY": TEST_SECRET_KEY,
            "SPREAD_NODE_NAME": name,
            "SPREAD_BLOB_ROOT": str(self.directory / f"{name}-blobs"),
            "DJANGO_SETTINGS_MODULE": "tests.node_settings",
            "DEBUG": "0",
            **env,
        }
        node = LiveNode(MANAGE_PY, node_env, log_path=self.directory / f"{name}.log")
        self.started.append(node)
        return node.start()

    def close(self) -> None:
        for node in self.started:
            node.kill()
        self.databases.drop_all()
