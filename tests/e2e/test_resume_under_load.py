"""The realtime guarantee under load: subscribers that keep disconnecting and resuming by iteration
miss nothing and see nothing twice, while several writer PROCESSES hammer a prefix.

WRITERS OS processes (``http_writer_process``) POST and DELETE over HTTP to random topics of a
prefix, with equal-date collisions and too_late writes. Meanwhile websocket and SSE subscribers in
this process connect to a random node, read a random number of frames, disconnect, and resume from
the last iteration they received (an update's, or a synced/heartbeat's). Every update a subscriber
ever receives must be past everything it received before, across all its connections. When the
writers are done, each subscriber resumes one last time, reads up to ``synced`` (which must be the
node's head) and a heartbeat, and its view (path → current event id) must equal the node's state.

It runs on the in-memory layer (one node, with pushed pages and without), and on the channels-redis
layer: one node, and two node processes sharing one database and one Redis (writers and
subscribers spread over both), the multi-worker deployment. Nodes use half-second
heartbeats so that the final drain is short.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from spread_core.testing import LiveNode
from tests.nodes import REPO

from .http_writer_process import tie_topics, topics
from .realtime import (
    DEADLINE,
    HTTP_TIMEOUT,
    View,
    current_ids,
    open_sse,
    open_ws,
    post,
    require_redis,
    unique_prefix,
    writer_token,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WRITERS = 3
WRITES_PER_WRITER = 300
TOPICS = 24
WS_SUBSCRIBERS = 4
SSE_SUBSCRIBERS = 2
#: A session reads between 1 and this many frames before it disconnects.
MAX_FRAMES_PER_SESSION = 30
#: Generous bound on the writers, so a deadlock fails the test instead of hanging it.
WRITERS_DEADLINE = 180.0
REALTIME_SETTINGS = "tests.node_settings_realtime"
#: channels-redis waits for layer messages with a blocking pop of this many seconds.
BRPOP_TIMEOUT = 5
#: How long the idle-subscriber test keeps quiet: past one BRPOP_TIMEOUT round.
IDLE_SECONDS = BRPOP_TIMEOUT + 2


@dataclass
class Subscriber:
    """One subscriber's life: its view, and how many sessions (connections) it went through."""

    name: str
    prefix: str
    view: View = field(default_factory=View)
    sessions: int = 0

    def handle(self, kind: str, data: dict[str, Any]) -> None:
        """One websocket frame / SSE message: ``kind`` is its type, ``data`` its payload."""
        if kind == "update":
            self.view.apply(data)
        elif kind in ("synced", "heartbeat"):
            assert not data.get("reset"), f"{self.name}: a cursor from the same database was reset: {data}"
            self.view.mark(data["iteration"], kind)
        else:
            raise AssertionError(f"{self.name}: unexpected {kind}: {data}")


async def ws_session(
    subscriber: Subscriber, node: LiveNode, frames: int, stop: asyncio.Event | None, head: int | None = None
) -> None:
    """Resume on ``node`` and read ``frames`` frames (fewer once ``stop`` is set); with ``head``, read
    up to ``synced`` instead, which must be the head, then a heartbeat at the head."""
    async with open_ws(node, subscriber.prefix, since=subscriber.view.cursor) as ws:
        count = 0
        while head is not None or count < frames:
            if stop is not None and stop.is_set():
                break
            frame = await ws.frame()
            count += 1
            kind = frame["type"]
            subscriber.handle(kind, frame["event"] if kind == "update" else frame)
            if head is not None and kind == "synced":
                assert frame["iteration"] == head, (subscriber.name, frame)
                assert await ws.frame() == {"type": "heartbeat", "iteration": head}, subscriber.name
                break
    subscriber.sessions += 1


async def sse_session(
    subscriber: Subscriber,
    client: httpx.AsyncClient,
    node: LiveNode,
    frames: int,
    stop: asyncio.Event | None,
    head: int | None = None,
) -> None:
    """``ws_session`` over SSE; half of the sessions resume with Last-Event-ID (what EventSource
    does), half with ?since=."""
    cursor = subscriber.view.cursor
    by_header = subscriber.sessions % 2 == 0
    headers = {"Last-Event-ID": str(cursor)} if by_header else None
    since = None if by_header else cursor
    async with open_sse(client, node, subscriber.prefix, headers=headers, since=since) as sse:
        count = 0
        while head is not None or count < frames:
            if stop is not None and stop.is_set():
                break
            message = await sse.message()
            count += 1
            assert message.id == str(message.data["iteration"]), message
            subscriber.handle(message.event, message.data)
            if head is not None and message.event == "synced":
                assert message.data == {"iteration": head}, (subscriber.name, message)
                last = await sse.message()
                assert (last.event, last.data) == ("heartbeat", {"iteration": head}), subscriber.name
                break
    subscriber.sessions += 1


