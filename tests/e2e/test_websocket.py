"""The websocket API (``/ws/<path>``) through real node processes.

One node with default settings serves most tests: its heartbeat comes every 15 s, longer than any
wait here, so every live update these tests receive was delivered by the write's doorbell. A node
with half-second heartbeats and a limit of three subscriptions per socket serves the heartbeat and
limit tests, and a node with ``READ_REQUIRES_TOKEN`` the private-node tests. Tests on a shared
node write under a top-level prefix of their own.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from spread_core.testing import LiveNode
from tests.node_settings_realtime import SMALL_MAX_SUBSCRIPTIONS

from .realtime import (
    BASE_DATE,
    DEADLINE,
    View,
    current_ids,
    delete,
    open_ws,
    post,
    unique_prefix,
    writer_token,
)

pytestmark = pytest.mark.e2e

INLINE_MAX = 4096
WS_MAX_FRAME = 1024 * 1024
TEXT_UTF8 = "text/plain; charset=utf-8"
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_MESSAGE_TOO_BIG = 1009


@pytest.fixture(scope="module")
def ws_node(module_nodes: Callable[..., LiveNode]) -> LiveNode:
    return module_nodes("ws-node")


@pytest.fixture(scope="module")
def token() -> str:
    return writer_token("ws-writer")


def paths_of(events: list[dict[str, Any]]) -> list[str]:
    return [event["path"] for event in events]


def iterations_of(events: list[dict[str, Any]]) -> list[int]:
    return [event["iteration"] for event in events]


# ----------------------------------------------------------------------------------------------
# Catch-up, synced, live


async def test_catch_up_sends_current_values_under_the_prefix_in_order_then_synced_then_live(
    ws_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    p = unique_prefix("catchup")
    a1 = await post(client, ws_node, f"{p}/a", "a1", token=token)
    b1 = await post(client, ws_node, f"{p}/b", "b1", token=token)
    later = time.time_ns() // 1000 + 60_000_000  # after a1 (dated now), within MAX_FUTURE_SKEW
    a2 = await post(client, ws_node, f"{p}/a", "a2", token=token, date=later)
    deep = await post(client, ws_node, f"{p}/sub/deep", "deep", token=token)
    ab = await post(client, ws_node, f"{p}/ab", "ab", token=token)
    sibling = await post(client, ws_node, f"{p}-sibling/x", "not under the prefix", token=token)
    head = sibling["iteration"]

    async with open_ws(ws_node, p) as ws:
        events, synced = await ws.catch_up()
        # The current event of each topic once, in increasing iteration: a1 was replaced by a2.
        assert paths_of(events) == [f"{p}/b", f"{p}/a", f"{p}/sub/deep", f"{p}/ab"]
        assert [e["id"] for e in events] == [b1["id"], a2["id"], deep["id"], ab["id"]]
        assert iterations_of(events) == [b1["iteration"], a2["iteration"], deep["iteration"], ab["iteration"]]
        assert [e["value"] for e in events] == ["b1", "a2", "deep", "ab"]
        assert events[1] == {
            "id": a2["id"],
            "path": f"{p}/a",
            "iteration": a2["iteration"],
            "from": "ws-writer",
            "date": later,
            "content_type": "text/plain",
            "size": 2,
            "complete": True,
            "deleted": False,
            "value": "a2",
        }
        # Nothing under the prefix is left: the cursor settles at the node's head.
        assert synced == {"type": "synced", "iteration": head}

        live_b = await post(client, ws_node, f"{p}/b", "b2", token=token)
        await post(client, ws_node, f"{p}-sibling/y", "not under the prefix", token=token)
        live_c = await post(client, ws_node, f"{p}/c", "c1", token=token)
        live = await ws.updates(2)
        assert [(e["id"], e["iteration"], e["value"]) for e in live] == [
            (live_b["id"], live_b["iteration"], "b2"),
            (live_c["id"], live_c["iteration"], "c1"),
        ]

    # since=N: only topics whose current value changed after N.
    async with open_ws(ws_node, p, since=a1["iteration"]) as ws:
        events, synced = await ws.catch_up()
        assert paths_of(events) == [f"{p}/a", f"{p}/sub/deep", f"{p}/ab", f"{p}/b", f"{p}/c"]
    async with open_ws(ws_node, p, since=ab["iteration"]) as ws:
        events, _ = await ws.catch_up()
        assert paths_of(events) == [f"{p}/b", f"{p}/c"]

    # A topic's path covers the topic and its descendants, not paths that merely start alike.
    async with open_ws(ws_node, f"{p}/a") as ws:
        events, _ = await ws.catch_up()
        assert paths_of(events) == [f"{p}/a"]
        await post(client, ws_node, f"{p}/ab", "ab2", token=token)
        child = await post(client, ws_node, f"{p}/a/child", "child", token=token)
        assert (await ws.update())["id"] == child["id"]


async def test_root_subscription_covers_every_topic(
    ws_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    first, second = unique_prefix("root-one"), unique_prefix("root-two")
    one = await post(client, ws_node, f"{first}/x", "1", token=token)
    two = await post(client, ws_node, f"{second}/deep/er/y", "2", token=token)
    async with open_ws(ws_node, "") as ws:
        events, synced = await ws.catch_up()
        assert {one["id"], two["id"]} <= {e["id"] for e in events}
        assert iterations_of(events) == sorted(set(iterations_of(events)))
        assert synced["iteration"] == two["iteration"]
        live = [
            await post(client, ws_node, f"{second}/z", "3", token=token),
            await post(client, ws_node, f"{first}/x", "4", token=token),
            await post(client, ws_node, unique_prefix("root-three"), "top-level topic", token=token),
        ]
        assert [e["id"] for e in await ws.updates(3)] == [r["id"] for r in live]


async def test_tombstones_are_delivered_with_deleted_true(
    ws_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    p = unique_prefix("tomb")
    await post(client, ws_node, f"{p}/t", "alive", token=token)
    async with open_ws(ws_node, p) as ws:
        events, _ = await ws.catch_up()
        assert [e["value"] for e in events] == ["alive"]
        tombstone = await delete(client, ws_node, f"{p}/t", token=token)
        assert tombstone["status"] == "ok"
        event = await ws.update()
        assert event["id"] == tombstone["id"]
        assert event["iteration"] == tombstone["iteration"]
        assert event["deleted"] is True
        assert "value" not in event and "value_b64" not in event
    async with open_ws(ws_node, p) as ws:
        events, _ = await ws.catch_up()
        assert [(e["id"], e["deleted"]) for e in events] == [(tombstone["id"], True)]


async def test_too_late_writes_are_not_delivered_live_but_history_replays_every_log_entry(
    ws_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    p = unique_prefix("late")
    before = await post(client, ws_node, f"{p}/before", "0", token=token)
    async with open_ws(ws_node, p, since=before["iteration"]) as ws:
        assert (await ws.catch_up())[0] == []
        newer = await post(client, ws_node, f"{p}/t", "newer", token=token, date=BASE_DATE + 10)
        older = await post(client, ws_node, f"{p}/t", "older", token=token, date=BASE_DATE)
        assert older["status"] == "too_late"
        again = await post(client, ws_node, f"{p}/t", "again", token=token, date=BASE_DATE + 20)
        marker = await post(client, ws_node, f"{p}/marker", "m", token=token)
        # Updates arrive in iteration order, so the too_late one would have come before these.
        live = await ws.updates(3)
        assert [e["id"] for e in live] == [newer["id"], again["id"], marker["id"]]

    async with open_ws(ws_node, p, since=before["iteration"], history=1) as ws:
        events, synced = await ws.catch_up()
        writes = [newer, older, again, marker]
        assert [(e["id"], e["iteration"]) for e in events] == [(w["id"], w["iteration"]) for w in writes]
        assert [e["value"] for e in events] == ["newer", "older", "again", "m"]
        assert synced["iteration"] == marker["iteration"]

    async with open_ws(ws_node, p, history=1) as ws:
        events, _ = await ws.catch_up()
        assert [e["id"] for e in events] == [w["id"] for w in [before, *writes]]


async def test_a_history_subscription_receives_too_late_writes_live(
    ws_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    """docs/realtime.md: with history=1 "the catch-up (and the live stream) is every entry of the
    node's log". A too_late write is in the log, so it must reach a live history subscriber as
    promptly as any write (not only at the next heartbeat, 15 s later)."""
    p = unique_prefix("late-live")
    await post(client, ws_node, f"{p}/t", "newer", token=token, date=BASE_DATE + 10)
    async with open_ws(ws_node, p, history=1) as ws:
        await ws.catch_up()
        late = await post(client, ws_node, f"{p}/t", "older", token=token, date=BASE_DATE)
        assert late["status"] == "too_late"
        event = await ws.update()
        assert (event["id"], event["iteration"], event["value"]) == (late["id"], late["iteration"], "older")


async def test_reconnecting_with_the_last_iteration_misses_nothing_and_repeats_nothing(
    ws_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    p = unique_prefix("resume")
    paths = [f"{p}/{name}" for name in ("a", "b", "c", "d")]
    for path in paths[:2]:
        await post(client, ws_node, path, "start", token=token)
    view = View()
    async with open_ws(ws_node, p) as ws:
        events, synced = await ws.catch_up()
        for event in events:
            view.apply(event)
        for i in range(4):
            await post(client, ws_node, paths[i % 3], f"live {i}", token=token)
        for event in await ws.updates(2):  # leave with two updates unread
            view.apply(event)
    # While disconnected: change a topic seen, a topic unseen, delete one, add one.
    await post(client, ws_node, paths[0], "offline", token=token)
    await delete(client, ws_node, paths[1], token=token)
    await post(client, ws_node, paths[3], "new", token=token)
    async with open_ws(ws_node, p, since=view.last_update) as ws:
        events, synced = await ws.catch_up()
        assert events, "the updates written while disconnected must be caught up"
        for event in events:
            view.apply(event)  # asserts that every iteration is past the ones already received
        view.mark(synced["iteration"], "synced")
        assert "reset" not in synced
    assert view.ids == await current_ids(client, ws_node, paths)
    assert paths[1] not in view.ids


async def test_a_cursor_ahead_of_the_node_gets_a_full_catch_up_marked_reset(
    ws_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    p = unique_prefix("reset")
    reports = [await post(client, ws_node, f"{p}/{i}", str(i), token=token) for i in range(3)]
    head = reports[-1]["iteration"]
    async with open_ws(ws_node, p, since=head + 1000) as ws:
        events, synced = await ws.catch_up()
        assert [e["id"] for e in events] == [r["id"] for r in reports]
        assert synced == {"type": "synced", "iteration": head, "reset": True}
        # The same through a subscribe frame, and a cursor equal to the head is no reset.
        await ws.send({"type": "subscribe", "path": f"{p}/1", "since": head + 1})
        events, synced = await ws.catch_up()
        assert [e["id"] for e in events] == [reports[1]["id"]]
        assert synced["reset"] is True
        await ws.send({"type": "subscribe", "path": f"{p}/2", "since": head})
        assert await ws.catch_up() == ([], {"type": "synced", "iteration": head})


# ----------------------------------------------------------------------------------------------
# Several subscriptions, posts over the socket


async def test_one_socket_holds_several_subscriptions_and_unsubscribe_stops_delivery(
    ws_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    first, second = unique_prefix("multi-a"), unique_prefix("multi-b")
    existing = await post(client, ws_node, f"{second}/old", "old", token=token)
    async with open_ws(ws_node, first) as ws:
        assert (await ws.catch_up())[0] == []
        await ws.send({"type": "subscribe", "path": [second]})  # a list of segments works too
        events, _ = await ws.catch_up()
        assert [e["id"] for e in events] == [existing["id"]]

        in_first = await post(client, ws_node, f"{first}/x", "x", token=token)
        in_second = await post(client, ws_node, f"{second}/y", "y", token=token)
        received = {e["id"] for e in await ws.updates(2)}
        assert received == {in_first["id"], in_second["id"]}

        await ws.send({"type": "unsubscribe", "path": second})
        await ws.ping()  # the unsubscribe has been handled
        await post(client, ws_node, f"{second}/z", "not delivered", token=token)
        after = await post(client, ws_node, f"{first}/w", "w", token=token)
        # The doorbell of the earlier write would have been handled first.
        assert (await ws.update())["id"] == after["id"]
        await ws.ping()

        await ws.send({"type": "unsubscribe", "path": second, "ref": 7})
        assert (await ws.error("not_subscribed"))["ref"] == 7


async def test_post_frames_are_acknowledged_with_the_report_and_delivered(
    ws_node: LiveNode, token: str
) -> None:
    p = unique_prefix("post")
    async with open_ws(ws_node, p, token=token) as ws:
        await ws.catch_up()
        await ws.send({"type": "post", "path": f"{p}/greeting", "value": "héllo", "ref": "r-1"})
        frames = [await ws.next(), await ws.next()]
        ack = next(f for f in frames if f["type"] == "ack")
        update = next(f for f in frames if f["type"] == "update")["event"]
        assert ack["ref"] == "r-1"
        report = ack["report"]
        assert report["status"] == "ok"
        assert report["path"] == f"{p}/greeting"
        # This socket's subscription is counted at its prefix; nobody watches the others.
        assert {e["path"]: e["subscribers"] for e in report["propagation"]}[p] == 1
        assert {e["path"]: e["subscribers"] for e in report["propagation"]}[f"{p}/greeting"] == 0
        assert update["id"] == report["id"]
        assert update["iteration"] == report["iteration"]
        assert update["from"] == "ws-writer"
        assert update["content_type"] == TEXT_UTF8
        assert update["value"] == "héllo"
        assert update["size"] == len("héllo".encode())

        raw = bytes([0xFF, 0x00, 0xFE, 0x80])
        await ws.send(
            {"type": "post", "path": [p, "bin"], "value_b64": base64.b64encode(raw).decode(), "ref": 2}
        )
        frames = [await ws.next(), await ws.next()]
        ack = next(f for f in frames if f["type"] == "ack")
        update = next(f for f in frames if f["type"] == "update")["event"]
        assert ack["ref"] == 2 and ack["report"]["id"] == update["id"]
        assert update["value_b64"] == base64.b64encode(raw).decode()
        assert "value" not in update
        assert update["content_type"] == "application/octet-stream"
        assert update["size"] == len(raw)

        # Bytes that are valid UTF-8 are shown as text; content_type is honoured.
        await ws.send(
            {
                "type": "post",
                "path": f"{p}/json",
                "value_b64": base64.b64encode(b'{"a": 1}').decode(),
                "content_type": "application/json",
            }
        )
        frames = [await ws.next(), await ws.next()]
        update = next(f for f in frames if f["type"] == "update")["event"]
        assert update["value"] == '{"a": 1}' and "value_b64" not in update
        assert update["content_type"] == "application/json"


async def test_a_blob_upload_is_delivered_incomplete_then_complete_at_a_later_iteration(
    ws_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    p = unique_prefix("blob")
    data = bytes(range(256)) * ((3 * INLINE_MAX) // 256)
    first_seen = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield data[: INLINE_MAX + 100]  # past INLINE_MAX: the upload is stored as a blob now
        await asyncio.wait_for(first_seen.wait(), DEADLINE)
        yield data[INLINE_MAX + 100 :]

    async with open_ws(ws_node, p) as ws:
        await ws.catch_up()
        upload = asyncio.create_task(
            client.post(
                f"{ws_node.url}/raw/{p}/file", content=body(), headers={"Authorization": f"Bearer {token}"}
            )
        )
        try:
            started = await ws.update()
        finally:
            first_seen.set()
        response = await upload
        assert response.status_code == 200, response.text
        report = response.json()
        done = await ws.update()

    assert started["id"] == done["id"] == report["id"]
    assert started["iteration"] == report["iteration"]
    assert started["complete"] is False
    assert done["complete"] is True
    assert done["iteration"] > started["iteration"]
    assert done["size"] == len(data)
    for event in (started, done):
        assert "value" not in event and "value_b64" not in event
    assert (await client.get(f"{ws_node.url}/raw/{p}/file")).content == data
    # A later catch-up has the completed event at the iteration of its completion.
    async with open_ws(ws_node, p) as ws:
        events, _ = await ws.catch_up()
        assert [(e["id"], e["iteration"], e["complete"]) for e in events] == [
            (done["id"], done["iteration"], True)
        ]


# ----------------------------------------------------------------------------------------------
# Bad input


async def test_garbage_frames_get_error_frames_and_the_connection_stays_usable(
    ws_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    p = unique_prefix("garbage")
    garbage: list[tuple[Any, str]] = [
        ("this is not json", "bad_json"),
        ("{", "bad_json"),
        ("[1, 2, 3]", "bad_frame"),
        ('"just a string"', "bad_frame"),
        ("null", "bad_frame"),
        ({"no": "type"}, "bad_frame"),
        ({"type": 42}, "bad_frame"),
        ({"type": "launch-missiles"}, "unknown_type"),
        (b"\x00\x01binary", "bad_frame"),
        ({"type": "subscribe", "path": "a//b"}, "invalid_path"),
        ({"type": "subscribe", "path": "a/../b"}, "invalid_path"),
        ({"type": "subscribe", "path": 12}, "bad_frame"),
        ({"type": "subscribe", "path": p, "since": -1}, "invalid_since"),
        ({"type": "subscribe", "path": p, "since": "abc"}, "invalid_since"),
        ({"type": "subscribe", "path": p, "since": 1.5}, "invalid_since"),
        ({"type": "subscribe", "path": p, "history": "2"}, "invalid_history"),
        ({"type": "unsubscribe", "path": f"{p}/never"}, "not_subscribed"),
        ({"type": "post", "path": f"{p}/x", "value": "anonymous"}, "not_authenticated"),
        ({"type": "auth"}, "bad_frame"),
        ({"type": "auth", "token": "not-a-jwt"}, "token_not_valid"),
    ]
    async with open_ws(ws_node, p) as ws:
        await ws.catch_up()
        for frame, code in garbage:
            await ws.send(frame)
            await ws.error(code)
            await ws.ping()
        # A frame's ref is echoed on its error.
        await ws.send({"type": "nope", "ref": "mine"})
        assert (await ws.error("unknown_type"))["ref"] == "mine"
        # Posts with a token but a bad body.
        await ws.send({"type": "auth", "token": token})
        for frame in (
            {"type": "post", "path": f"{p}/x", "ref": 1},
            {"type": "post", "path": f"{p}/x", "value": 5, "ref": 1},
            {"type": "post", "path": f"{p}/x", "value_b64": "***", "ref": 1},
            {"type": "post", "path": f"{p}/x", "value": "v", "content_type": 3, "ref": 1},
        ):
            await ws.send(frame)
            assert (await ws.error("bad_frame"))["ref"] == 1
        await ws.send({"type": "post", "path": "", "value": "the root is not a topic", "ref": 2})
        assert (await ws.error("invalid_path"))["ref"] == 2
        # Still subscribed and delivering.
        report = await post(client, ws_node, f"{p}/after", "still here", token=token)
        assert (await ws.update())["id"] == report["id"]


async def test_bad_url_parameters_close_the_socket_with_4400_after_an_error_frame(ws_node: LiveNode) -> None:
    for path, params, code in (
        ("x", {"since": "abc"}, "invalid_since"),
        ("x", {"since": "-3"}, "invalid_since"),
        ("x", {"history": "maybe"}, "invalid_history"),
        ("a//b", {}, "invalid_path"),
    ):
        async with open_ws(ws_node, path, **params) as ws:
            await ws.error(code)
            assert await ws.closed() == CLOSE_BAD_REQUEST


async def test_too_many_subscriptions_are_refused_with_an_error(fast_node: LiveNode) -> None:
    p = unique_prefix("limit")
    async with open_ws(fast_node, f"{p}/0") as ws:
        await ws.catch_up()
        for i in range(1, SMALL_MAX_SUBSCRIPTIONS):
            await ws.send({"type": "subscribe", "path": f"{p}/{i}"})
            await ws.catch_up()
        await ws.send({"type": "subscribe", "path": f"{p}/over", "ref": "x"})
        assert (await ws.error("too_many_subscriptions"))["ref"] == "x"
        # Restarting an existing subscription is not a new one; freeing a slot allows another.
        await ws.send({"type": "subscribe", "path": f"{p}/1", "since": 0})
        await ws.catch_up()
        await ws.send({"type": "unsubscribe", "path": f"{p}/1"})
        await ws.send({"type": "subscribe", "path": f"{p}/over"})
        await ws.catch_up()
        await ws.ping()


async def test_a_frame_over_the_limit_closes_the_connection_and_the_node_keeps_serving(
    ws_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    p = unique_prefix("big-frame")
    async with open_ws(ws_node, p) as ws:
        await ws.catch_up()
        with pytest.raises(ConnectionClosed):
            await ws.send({"type": "post", "path": f"{p}/big", "value": "x" * WS_MAX_FRAME})
            await ws.next()
        assert ws.connection.close_code == CLOSE_MESSAGE_TOO_BIG
    assert (await client.head(f"{ws_node.url}/raw/{p}/big")).status_code == 404
    async with open_ws(ws_node, p, token=token) as ws:
        await ws.catch_up()
        await ws.send({"type": "post", "path": f"{p}/small", "value": "fits", "ref": 1})
        frames = {(await ws.next())["type"], (await ws.next())["type"]}
        assert frames == {"ack", "update"}


# ----------------------------------------------------------------------------------------------
# Heartbeats


async def test_heartbeats_carry_an_iteration_that_advances_to_the_head_while_idle(
    fast_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    quiet, busy = unique_prefix("hb-quiet"), unique_prefix("hb-busy")
    async with open_ws(fast_node, quiet) as ws:
        _, synced = await ws.catch_up()
        first = await ws.frame()
        assert first["type"] == "heartbeat"
        assert first["iteration"] == synced["iteration"]
        reports = [await post(client, fast_node, f"{busy}/{i}", str(i), token=token) for i in range(5)]
        head = reports[-1]["iteration"]
        seen = [first["iteration"]]
        while seen[-1] != head:
            frame = await ws.frame()
            assert frame["type"] == "heartbeat", f"nothing under {quiet} changed, yet: {frame}"
            seen.append(frame["iteration"])
        assert seen == sorted(seen)
        assert seen[-1] == head


# ----------------------------------------------------------------------------------------------
# Authentication and access


async def test_a_token_in_the_url_or_an_auth_frame_authenticates_posts(ws_node: LiveNode, token: str) -> None:
    p = unique_prefix("auth")
    async with open_ws(ws_node, p, token=token) as ws:
        await ws.catch_up()
        await ws.send({"type": "post", "path": f"{p}/url", "value": "1", "ref": "u"})
        assert {(await ws.next())["type"], (await ws.next())["type"]} == {"ack", "update"}
    async with open_ws(ws_node, p, authorization=f"Bearer {token}") as ws:
        await ws.catch_up()
        await ws.send({"type": "post", "path": f"{p}/header-form", "value": "1", "ref": "h"})
        assert {(await ws.next())["type"], (await ws.next())["type"]} == {"ack", "update"}
    async with open_ws(ws_node, p) as ws:
        await ws.catch_up()
        await ws.send({"type": "post", "path": f"{p}/frame", "value": "1", "ref": "a"})
        assert (await ws.error("not_authenticated"))["ref"] == "a"
        await ws.send({"type": "auth", "token": token})
        await ws.send({"type": "post", "path": f"{p}/frame", "value": "2", "ref": "b"})
        frames = [await ws.next(), await ws.next()]
        ack = next(f for f in frames if f["type"] == "ack")
        assert ack["ref"] == "b" and ack["report"]["status"] == "ok"


async def test_an_invalid_token_in_the_url_closes_the_socket_with_4401(ws_node: LiveNode) -> None:
    async with open_ws(ws_node, "x", token="not-a-jwt") as ws:
        await ws.error("token_not_valid")
        assert await ws.closed() == CLOSE_UNAUTHORIZED


async def test_token_claims_forbid_prefixes_with_error_frames_and_the_connection_stays(
    ws_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    p = unique_prefix("claims")
    await post(client, ws_node, f"{p}/open/x", "readable", token=token)
    await post(client, ws_node, f"{p}/secret/x", "hidden", token=token)
    scoped = writer_token("scoped", read=[f"{p}/open"], write=[f"{p}/open/mine"])
    async with open_ws(ws_node, f"{p}/secret", token=scoped) as ws:
        await ws.error("forbidden")
        await ws.ping()
        for path in ("", p, f"{p}/secret/x"):
            await ws.send({"type": "subscribe", "path": path, "ref": path})
            assert (await ws.error("forbidden"))["ref"] == path
        await ws.send({"type": "subscribe", "path": f"{p}/open"})
        events, _ = await ws.catch_up()
        assert [e["value"] for e in events] == ["readable"]

        await ws.send({"type": "post", "path": f"{p}/open/other", "value": "no", "ref": "w1"})
        assert (await ws.error("forbidden"))["ref"] == "w1"
        await ws.send({"type": "post", "path": f"{p}/open/mine/v", "value": "yes", "ref": "w2"})
        frames = [await ws.next(), await ws.next()]
        assert {f["type"] for f in frames} == {"ack", "update"}
        # Nothing from the forbidden prefix was ever sent.
        secret = await post(client, ws_node, f"{p}/secret/x", "still hidden", token=token)
        visible = await post(client, ws_node, f"{p}/open/y", "seen", token=token)
        event = await ws.update()
        assert event["id"] == visible["id"] != secret["id"]


async def test_a_private_node_needs_an_auth_frame_before_the_url_subscription_starts(
    private_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    p = unique_prefix("private")
    stored = await post(client, private_node, f"{p}/x", "private value", token=token)
    async with open_ws(private_node, p) as ws:
        await ws.error("not_authenticated")
        await ws.send({"type": "subscribe", "path": p})
        await ws.error("not_authenticated")
        await ws.ping()
        await ws.send({"type": "auth", "token": "not-a-jwt"})
        await ws.error("token_not_valid")
        await ws.send({"type": "auth", "token": token})
        events, synced = await ws.catch_up()
        assert [e["id"] for e in events] == [stored["id"]]
        assert synced["iteration"] == stored["iteration"]
        live = await post(client, private_node, f"{p}/y", "live", token=token)
        assert (await ws.update())["id"] == live["id"]
    async with open_ws(private_node, p, token=token) as ws:
        events, _ = await ws.catch_up()
        assert len(events) == 2
    # A token that may not read the pending path gets forbidden, not the catch-up.
    async with open_ws(private_node, p) as ws:
        await ws.error("not_authenticated")
        await ws.send({"type": "auth", "token": writer_token("elsewhere", read=["other"])})
        await ws.error("forbidden")
        await ws.ping()


# ----------------------------------------------------------------------------------------------
# Batched frames (?batch=1)


async def batched_catch_up(ws: Any) -> tuple[list[list[dict[str, Any]]], dict[str, Any]]:
    """The ``updates`` frames' events before the next ``synced``, frame by frame, and that frame."""
    frames: list[list[dict[str, Any]]] = []
    while True:
        frame = await ws.next()
        if frame["type"] == "synced":
            return frames, frame
        assert frame["type"] == "updates", f"a batched subscription sent {frame}"
        assert frame["events"], "an updates frame carries at least one event"
        frames.append(frame["events"])


