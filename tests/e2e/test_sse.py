"""The SSE API (``GET /sse/<path>``) through real node processes.

A node with default settings (heartbeats every 15 s, longer than any wait here, so live updates
come from doorbells) serves most tests; a node with half-second heartbeats the heartbeat test, and
a node with ``READ_REQUIRES_TOKEN`` the authentication tests. Tests write under prefixes of their
own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from spread_core.testing import LiveNode

from .realtime import (
    BASE_DATE,
    View,
    current_ids,
    delete,
    open_sse,
    post,
    sse_url,
    unique_prefix,
    writer_token,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sse_node(module_nodes: Callable[..., LiveNode]) -> LiveNode:
    return module_nodes("sse-node")


@pytest.fixture(scope="module")
def token() -> str:
    return writer_token("sse-writer")


def ids_of(events: list[dict[str, Any]]) -> list[str]:
    return [event["id"] for event in events]


async def test_catch_up_then_synced_then_live_updates_with_ids(
    sse_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    p = unique_prefix("sse-live")
    await post(client, sse_node, f"{p}/a", "a1", token=token)
    b1 = await post(client, sse_node, f"{p}/b", "b1", token=token)
    later = time.time_ns() // 1000 + 60_000_000  # after a1 (dated now), within MAX_FUTURE_SKEW
    a2 = await post(client, sse_node, f"{p}/a", "a2", token=token, date=later)
    outside = await post(client, sse_node, f"{p}-sibling/x", "outside", token=token)
    async with open_sse(client, sse_node, p) as stream:
        events, synced = await stream.catch_up()
        assert ids_of(events) == [b1["id"], a2["id"]]
        assert [e["iteration"] for e in events] == [b1["iteration"], a2["iteration"]]
        assert events[1] == {
            "id": a2["id"],
            "path": f"{p}/a",
            "iteration": a2["iteration"],
            "from": "sse-writer",
            "date": later,
            "content_type": "text/plain",
            "size": 2,
            "complete": True,
            "deleted": False,
            "value": "a2",
        }
        assert synced == {"iteration": outside["iteration"]}
        live = [
            await post(client, sse_node, f"{p}/c", "c1", token=token),
            await post(client, sse_node, f"{p}/b", "b2", token=token),
        ]
        tombstone = await delete(client, sse_node, f"{p}/c", token=token)
        received = [await stream.update() for _ in range(3)]
        assert ids_of(received) == [*(r["id"] for r in live), tombstone["id"]]
        assert [e["value"] for e in received[:2]] == ["c1", "b2"]
        assert received[2]["deleted"] is True and "value" not in received[2]


async def test_the_root_stream_covers_every_topic(
    sse_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    one = await post(client, sse_node, f"{unique_prefix('sse-root')}/x", "1", token=token)
    async with open_sse(client, sse_node, "") as stream:
        events, _ = await stream.catch_up()
        assert one["id"] in ids_of(events)
        live = [
            await post(client, sse_node, f"{unique_prefix('sse-root')}/y/z", "2", token=token),
            await post(client, sse_node, unique_prefix("sse-root"), "3", token=token),
        ]
        assert ids_of([await stream.update() for _ in range(2)]) == ids_of(live)


async def test_last_event_id_and_since_resume_without_gaps_or_repeats(
    sse_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    p = unique_prefix("sse-resume")
    paths = [f"{p}/{i}" for i in range(4)]
    view = View()
    await post(client, sse_node, paths[0], "start", token=token)
    async with open_sse(client, sse_node, p) as stream:
        events, synced = await stream.catch_up()
        for event in events:
            view.apply(event)
        view.mark(synced["iteration"], "synced")
        for i in range(3):
            await post(client, sse_node, paths[i + 1], f"live {i}", token=token)
        view.apply(await stream.update())  # leave with two updates unread
    await post(client, sse_node, paths[0], "offline", token=token)
    await delete(client, sse_node, paths[2], token=token)
    async with open_sse(client, sse_node, p, headers={"Last-Event-ID": str(view.cursor)}) as stream:
        events, synced = await stream.catch_up()
        assert [e["path"] for e in events] == [paths[3], paths[0], paths[2]]
        for event in events:
            view.apply(event)
        view.mark(synced["iteration"], "synced")
    assert view.ids == await current_ids(client, sse_node, paths)

    # ?since= does the same, and Last-Event-ID (what EventSource sends) wins over it.
    async with open_sse(client, sse_node, p, since=events[0]["iteration"]) as stream:
        assert ids_of((await stream.catch_up())[0]) == ids_of(events[1:])
    headers = {"Last-Event-ID": str(events[1]["iteration"])}
    async with open_sse(client, sse_node, p, headers=headers, since=0) as stream:
        assert ids_of((await stream.catch_up())[0]) == ids_of(events[2:])


async def test_a_cursor_ahead_of_the_node_gets_a_full_catch_up_marked_reset(
    sse_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    p = unique_prefix("sse-reset")
    reports = [await post(client, sse_node, f"{p}/{i}", str(i), token=token) for i in range(3)]
    head = reports[-1]["iteration"]
    async with open_sse(client, sse_node, p, headers={"Last-Event-ID": str(head + 500)}) as stream:
        events, synced = await stream.catch_up()
        assert ids_of(events) == ids_of(reports)
        assert synced == {"iteration": head, "reset": True}
    async with open_sse(client, sse_node, p, since=head) as stream:
        assert await stream.catch_up() == ([], {"iteration": head})


async def test_history_replays_every_log_entry_including_too_late_writes(
    sse_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    p = unique_prefix("sse-history")
    before = await post(client, sse_node, f"{p}/t", "first", token=token, date=BASE_DATE + 5)
    writes = [
        await post(client, sse_node, f"{p}/t", "newer", token=token, date=BASE_DATE + 10),
        await post(client, sse_node, f"{p}/t", "older", token=token, date=BASE_DATE),
        await post(client, sse_node, f"{p}/u", "u", token=token),
    ]
    assert writes[1]["status"] == "too_late"
    async with open_sse(client, sse_node, p, since=before["iteration"], history=1) as stream:
        events, synced = await stream.catch_up()
        assert [(e["id"], e["iteration"]) for e in events] == [(w["id"], w["iteration"]) for w in writes]
        assert synced == {"iteration": writes[-1]["iteration"]}
    async with open_sse(client, sse_node, p, since=before["iteration"]) as stream:
        events, _ = await stream.catch_up()
        assert ids_of(events) == [writes[0]["id"], writes[2]["id"]]


async def test_the_stream_has_event_stream_headers_without_buffering_and_cors(
    sse_node: LiveNode, client: httpx.AsyncClient
) -> None:
    async with open_sse(client, sse_node, unique_prefix("sse-headers")) as stream:
        headers = stream.response.headers
        assert headers["content-type"].split(";")[0] == "text/event-stream"
        assert headers["cache-control"] == "no-cache"
        assert headers["x-accel-buffering"] == "no"
        assert headers["access-control-allow-origin"] == "*"
        assert "content-length" not in headers
        await stream.catch_up()


async def test_heartbeats_carry_an_id_and_advance_to_the_head_while_idle(
    fast_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    quiet, busy = unique_prefix("sse-quiet"), unique_prefix("sse-busy")
    async with open_sse(client, fast_node, quiet) as stream:
        _, synced = await stream.catch_up()
        first = await stream.message()
        assert first.event == "heartbeat"
        assert first.data == {"iteration": synced["iteration"]}
        assert first.id == str(synced["iteration"])
        reports = [await post(client, fast_node, f"{busy}/{i}", str(i), token=token) for i in range(5)]
        head = reports[-1]["iteration"]
        seen = [first.data["iteration"]]
        while seen[-1] != head:
            message = await stream.message()
            assert message.event == "heartbeat", f"nothing under {quiet} changed, yet: {message}"
            assert message.id == str(message.data["iteration"])
            seen.append(message.data["iteration"])
        assert seen == sorted(seen)


@pytest.mark.parametrize(
    ("url_path", "status", "code"),
    [
        ("sse/x?since=abc", 400, "invalid_since"),
        ("sse/x?since=-1", 400, "invalid_since"),
        ("sse/x?history=7", 400, "invalid_history"),
        ("sse/a//b", 400, "invalid_path"),
        ("sse/a/%2e%2e/b", 400, "invalid_path"),
        ("sse/x?token=not-a-jwt", 401, "token_not_valid"),
    ],
)
async def test_bad_requests_get_a_json_error_before_any_stream(
    sse_node: LiveNode, client: httpx.AsyncClient, url_path: str, status: int, code: str
) -> None:
    response = await client.get(f"{sse_node.url}/{url_path}")
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["access-control-allow-origin"] == "*"
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["detail"], str) and body["detail"]


async def test_a_bad_last_event_id_is_a_json_400(sse_node: LiveNode, client: httpx.AsyncClient) -> None:
    response = await client.get(f"{sse_node.url}/sse/x", headers={"Last-Event-ID": "yesterday"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_since"


async def test_a_forbidden_prefix_is_a_json_403(
    sse_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    p = unique_prefix("sse-claims")
    await post(client, sse_node, f"{p}/open/x", "readable", token=token)
    scoped = writer_token("scoped", read=[f"{p}/open"])
    for path in (f"{p}/secret", p, ""):
        response = await client.get(sse_url(sse_node, path, token=scoped))
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"] == "forbidden"
        assert response.headers["access-control-allow-origin"] == "*"
    async with open_sse(client, sse_node, f"{p}/open", token=scoped) as stream:
        events, _ = await stream.catch_up()
        assert [e["value"] for e in events] == ["readable"]


async def test_a_private_node_needs_a_token_in_a_header_or_the_url(
    private_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    p = unique_prefix("sse-private")
    stored = await post(client, private_node, f"{p}/x", "private", token=token)
    anonymous = await client.get(sse_url(private_node, p))
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "not_authenticated"
    for params, headers in (
        ({"token": token}, None),
        ({"authorization": f"Bearer {token}"}, None),
        ({}, {"Authorization": f"Bearer {token}"}),
    ):
        async with open_sse(client, private_node, p, headers=headers, **params) as stream:
            events, _ = await stream.catch_up()
            assert ids_of(events) == [stored["id"]]


async def test_batched_messages_carry_the_same_events_and_the_last_iteration_as_id(
    sse_node: LiveNode, client: httpx.AsyncClient, token: str
) -> None:
    p = unique_prefix("sse-batch")
    written = [await post(client, sse_node, f"{p}/t{index}", f"v{index}", token=token) for index in range(12)]
    async with open_sse(client, sse_node, p) as stream:
        one_each, synced_one = await stream.catch_up()
    async with open_sse(client, sse_node, p, batch=1) as stream:
        message = await stream.next()
        assert message.event == "updates", message
        assert message.data == one_each  # all twelve in one message, in order
        assert message.id == str(one_each[-1]["iteration"])
        synced = await stream.next()
        assert (synced.event, synced.data) == ("synced", synced_one)
        live = await post(client, sse_node, f"{p}/t0", "live", token=token)
        message = await stream.next()
        assert (message.event, message.id) == ("updates", str(live["iteration"]))
        assert [e["id"] for e in message.data] == [live["id"]]
    # Resuming from a batch's id (what EventSource sends as Last-Event-ID) misses nothing.
    resume = {"Last-Event-ID": str(written[5]["iteration"])}
    async with open_sse(client, sse_node, p, batch=1, headers=resume) as stream:
        message = await stream.next()
        assert [e["path"] for e in message.data] == [f"{p}/t{index}" for index in range(6, 12)] + [f"{p}/t0"]


async def test_a_bad_batch_parameter_is_a_json_400(sse_node: LiveNode, client: httpx.AsyncClient) -> None:
    response = await client.get(sse_url(sse_node, "", batch="2"))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_batch"
