"""Rollback end to end: an operator logs into a real node's admin over HTTP and rolls a subtree
back with confirmation; a websocket subscriber on that node receives the restored values as new
events, and a peer node receives them through replication."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from spread_core.testing import LiveNode

from .cluster import link, start_node, state, wait_converged, write
from .realtime import open_ws, unique_prefix

pytestmark = pytest.mark.e2e

OPERATOR, PASSWORD = "operator", "a long test password"
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def admin_session(node: LiveNode) -> httpx.Client:
    """An httpx client logged into the node's admin as a superuser (created for the test)."""
    node.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_superuser({OPERATOR!r}, '', {PASSWORD!r})",
    )
    client = httpx.Client(base_url=node.url, timeout=30, follow_redirects=False)
    login_page = client.get("/admin/login/")
    token = CSRF_FIELD.search(login_page.text).group(1)  # type: ignore[union-attr]
    logged_in = client.post(
        "/admin/login/",
        data={"username": OPERATOR, "password": PASSWORD, "csrfmiddlewaretoken": token, "next": "/admin/"},
    )
    assert logged_in.status_code == 302, logged_in.text[-500:]
    return client


async def roll_back_watching(
    node: LiveNode, admin: httpx.Client, url: str, prefix: str, iteration: int
) -> dict[str, dict[str, Any]]:
    """Preview and confirm a subtree rollback while a websocket subscriber watches the prefix;
    return the updates it receives (two topics change)."""
    async with open_ws(node, prefix) as subscriber:
        await subscriber.catch_up()
        preview = await asyncio.to_thread(admin.get, url, params={"prefix": prefix, "to": str(iteration)})
        assert "2 topic(s) will change" in preview.text
        token = CSRF_FIELD.findall(preview.text)[-1]
        form = {"prefix": prefix, "to": str(iteration), "confirm": "1", "csrfmiddlewaretoken": token}
        done = await asyncio.to_thread(admin.post, url, data=form)
        assert done.status_code == 302, done.text[-500:]
        return {str(event["path"]): event for event in await subscriber.updates(2)}


async def test_an_admin_rollback_reaches_live_subscribers_and_peers(
    make_node: Callable[..., LiveNode],
) -> None:
    a, b = start_node(make_node, "history-a"), start_node(make_node, "history-b")
    p = unique_prefix("rollback")
    await asyncio.to_thread(link, b, a, p)
    good = await asyncio.to_thread(write, a, f"{p}/config", "good")
    bad = await asyncio.to_thread(write, a, f"{p}/config", "bad")
    stray = await asyncio.to_thread(write, a, f"{p}/stray", "created after the good state")
    await asyncio.to_thread(wait_converged, [a, b], p)
    admin = await asyncio.to_thread(admin_session, a)
    url = "/admin/spread_history/topichistory/rollback/"

    try:
        restored = await roll_back_watching(a, admin, url, p, good["iteration"])
    finally:
        admin.close()
    config, removed = restored[f"{p}/config"], restored[f"{p}/stray"]
    assert (config["value"], config["from"]) == ("good", OPERATOR)
    assert config["id"] not in {good["id"], bad["id"]}  # a new event, history is kept
    assert config["iteration"] > stray["iteration"]
    assert removed["deleted"] is True

    converged = await asyncio.to_thread(wait_converged, [a, b], p)
    assert converged == {config["path"]: config["id"], removed["path"]: removed["id"]}
    assert await asyncio.to_thread(state, b, p) == converged


async def test_an_admin_replay_streams_progress_and_reaches_subscribers_and_peers(
    make_node: Callable[..., LiveNode],
) -> None:
    a, b = start_node(make_node, "replay-a"), start_node(make_node, "replay-b")
    source, target = unique_prefix("source"), unique_prefix("target")
    await asyncio.to_thread(link, b, a, source, target)
    written = [await asyncio.to_thread(write, a, f"{source}/t{i}", f"value {i}") for i in range(3)]
    admin = await asyncio.to_thread(admin_session, a)
    url = "/admin/spread_history/topichistory/replay/"
    form = {"prefix": source, "into": target, "speed": "0"}
    try:
        async with open_ws(a, target) as subscriber:
            await subscriber.catch_up()
            preview = await asyncio.to_thread(admin.get, url, params=form)
            assert "3 event(s) to replay" in preview.text
            token = CSRF_FIELD.findall(preview.text)[-1]
            done = await asyncio.to_thread(admin.post, url, data={**form, "csrfmiddlewaretoken": token})
            assert done.status_code == 200 and "Replayed 3 event(s)." in done.text
            replayed = await subscriber.updates(3)
    finally:
        admin.close()
    assert [(e["path"], e["value"], e["from"]) for e in replayed] == [
        (f"{target}/t{i}", f"value {i}", OPERATOR) for i in range(3)
    ]
    assert len({e["id"] for e in replayed} & {w["id"] for w in written}) == 0
    converged = await asyncio.to_thread(wait_converged, [a, b], target)
    assert converged == {e["path"]: e["id"] for e in replayed}
