"""Fault injection: the Redis channel layer crashes and comes back empty, under live traffic.

Two node processes share one database and one PRIVATE redis-server (a loopback port of this
module's own; the shared server on 6379 is never touched), started with ``--save "" --appendonly
no`` so that a restart loses every key, group memberships included, as after a real crash.
Websocket and SSE subscribers follow one prefix on both nodes, each on one long-lived connection
that it reopens (resuming by iteration) only if the node closes it; a writer posts and deletes
to both nodes all along. Redis is killed with SIGKILL, the writer goes on, Redis restarts on the
same port, the writer goes on, then everything stops and is checked.

What must hold (one test each, on the outcome of that one scenario):
- writes stay ACKNOWLEDGED (200 with the JSON report) while Redis is down: the database is the
  truth and a doorbell that cannot be rung is only lost latency, never a failed write;
- every subscriber misses nothing: the iterations it received strictly increase across all its
  connections, and its final view equals the store;
- once Redis is back, the subscriptions are counted again by writes (``propagation``): the
  heartbeats renew the group memberships that the restart lost, so doorbells ring again;
- the nodes log no unhandled traceback (uvicorn's "Exception in ASGI application", asyncio's
  "Task exception was never retrieved", ...): the only tracebacks allowed are the writers'
  deliberate, logged "Could not ring the subscribers of ..." while Redis is down, and one known
  channels-redis leak (see ALLOWED_BEFORE_TRACEBACK).

A Redis that hangs instead of dying (SIGSTOP, a silent network) is not tested here: the layer's
sockets have no timeout (``socket_timeout: None`` in the settings), so a write's doorbells are
bounded by ``spread_core.fanout.RING_TIMEOUT`` instead.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidHandshake, WebSocketException

from spread_core.testing import LiveNode, free_port
from tests.e2e.realtime import (
    DEADLINE,
    HTTP_TIMEOUT,
    bearer,
    current_ids,
    open_ws,
    unique_prefix,
    writer_token,
)
from tests.e2e.test_resume_under_load import REALTIME_SETTINGS, Subscriber, sse_session, ws_session
from tests.nodes import Databases
from tests.services import redis_answers, service_missing

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NODES = 2
WS_PER_NODE = 2
SSE_PER_NODE = 1
SUBSCRIBERS = NODES * (WS_PER_NODE + SSE_PER_NODE)
TOPICS = 12
DELETE_SHARE = 0.15
#: Writes in each phase: before the crash, while Redis is down, after it restarted.
WRITES_PER_PHASE = 60
#: Between two writes, so that two cores also serve the subscribers meanwhile.
WRITE_PAUSE = 0.01
#: A write that takes this long is a hang (a write normally takes milliseconds).
WRITE_TIMEOUT = 30.0
#: Generous bound on waits that normally take a heartbeat or two (nodes beat every 0.5 s).
SETTLE_DEADLINE = 60.0
#: A session reads until told to stop; it never reaches this count.
ENDLESS = 10**9
RECONNECT_PAUSE = 0.2
REDIS_READY_TIMEOUT = 30.0
#: The only lines allowed right before a traceback in a node's log:
ALLOWED_BEFORE_TRACEBACK = (
    # a writer's logged, deliberate swallow while the layer is down (spread_core.fanout);
    "Could not ring the subscribers of",
    # asyncio's report of channels-redis's fire-and-forget task that removes a received message
    # from its backup queue, when Redis dies between the receive and that removal (about one
    # kill in fifty here): the message was delivered, and its backup died with Redis. Not a
    # consumer's error; channels-redis never retrieves that task's exception.
    "coro=<RedisChannelLayer._clean_receive_backup()",
)
#: How much of a subscriber's assertion a failure report keeps.
FAILURE_CHARS = 300
TRACEBACK = "Traceback (most recent call last):"
CHAINED = ("During handling of the above exception", "The above exception was the direct cause")


# ----------------------------------------------------------------------------------------------
# A Redis of our own


class PrivateRedis:
    """A redis-server on a free loopback port that keeps nothing on disk: ``kill()`` is a crash
    (SIGKILL), and ``start()`` again brings up an EMPTY server on the same port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        with open(self.directory / "redis.log", "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + REDIS_READY_TIMEOUT
        while not redis_answers(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log_text = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server did not start on port {self.port}: {log_text}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None


# ----------------------------------------------------------------------------------------------
# The scenario


@dataclass
class Follower:
    """A subscriber (see test_resume_under_load) on one long-lived connection to its home node,
    reopened only when the node closes it."""

    subscriber: Subscriber
    home: LiveNode
    #: Connections that ended without being asked to (closed by the node, or no frame for DEADLINE).
    interruptions: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.subscriber.name


@dataclass
class Outcome:
    """What the scenario saw; the tests assert on it."""

    #: Phase → HTTP status (or "hang") → count, for the writer's requests.
    writes: dict[str, Counter[str]] = field(default_factory=dict)
    #: The first few answers that were not 200, by phase.
    refused: list[str] = field(default_factory=list)
    followers: list[Follower] = field(default_factory=list, repr=False)
    #: A subscriber's broken promise (out-of-order update, reset, final view wrong).
    subscriber_failures: list[str] = field(default_factory=list)
    #: Subscribers counted on the prefix by writes: before the crash, and after the restart.
    counted_before: int = 0
    counted_after: int = 0
    logs: dict[str, str] = field(default_factory=dict, repr=False)


class Writer:
    """Posts (and sometimes deletes) to random topics of the prefix, on both nodes in turn, until
    stopped; counts the answers of each phase."""

    def __init__(self, client: httpx.AsyncClient, nodes: list[LiveNode], prefix: str, outcome: Outcome):
        self.client, self.nodes, self.outcome = client, nodes, outcome
        self.topics = [f"{prefix}/t{k}" for k in range(TOPICS)]
        self.headers = bearer(writer_token("redis-fault-writer"))
        self.phase = "before"
        self.done = 0
        self.stop = asyncio.Event()
        self.rng = random.Random(7)

    async def write_once(self) -> None:
        node = self.nodes[self.done % len(self.nodes)]
        url = f"{node.url}/raw/{self.rng.choice(self.topics)}"
        counts = self.outcome.writes.setdefault(self.phase, Counter())
        try:
            if self.rng.random() < DELETE_SHARE:
                response = await self.client.delete(url, headers=self.headers, timeout=WRITE_TIMEOUT)
            else:
                value = f"{self.phase} {self.done}".encode()
                headers = {**self.headers, "Content-Type": "text/plain"}
                response = await self.client.post(url, content=value, headers=headers, timeout=WRITE_TIMEOUT)
        except httpx.TimeoutException:
            counts["hang"] += 1
            self.outcome.refused.append(f"{self.phase}: no answer within {WRITE_TIMEOUT} s")
            return
        finally:
            self.done += 1
        counts[str(response.status_code)] += 1
        if response.status_code != 200 and len(self.outcome.refused) < 5:
            self.outcome.refused.append(f"{self.phase}: {response.status_code} {response.text[:300]}")

    async def run(self) -> None:
        while not self.stop.is_set():
            await self.write_once()
            await asyncio.sleep(WRITE_PAUSE)

    async def reach(self, count: int) -> None:
        """Wait until ``count`` writes in all were answered, or one hung (the test then fails
        on it instead of waiting for every write to hang in turn)."""
        while self.done < count and not any("hang" in counts for counts in self.outcome.writes.values()):
            await asyncio.sleep(0.05)


async def follow(follower: Follower, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
    """Keep ``follower`` subscribed until ``stop``: one connection, reopened from the last
    iteration received when it ends by itself. A broken promise (an assertion) ends it."""
    subscriber = follower.subscriber
    while not stop.is_set():
        try:
            if subscriber.name.startswith("ws"):
                await ws_session(subscriber, follower.home, ENDLESS, stop)
            else:
                await sse_session(subscriber, client, follower.home, ENDLESS, stop)
        except TimeoutError:  # heartbeats come every half second: the connection is stuck
            follower.interruptions.append(f"stuck: no frame (or no handshake) for {DEADLINE} s")
        except (OSError, EOFError, httpx.HTTPError, WebSocketException, InvalidHandshake) as exc:
            follower.interruptions.append(f"closed: {exc!r}"[:200])
        if not stop.is_set():
            await asyncio.sleep(RECONNECT_PAUSE)


async def counted(client: httpx.AsyncClient, nodes: list[LiveNode], prefix: str, expected: int) -> int:
    """Probe writes (on each node in turn) until one reports ``expected`` subscribers of ``prefix``
    (within SETTLE_DEADLINE); the count of the last probe."""
    headers = {**bearer(writer_token("redis-fault-probe")), "Content-Type": "text/plain"}
    seen, attempt = -1, 0
    deadline = time.monotonic() + SETTLE_DEADLINE
    while seen != expected and time.monotonic() < deadline:
        node = nodes[attempt % len(nodes)]
        response = await client.post(f"{node.url}/raw/{prefix}/probe", content=b"probe", headers=headers)
        assert response.status_code == 200, response.text
        seen = {entry["path"]: entry["subscribers"] for entry in response.json()["propagation"]}[prefix]
        attempt += 1
        if seen != expected:
            await asyncio.sleep(0.2)
    return seen


async def all_synced(followers: list[Follower]) -> None:
    """Wait until every subscriber has had its catch-up (a ``synced``)."""
    async with asyncio.timeout(SETTLE_DEADLINE):
        while not all(f.subscriber.view.complete_by for f in followers):
            await asyncio.sleep(0.05)


async def scenario(nodes: list[LiveNode], redis: PrivateRedis, outcome: Outcome) -> None:
    prefix = unique_prefix("redis-crash")
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
        kinds = ["ws"] * WS_PER_NODE + ["sse"] * SSE_PER_NODE
        outcome.followers = [
            Follower(Subscriber(f"{kind}-{n}-{i}", prefix), node)
            for n, node in enumerate(nodes)
            for i, kind in enumerate(kinds)
        ]
        stop = asyncio.Event()
        following = [asyncio.create_task(follow(f, client, stop)) for f in outcome.followers]
        writer = Writer(client, nodes, prefix, outcome)
        writing = asyncio.create_task(writer.run())
        try:
            await all_synced(outcome.followers)
            outcome.counted_before = await counted(client, nodes, prefix, SUBSCRIBERS)

            await writer.reach(WRITES_PER_PHASE)
            redis.kill()
            writer.phase = "redis down"
            await writer.reach(2 * WRITES_PER_PHASE)
            await asyncio.to_thread(redis.start)
            writer.phase = "after restart"
            outcome.counted_after = await counted(client, nodes, prefix, SUBSCRIBERS)
            await writer.reach(3 * WRITES_PER_PHASE)
        finally:
            writer.stop.set()
            stop.set()
            await writing
            for task, follower in zip(following, outcome.followers, strict=True):
                try:
                    await task
                except AssertionError as exc:
                    outcome.subscriber_failures.append(f"{follower.name}: {str(exc)[:FAILURE_CHARS]}")

        # Each subscriber resumes one last time and reads up to a synced at the head.
        head = await current_head(nodes[0])
        state = await current_ids(client, nodes[0], [*writer.topics, f"{prefix}/probe"])
        for follower in outcome.followers:
            subscriber = follower.subscriber
            try:
                if subscriber.name.startswith("ws"):
                    await ws_session(subscriber, follower.home, 0, None, head=head)
                else:
                    await sse_session(subscriber, client, follower.home, 0, None, head=head)
                assert subscriber.view.ids == state, "its final view differs from the store"
            except AssertionError as exc:
                outcome.subscriber_failures.append(f"{follower.name}: {str(exc)[:FAILURE_CHARS]}")


async def current_head(node: LiveNode) -> int:
    """The node's head iteration (what a fresh subscription's ``synced`` says)."""
    async with open_ws(node, unique_prefix("head")) as ws:
        _, synced = await ws.catch_up()
    return int(synced["iteration"])


# ----------------------------------------------------------------------------------------------
# Fixtures and tests


@pytest.fixture(scope="module")
def outcome(
    module_nodes: Callable[..., LiveNode], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Outcome]:
    """Runs the scenario once for the module's tests."""
    if shutil.which("redis-server") is None:
        service_missing("redis-server is not installed")
    directory = tmp_path_factory.mktemp("redis-crash")
    redis = PrivateRedis(directory)
    databases = Databases(directory)
    nodes: list[LiveNode] = []
    try:
        redis.start()
        database = databases.new("redis_crash_shared")
        env = {"DATABASE_URL": database, "REDIS_URL": redis.url, "DJANGO_SETTINGS_MODULE": REALTIME_SETTINGS}
        nodes += [module_nodes(f"redis-crash-{n}", **env) for n in range(NODES)]
        result = Outcome()
        asyncio.run(scenario(nodes, redis, result))
        result.logs = {node.env["SPREAD_NODE_NAME"]: read_log(node) for node in nodes}
        yield result
    finally:
        for node in nodes:  # before their database and their Redis go
            node.kill()
        redis.kill()
        databases.drop_all()


def read_log(node: LiveNode) -> str:
    assert node.log_path is not None
    return node.log_path.read_text(errors="replace")


def unhandled_tracebacks(log: str) -> list[str]:
    """The log lines that introduce a traceback other than the allowed, handled one (each with
    the lines around it)."""
    lines = log.splitlines()
    found = []
    for index, line in enumerate(lines):
        if not line.startswith(TRACEBACK):
            continue
        if index >= 2 and lines[index - 2].startswith(CHAINED):
            continue  # the second half of a chained traceback: judged by its first half
        message = lines[index - 1] if index else ""
        if not any(allowed in message for allowed in ALLOWED_BEFORE_TRACEBACK):
            found.append("\n".join(lines[max(index - 1, 0) : index + 25]))
    return found


def test_writes_stay_acknowledged_while_redis_is_down(outcome: Outcome) -> None:
    """The database is the truth: a write is committed and answered 200 with its report even
    when the channel layer cannot ring anyone (never a hang, and not even a 5xx)."""
    phases = {phase: dict(counts) for phase, counts in outcome.writes.items()}
    assert set(phases) == {"before", "redis down", "after restart"}, phases
    for phase, counts in phases.items():
        assert counts == {"200": counts.get("200", 0)}, (phase, phases, outcome.refused)
    assert phases["redis down"]["200"] >= WRITES_PER_PHASE - 1, phases  # one may straddle the kill


def test_subscribers_miss_nothing_and_see_nothing_twice_across_a_redis_crash(outcome: Outcome) -> None:
    assert not outcome.subscriber_failures, "\n".join(outcome.subscriber_failures)
    for follower in outcome.followers:
        assert follower.subscriber.view.updates > 0, follower.name
    stalls = [(f.name, i) for f in outcome.followers for i in f.interruptions if i.startswith("stuck")]
    assert not stalls, f"subscriptions stuck without frames: {stalls}"


def test_subscriptions_are_counted_again_once_redis_is_back(outcome: Outcome) -> None:
    """The restart lost every group membership; the heartbeats renew them, so writes count (and
    ring) every subscriber again without any of them reconnecting."""
    assert outcome.counted_before == SUBSCRIBERS
    assert outcome.counted_after == SUBSCRIBERS, (
        f"writes still counted {outcome.counted_after} subscribers instead of {SUBSCRIBERS}"
        f" {SETTLE_DEADLINE} s after Redis restarted (fewer: group memberships not renewed; more:"
        " connections that ended are still members)"
    )


def test_nodes_log_no_unhandled_traceback_when_redis_crashes(outcome: Outcome) -> None:
    for name, log in outcome.logs.items():
        unhandled = unhandled_tracebacks(log)
        assert not unhandled, (
            f"{name} logged {len(unhandled)} unhandled traceback(s); the first:\n{unhandled[0]}"
        )