async def run_load(nodes: list[LiveNode], tmp_path: Path, seed: int) -> None:
    prefix = unique_prefix("load")
    rng = random.Random(seed)
    all_topics = [*topics(prefix, TOPICS), *tie_topics(prefix)]
    sync_dir = tmp_path / "sync"
    sync_dir.mkdir()
    tasks: list[asyncio.Task[None]] = []
    writers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.http_writer_process", json.dumps(config)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for config in (
            {
                "index": index,
                "seed": seed * 100 + index,
                "count": WRITES_PER_WRITER,
                "prefix": prefix,
                "topics": TOPICS,
                "urls": [node.url for node in nodes],
                "token": writer_token(f"writer-{index}"),
                "sync_dir": str(sync_dir),
            }
            for index in range(WRITERS)
        )
    ]
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            # Some values exist before anyone subscribes.
            for path in all_topics[:6]:
                await post(client, nodes[0], path, "before", token=writer_token("seeder"))
            subscribers = [Subscriber(f"ws-{i}", prefix) for i in range(WS_SUBSCRIBERS)]
            subscribers += [Subscriber(f"sse-{i}", prefix) for i in range(SSE_SUBSCRIBERS)]
            # One websocket subscriber watches a subtree instead of the whole prefix.
            subscribers[WS_SUBSCRIBERS - 1].prefix = f"{prefix}/g1"
            stop = asyncio.Event()

            async def session(
                subscriber: Subscriber, node: LiveNode, frames: int, head: int | None = None
            ) -> None:
                until = stop if head is None else None
                if subscriber.name.startswith("ws"):
                    await ws_session(subscriber, node, frames, until, head)
                else:
                    await sse_session(subscriber, client, node, frames, until, head)

            async def churn(subscriber: Subscriber, subscriber_rng: random.Random) -> None:
                while not stop.is_set():
                    frames = subscriber_rng.randint(1, MAX_FRAMES_PER_SESSION)
                    await session(subscriber, subscriber_rng.choice(nodes), frames)
                    await asyncio.sleep(subscriber_rng.random() * 0.02)

            tasks += [asyncio.create_task(churn(s, random.Random(rng.random()))) for s in subscribers]
            while len(list(sync_dir.glob("ready-*"))) < WRITERS:
                await asyncio.sleep(0.02)
            (sync_dir / "go").touch()
            summaries = await wait_for_writers(writers, tasks)
            stop.set()
            await asyncio.gather(*tasks)

            head = max(summary["max_iteration"] for summary in summaries)
            statuses = Counter[str]()
            for summary in summaries:
                statuses.update(summary["statuses"])
            assert statuses.total() == WRITERS * WRITES_PER_WRITER
            assert statuses["too_late"] > 0, statuses  # the load did race
            state = await current_ids(client, nodes[0], all_topics)
            await asyncio.gather(*(session(s, rng.choice(nodes), 0, head=head) for s in subscribers))
            for subscriber in subscribers:
                expected = {
                    path: eid for path, eid in state.items() if path.startswith(subscriber.prefix + "/")
                }
                assert subscriber.view.ids == expected, subscriber.name
                assert subscriber.sessions > 2, f"{subscriber.name} hardly resumed: {subscriber.sessions}"
            # A fresh subscription from 0 on every node agrees with the same state.
            for node in nodes:
                fresh = View()
                async with open_ws(node, prefix) as ws:
                    events, synced = await ws.catch_up()
                for event in events:
                    fresh.apply(event)
                assert synced["iteration"] == head
                assert fresh.ids == state
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()


