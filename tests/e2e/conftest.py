"""Nodes and clients shared by the realtime end-to-end modules (each module gets its own nodes)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from spread_core.testing import LiveNode

from .realtime import HTTP_TIMEOUT


@pytest.fixture(scope="module")
def fast_node(module_nodes: Callable[..., LiveNode]) -> LiveNode:
    """Heartbeats every 0.5 s, at most SMALL_MAX_SUBSCRIPTIONS subscriptions per socket."""
    return module_nodes("fast-node", DJANGO_SETTINGS_MODULE="tests.node_settings_realtime")


@pytest.fixture(scope="module")
def private_node(module_nodes: Callable[..., LiveNode]) -> LiveNode:
    """Reads need a token."""
    return module_nodes("private-node", DJANGO_SETTINGS_MODULE="tests.node_settings_private")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
        yield http
