"""Fan-out: ring every subscriber of a changed path, in this process and through the channel layer,
and count them for the propagation report.

A ring is only a doorbell ("something under this prefix changed, up to iteration N"): subscribers
read the events themselves from the database by iteration, so a doorbell that a layer drops (layers
deliver at most once, and drop over capacity) costs latency, never data.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import defaultdict
from typing import Any, Protocol

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

from .paths import canonical_ancestors
from .process_doorbells import PROCESS_GROUP, count_group_name, doorbell, per_process
from .types import PropagationEntry

logger = logging.getLogger(__name__)

GROUP_PREFIX = "spread."
DOORBELL = "spread.changed"
#: Longest a write's doorbells may take through the channel layer (seconds).
RING_TIMEOUT = 2.0


def group_name(prefix: str) -> str:
    """The channel-layer group of the subscribers of ``prefix`` (layer names are < 100 ASCII)."""
    return GROUP_PREFIX + hashlib.sha1(prefix.encode("ascii")).hexdigest()


class Subscriber(Protocol):
    prefix: str

    def ring(self, iteration: int) -> None:
        """Wake the subscriber: never blocks, never reads the database (it may be called on an
        event loop or in the writer's thread right after a commit)."""


class LoopSubscriber(Protocol):
    prefix: str

    def ring(self, iteration: int) -> None:
        """Called on the subscriber's event loop; never blocks, never reads the database."""

    def uncounted(self) -> int:
        """The clients it stands for that no channel-layer group counts (those that also hear
        doorbells through a layer spanning processes are counted there, not twice)."""


class LoopFeeds:
    """The subscribers that live on one event loop (websocket and SSE consumers), keyed by prefix.
    A commit rings them with one hand-off to their loop, not one per subscriber, and without the
    channel layer: its in-memory layer builds a queue, deep-copies the message and wakes a receive
    task per member and per doorbell, most of a delivery's cost with many subscribers."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.by_prefix: dict[str, set[LoopSubscriber]] = defaultdict(set)

    def ring(self, newest: dict[str, int]) -> None:
        """On the loop: ring every subscriber of each prefix with its iteration."""
        for prefix, iteration in newest.items():
            for subscriber in list(self.by_prefix.get(prefix, ())):
                subscriber.ring(iteration)


class Hub:
    """Registry of this process's subscribers, keyed by prefix: in-process (Python API) ones, rung
    from any thread, and those of event loops (``LoopFeeds``), rung on their loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_prefix: dict[str, set[Subscriber]] = defaultdict(set)
        self._loops: dict[asyncio.AbstractEventLoop, LoopFeeds] = {}

    def add(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._by_prefix[subscriber.prefix].add(subscriber)

    def discard(self, subscriber: Subscriber) -> None:
        with self._lock:
            subscribers = self._by_prefix.get(subscriber.prefix)
            if subscribers is not None:
                subscribers.discard(subscriber)
                if not subscribers:
                    del self._by_prefix[subscriber.prefix]

    def add_on_loop(self, subscriber: LoopSubscriber) -> None:
        """Register a subscriber of the running event loop (call on that loop)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            feeds = self._loops.get(loop)
            if feeds is None:
                feeds = self._loops[loop] = LoopFeeds(loop)
            feeds.by_prefix[subscriber.prefix].add(subscriber)

    def discard_on_loop(self, subscriber: LoopSubscriber) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            feeds = self._loops.get(loop)
            if feeds is None:
                return
            subscribers = feeds.by_prefix.get(subscriber.prefix)
            if subscribers is not None:
                subscribers.discard(subscriber)
                if not subscribers:
                    del feeds.by_prefix[subscriber.prefix]
            if not feeds.by_prefix:
                del self._loops[loop]

    def count(self, prefix: str) -> int:
        """Subscribers of ``prefix`` in this process that no layer group counts."""
        with self._lock:
            on_loops = sum(
                s.uncounted() for feeds in self._loops.values() for s in feeds.by_prefix.get(prefix, ())
            )
            return len(self._by_prefix.get(prefix, ())) + on_loops

    def notify(self, path: str, iteration: int) -> None:
        """Ring every subscriber of this process whose prefix covers ``path``."""
        self.notify_in_process(path, iteration)
        self.notify_loops(_prefixes(path, iteration))

    def notify_in_process(self, path: str, iteration: int) -> None:
        """Ring the in-process (Python API) subscribers whose prefix covers ``path``."""
        _ring_each(self._watching(path), iteration)

    def notify_loops(self, newest: dict[str, int]) -> None:
        """Ring the loop subscribers of each prefix of ``newest`` with its iteration: once per loop
        that has any, on that loop (directly when called on it)."""
        with self._lock:
            handoffs = [
                (feeds, relevant)
                for feeds in self._loops.values()
                if (relevant := {p: i for p, i in newest.items() if p in feeds.by_prefix})
            ]
        if not handoffs:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for feeds, relevant in handoffs:
            if feeds.loop is running:
                feeds.ring(relevant)
                continue
            try:
                feeds.loop.call_soon_threadsafe(feeds.ring, relevant)
            except RuntimeError:  # that loop is closed: nobody there will read this
                with self._lock:
                    self._loops.pop(feeds.loop, None)

    def ring_running_loop(self, newest: dict[str, int]) -> None:
        """Ring the running loop's subscribers of each prefix of ``newest`` (call on that loop)."""
        with self._lock:
            feeds = self._loops.get(asyncio.get_running_loop())
        if feeds is not None:
            feeds.ring({p: i for p, i in newest.items() if p in feeds.by_prefix})

    def _watching(self, path: str) -> list[Subscriber]:
        with self._lock:
            return [s for p in canonical_ancestors(path) for s in self._by_prefix.get(p, ())]


def _ring_each(subscribers: list[Subscriber], iteration: int) -> None:
    for subscriber in subscribers:
        subscriber.ring(iteration)


hub = Hub()


async def _layer_group_size(layer: Any, group: str) -> int:
    """Members of a layer group that are alive (joined or refreshed within the group expiry)."""
    if isinstance(layer, InMemoryChannelLayer):
        return len(layer.groups.get(group, {}))
    if hasattr(layer, "_group_key") and hasattr(layer, "connection"):  # channels-redis
        connection = layer.connection(layer.consistent_hash(group))
        oldest = time.time() - layer.group_expiry
        return int(await connection.zcount(layer._group_key(group), min=oldest, max="+inf"))
    return 0


async def _ring_layer(newest: dict[str, int]) -> dict[str, int]:
    """Ring the layer group of each prefix of ``newest`` with its iteration; return their sizes.
    Bounded by ``RING_TIMEOUT``: a layer that fails or hangs (Redis down or frozen) must neither
    fail nor hold up a committed write; its subscribers catch up at their next heartbeat."""
    layer = get_channel_layer()
    sizes: dict[str, int] = {}
    if layer is None:
        return sizes
    try:
        await asyncio.wait_for(_ring_groups(layer, newest, sizes), RING_TIMEOUT)
    except Exception as exc:
        prefixes = ", ".join(sorted(newest)[:3])
        logger.warning("Could not ring the subscribers of %r: %s: %s", prefixes, type(exc).__name__, exc)
    return sizes


async def _ring_groups(layer: Any, newest: dict[str, int], sizes: dict[str, int]) -> None:
    """Each prefix's group (peer links, and subscribers when doorbells go one per subscriber);
    with doorbells one per process, one message to every process for the subscribers counted."""
    counted = 0
    for prefix, iteration in newest.items():
        group = group_name(prefix)
        members = await _layer_group_size(layer, group)
        subscribers = await _layer_group_size(layer, count_group_name(prefix)) if per_process() else 0
        sizes[prefix] = members + subscribers  # counted before any send, which may hang
        counted += subscribers
        if members:
            await layer.group_send(group, {"type": DOORBELL, "prefix": prefix, "iteration": iteration})
    if counted:
        await layer.group_send(PROCESS_GROUP, doorbell(newest))


def _prefixes(path: str, iteration: int) -> dict[str, int]:
    return dict.fromkeys(canonical_ancestors(path), iteration)


def announce(path: str, iteration: int) -> list[PropagationEntry]:
    """Ring the subscribers of ``path`` and its ancestors (in this process, then through the
    channel layer); return how many there were per prefix. Called after a commit, in sync code."""
    hub.notify(path, iteration)
    return _report(path, async_to_sync(_ring_layer)(_prefixes(path, iteration)))


async def aannounce(path: str, iteration: int) -> list[PropagationEntry]:
    """``announce`` from an event loop."""
    hub.notify(path, iteration)
    return _report(path, await _ring_layer(_prefixes(path, iteration)))


def announce_all(changes: list[tuple[str, int]]) -> None:
    """Ring the subscribers of several writes committed together (path and iteration of each, in
    commit order), in sync code, without a report: in-process subscribers per write, and each
    layer group once, with the highest iteration under its prefix, in one hop to an event loop. A
    doorbell says "read from your cursor up to N", so one ring per prefix wakes the same reads as
    one per write (a replication batch of 500 events would otherwise pay 500 hops)."""
    newest: dict[str, int] = {}
    for path, iteration in changes:
        hub.notify_in_process(path, iteration)
        for prefix in canonical_ancestors(path):
            newest[prefix] = max(newest.get(prefix, 0), iteration)
    if newest:
        hub.notify_loops(newest)
        async_to_sync(_ring_layer)(newest)


def _report(path: str, layer_sizes: dict[str, int]) -> list[PropagationEntry]:
    return [
        {"path": prefix, "subscribers": hub.count(prefix) + layer_sizes.get(prefix, 0)}
        for prefix in canonical_ancestors(path)
    ]


def silent_report(path: str) -> list[PropagationEntry]:
    """The report of a write that is delivered to nobody (too_late, existing)."""
    return [{"path": prefix, "subscribers": 0} for prefix in canonical_ancestors(path)]
