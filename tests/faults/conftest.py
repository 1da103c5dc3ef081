"""Fixtures of the fault-injection tests: real node processes that a test kills, starves of their
database, or fills up; generic, so that every module of tests/faults can use them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nodes import Nodes, uses_postgres


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    """``nodes.start(name, **env)`` starts a ``spread_node`` process with a new database of the
    run's backend (``env`` overrides, e.g. ``DATABASE_URL``); every node is killed and its
    database dropped after the test. A killed node restarts on its port with ``node.start()``."""
    started = Nodes(tmp_path)
    yield started
    started.close()


@pytest.fixture
def sqlite_pass() -> None:
    """Skip the test in the PostgreSQL pass: it provokes a fault of SQLite itself."""
    if uses_postgres():
        pytest.skip("a fault of SQLite itself: runs in the SQLite pass only")