async def wait_for_writers(
    writers: list[subprocess.Popen[bytes]], tasks: list[asyncio.Task[None]]
) -> list[dict[str, Any]]:
    """The writers' summaries once they all exited; a subscriber that fails meanwhile fails fast."""
    loop = asyncio.get_running_loop()
    waiting = asyncio.gather(
        *(loop.run_in_executor(None, writer.communicate, None, WRITERS_DEADLINE) for writer in writers)
    )
    done, _ = await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        if task in done:
            task.result()  # a subscriber failed: raise its assertion
            raise AssertionError("a subscriber stopped before the writers")
    outputs = await waiting
    summaries = []
    for writer, (out, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, err.decode(errors="replace")
        summaries.append(json.loads(out))
    return summaries


async def test_resuming_subscribers_see_every_change_once_on_one_node_on_redis(
    make_node: Callable[..., LiveNode], tmp_path: Path
) -> None:
    redis = require_redis()
    node = make_node("load-redis", REDIS_URL=redis, DJANGO_SETTINGS_MODULE=REALTIME_SETTINGS)
    await run_load([node], tmp_path, seed=1)


@pytest.mark.parametrize("push", [True, False], ids=["pushed-pages", "own-reads"])
async def test_resuming_subscribers_see_every_change_once_on_the_in_memory_layer(
    make_node: Callable[..., LiveNode], tmp_path: Path, push: bool
) -> None:
    # The default embedded setup: the node's own writes ring its consumers (no layer group),
    # which take pushed pages (FEED_PUSH) or each read for itself.
    node = make_node(
        "load-memory",
        DJANGO_SETTINGS_MODULE=REALTIME_SETTINGS,
        SPREAD_OPTIONS=json.dumps({"FEED_PUSH": push}),
    )
    await run_load([node], tmp_path, seed=3)


async def test_resuming_subscribers_see_every_change_once_across_two_nodes_sharing_a_database(
    make_node: Callable[..., LiveNode], fresh_database_url: Callable[[str], str], tmp_path: Path
) -> None:
    redis = require_redis()
    database = fresh_database_url("load_shared")
    nodes = [
        make_node(
            f"load-{i}", DATABASE_URL=database, REDIS_URL=redis, DJANGO_SETTINGS_MODULE=REALTIME_SETTINGS
        )
        for i in (1, 2)
    ]
    await run_load(nodes, tmp_path, seed=2)


@pytest.mark.parametrize("doorbells", ["process", "subscriber"])
async def test_a_write_on_one_node_reaches_a_websocket_on_another_through_redis(
    make_node: Callable[..., LiveNode],
    fresh_database_url: Callable[[str], str],
    client: httpx.AsyncClient,
    doorbells: str,
) -> None:
    """Default heartbeats (15 s, longer than the waits here): the Redis doorbell delivers, one
    per process (the default) or one per subscriber (``LAYER_DOORBELLS``)."""
    redis = require_redis()
    database = fresh_database_url("two_nodes")
    options = json.dumps({"LAYER_DOORBELLS": doorbells})
    one, two = (
        make_node(f"redis-{i}", DATABASE_URL=database, REDIS_URL=redis, SPREAD_OPTIONS=options)
        for i in (1, 2)
    )
    p = unique_prefix("cross")
    token = writer_token("cross-writer")
    async with open_ws(two, p) as on_two, open_ws(one, f"{p}/x") as on_one:
        await on_two.catch_up()
        await on_one.catch_up()
        report = await post(client, one, f"{p}/x/y", "from node 1", token=token)
        counts = {entry["path"]: entry["subscribers"] for entry in report["propagation"]}
        assert counts[p] == 1, "the subscriber connected to node 2 is counted by node 1"
        assert counts[f"{p}/x"] == 1
        assert counts[f"{p}/x/y"] == 0
        for ws in (on_two, on_one):
            event = await ws.update()
            assert (event["id"], event["iteration"], event["value"]) == (
                report["id"],
                report["iteration"],
                "from node 1",
            )
        back = await post(client, two, f"{p}/x/z", "from node 2", token=token)
        assert {e["path"]: e["subscribers"] for e in back["propagation"]}[p] == 1
        for ws in (on_two, on_one):
            assert (await ws.update())["id"] == back["id"]


async def test_idle_subscribers_on_redis_stay_connected_and_are_uncounted_once_gone(
    make_node: Callable[..., LiveNode], client: httpx.AsyncClient
) -> None:
    """A subscriber may hear nothing on the channel layer for a long time (heartbeats do not go
    through it); channels-redis waits for layer messages in rounds of BRPOP_TIMEOUT seconds, and
    such a quiet connection must neither be dropped nor outlive its client in the counts."""
    redis = require_redis()
    node = make_node("redis-idle", REDIS_URL=redis, DJANGO_SETTINGS_MODULE=REALTIME_SETTINGS)
    p = unique_prefix("idle")
    token = writer_token("idle-writer")
    async with open_ws(node, p) as ws, open_sse(client, node, p) as sse:
        await ws.catch_up()
        await sse.catch_up()
        await asyncio.sleep(IDLE_SECONDS)
        await ws.ping()
        report = await post(client, node, f"{p}/x", "after a quiet while", token=token)
        assert {e["path"]: e["subscribers"] for e in report["propagation"]}[p] == 2
        assert (await ws.update())["id"] == report["id"]
        assert (await sse.update())["id"] == report["id"]
    # Both clients left: the node stops counting them (it learns of it asynchronously).
    async with asyncio.timeout(DEADLINE):
        while True:
            probe = await post(client, node, f"{p}/probe", "anyone?", token=token)
            if {e["path"]: e["subscribers"] for e in probe["propagation"]}[p] == 0:
                break
            await asyncio.sleep(0.1)


async def test_a_doorbell_past_the_database_head_does_not_stall_a_subscriber(
    make_node: Callable[..., LiveNode], client: httpx.AsyncClient
) -> None:
    """A doorbell is only a hint: one that announces an iteration this node's database has not
    reached (two databases behind one Redis, or doorbells still in flight when a database is
    restored to an earlier state) must cost at most a read, never wedge the connection."""
    redis = require_redis()
    ahead, behind = (make_node(f"bell-{name}", REDIS_URL=redis) for name in ("ahead", "behind"))
    p = unique_prefix("bell")
    token = writer_token("bell-writer")
    for i in range(5):
        await post(client, ahead, f"{p}-elsewhere/{i}", "raises the head of the other database", token=token)
    async with open_ws(behind, p) as ws:
        await ws.catch_up()
        foreign = await post(client, ahead, f"{p}/x", "written to the other database", token=token)
        assert {e["path"]: e["subscribers"] for e in foreign["propagation"]}[p] == 1  # it was rung
        await ws.ping()
        local = await post(client, behind, f"{p}/y", "written here", token=token)
        assert local["iteration"] < foreign["iteration"]
        assert (await ws.update())["id"] == local["id"]