async def test_batched_frames_carry_the_same_events_in_the_same_order_and_split_by_size(
    ws_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    p = unique_prefix("batch")
    for index in range(80):  # inline (under INLINE_MAX); 80 of them are over one frame's 256 KiB
        await post(client, ws_node, f"{p}/t{index:02d}", f"{index:02d}" + "v" * 3998, token=token)
    await delete(client, ws_node, f"{p}/t03", token=token)

    async with open_ws(ws_node, p) as ws:
        one_each, synced_one = await ws.catch_up()
    async with open_ws(ws_node, p, batch=1) as ws:
        frames, synced = await batched_catch_up(ws)
        # Same events, same order, same cursor; several frames, none over the size bound.
        assert [event for frame in frames for event in frame] == one_each
        assert synced == synced_one
        assert 2 <= len(frames) < len(one_each)
        # Live events come batched too.
        live = await post(client, ws_node, f"{p}/t00", "live", token=token)
        frame = await ws.expect("updates")
        assert [(e["id"], e["iteration"], e["value"]) for e in frame["events"]] == [
            (live["id"], live["iteration"], "live")
        ]

    # history=1 batched: the log entries in order, the same as one per frame.
    async with open_ws(ws_node, p, history=1) as ws:
        log_each, _ = await ws.catch_up()
    async with open_ws(ws_node, p, history=1, batch=1) as ws:
        frames, _ = await batched_catch_up(ws)
        assert [event for frame in frames for event in frame] == log_each
    assert len(log_each) == 82


async def test_a_bad_batch_parameter_closes_the_socket_with_4400_after_an_error_frame(
    ws_node: LiveNode,
) -> None:
    async with open_ws(ws_node, "", batch="yes") as ws:
        await ws.error("invalid_batch")
        assert await ws.closed() == CLOSE_BAD_REQUEST


async def test_compression_is_negotiated_only_when_the_setting_turns_it_on(
    ws_node: LiveNode, module_nodes: Callable[..., LiveNode], client: httpx.AsyncClient, token: str
) -> None:
    # The websockets client offers permessage-deflate; WS_PER_MESSAGE_DEFLATE is off by default.
    async with open_ws(ws_node, "") as ws:
        assert "permessage-deflate" in ws.connection.request.headers.get("Sec-WebSocket-Extensions", "")
        assert ws.connection.response.headers.get("Sec-WebSocket-Extensions") is None
    compressing = module_nodes("ws-deflate", SPREAD_OPTIONS='{"WS_PER_MESSAGE_DEFLATE": true}')
    written = await post(client, compressing, "z/a", "x" * 3000, token=token)
    async with open_ws(compressing, "z", batch=1) as ws:
        assert "permessage-deflate" in ws.connection.response.headers.get("Sec-WebSocket-Extensions", "")
        frame = await ws.expect("updates")
        assert [(e["id"], e["value"]) for e in frame["events"]] == [(written["id"], "x" * 3000)]
