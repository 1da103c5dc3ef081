"""Shared fixtures: real node processes with their own database, and tokens they accept."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from spread_api.tokens import device_token
from spread_core.testing import LiveNode

from .blob_stores import BLOB_STORES, SMALL, empty_test_blob_root, spread_with
from .nodes import Databases, Nodes


@pytest.fixture(autouse=True)
def fresh_blob_root() -> None:
    """Each test starts without the blob files of earlier tests."""
    empty_test_blob_root()


@pytest.fixture(params=sorted(BLOB_STORES))
def small_blobs(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test runs once with each blob store, values over 16 bytes stored in pieces of 64;
    yields the store's name."""
    from django.test import override_settings

    with override_settings(SPREAD=spread_with(request.param, **SMALL)):
        yield request.param


@pytest.fixture(scope="session", autouse=True)
def stop_group_commit(django_db_setup: None) -> Iterator[None]:
    """Stop the group-commit writer thread and close the connections the kept-connection and
    delivery threads hold, before the test database is dropped at the end of the session."""
    yield
    from spread_core.batching import batcher
    from spread_core.threads import delivery_threads, kept_threads

    batcher.stop()
    kept_threads.close_connections()
    delivery_threads.close_connections()


@pytest.fixture
def fresh_database_url(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Factory of new, empty databases of the backend this run uses (SQLite file or PostgreSQL)."""
    databases = Databases(tmp_path)
    yield databases.new
    databases.drop_all()


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Callable[..., LiveNode]]:
    """Start real ``spread_node`` processes (each with its own database) on loopback ports."""
    nodes = Nodes(tmp_path)
    yield nodes.start
    nodes.close()


@pytest.fixture(scope="module")
def module_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LiveNode]]:
    """Like ``make_node``, for nodes that every test of a module shares (stopped after them)."""
    nodes = Nodes(tmp_path_factory.mktemp("nodes"))
    yield nodes.start
    nodes.close()


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
