"""What websocket and SSE subscriptions share: feeds that catch up and then follow changes by
iteration, rings from this process's writes and doorbells from other processes' (the channel
layer), heartbeats, and dropping subscribers that lag.

A consumer mixes in ``LiveFeeds`` and implements the ``send_*`` methods and ``drop_slow``. Each
feed is a ``spread_core.subscriptions.Subscription`` (a cursor read from the database): the
consumer registers with the hub (and joins the prefix's layer group where the layer spans
processes) BEFORE the catch-up, and every delivery reads from the database after the cursor, so a
write racing with the subscribe is delivered exactly once and a lost doorbell only delays delivery
until the next one or the next heartbeat. The subscriptions of a prefix on one loop share one
reader (``_PrefixFeeds``), which hands each page to those standing at its cursor.

For the same reason a channel-layer outage (Redis restarting) does not end a subscription: joins,
leaves and the layer's receive loop wait it out (logged as it starts and ends), the heartbeats keep
delivering from the database meanwhile, and they renew the group memberships that a restarted
layer lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from channels.exceptions import StopConsumer
from channels.layers import InMemoryChannelLayer

from spread_core import process_doorbells
from spread_core.conf import spread_settings
from spread_core.fanout import DOORBELL, group_name, hub
from spread_core.paths import TopicPath
from spread_core.process_doorbells import count_group_name, per_process
from spread_core.subscriptions import Subscription, is_last_page, read_after
from spread_core.threads import in_thread_pool
from spread_core.types import EventJSON

logger = logging.getLogger(__name__)

HEARTBEAT_STOP_TIMEOUT = 2.0
#: Longest time between two looks of the heartbeat clock at who is due (seconds).
HEARTBEAT_CLOCK_TICK = 0.25
#: Part of SEND_TIMEOUT by which a send's timeout may be longer (see ``timed_updates``).
SEND_TIMEOUT_SLACK = 0.1
DROPPED = "spread.dropped"  # a consumer's message to itself: end after dropping its client
#: Back-off of a consumer's receive from a channel layer that failed (doubling up to the max).
LAYER_RETRY_FIRST = 0.5
LAYER_RETRY_MAX = 5.0

LayerReceive = Callable[[], Awaitable[dict[str, Any]]]


class _LayerHealth:
    """Whether this process's channel layer works, as its last operation found: an outage is
    logged when it starts and when it ends, not once per consumer and heartbeat."""

    def __init__(self) -> None:
        self.down = False

    def failed(self, operation: str, exc: Exception) -> None:
        if not self.down:
            self.down = True
            logger.warning(
                "The channel layer failed (%s: %s: %s); subscribers get changes at every heartbeat"
                " until it is back",
                operation,
                type(exc).__name__,
                exc,
            )

    def works(self) -> None:
        if self.down:
            self.down = False
            logger.warning("The channel layer is back; doorbells ring again")


_layer_health = _LayerHealth()


ReadKey = tuple[str, bool, int]
Read = asyncio.Task[tuple[list[EventJSON], int]]
#: A heartbeat may reuse a read of its prefix and cursor that started this many seconds before it:
#: idle subscribers of a prefix then cost one query per interval between them, not one each.
HEARTBEAT_READ_AGE = 1.0
#: Reads in flight, and reads done within HEARTBEAT_READ_AGE, with their start times.
_recent_reads: dict[ReadKey, tuple[Read, float]] = {}


async def shared_read(subscription: Subscription, not_before: float) -> tuple[list[EventJSON], int]:
    """``read_after`` for this subscription's prefix, mode and cursor, shared with the other
    subscriptions of this process that ask the same: a doorbell wakes all the subscribers of a
    prefix at once, and they usually stand at the same cursor, so one query serves them all.

    Only a read started at or after ``not_before`` is shared: for a doorbell, the loop time when the
    caller heard it (it is rung after the commit), so the read sees everything it announced; for a
    heartbeat, up to HEARTBEAT_READ_AGE earlier (what a heartbeat finds may be that much old: it
    only catches up on doorbells that were lost).
    """
    return await asyncio.shield(shared_read_task(subscription, not_before, subscription.cursor))


def shared_read_task(subscription: Subscription, not_before: float, cursor: int) -> Read:
    """The task of ``shared_read`` from ``cursor``, started now if no usable one runs (so a caller
    can start the read of its next page before it sends the current one)."""
    key = (subscription.prefix, subscription.history, cursor)
    entry = _recent_reads.get(key)
    if entry is not None and entry[1] >= not_before and _usable(entry[0]):
        return entry[0]
    loop = asyncio.get_running_loop()
    read = in_thread_pool(read_after)
    task = loop.create_task(read(subscription.topic_prefix, cursor, history=subscription.history))
    _recent_reads[key] = (task, loop.time())
    task.add_done_callback(lambda done: loop.call_later(HEARTBEAT_READ_AGE, _forget, key, done))
    return task


def _usable(task: Read) -> bool:
    return not task.done() or (not task.cancelled() and task.exception() is None)


def _forget(key: ReadKey, task: Read) -> None:
    entry = _recent_reads.get(key)
    if entry is not None and entry[0] is task:
        del _recent_reads[key]


Page = tuple[list[EventJSON], int]  # events read after a cursor, and the cursor after them


class _PrefixFeeds:
    """Every subscription of one prefix on this event loop, as one subscriber of the hub.

    A ring reads what changed once, from the cursor the subscriptions stand at (nearly always one
    for all), and hands that page to each one standing there that is not busy delivering: pushed,
    with no read or wait of its own. The others (busy, or ``history=1``, which delivers every log
    entry) are rung to read for themselves, as every one is with ``FEED_PUSH`` off. The page is a
    read that started after the ring, so it holds everything the ring announced, exactly what the
    subscription's own read would have found; a subscription whose cursor moved meanwhile reads
    for itself instead of taking it.
    """

    def __init__(self, subscription: Subscription) -> None:
        self.prefix = subscription.prefix
        self.example = Subscription(subscription.topic_prefix)  # what shared reads are keyed on
        self.members: dict[LiveFeeds, bool] = {}  # consumer -> whether a layer group counts it
        self.uncounted_members = 0  # members no layer group counts (read from writers' threads)
        self.rung = 0
        self.unfollowed = False  # rung since the last push began
        self.heard = 0.0
        self.task: asyncio.Task[None] | None = None

    def uncounted(self) -> int:
        return self.uncounted_members

    def join(self, consumer: LiveFeeds, in_layer: bool) -> None:
        self.leave(consumer)
        self.members[consumer] = in_layer
        self.uncounted_members += not in_layer

    def leave(self, consumer: LiveFeeds) -> None:
        if consumer in self.members:
            self.uncounted_members -= not self.members.pop(consumer)

    def ring(self, iteration: int) -> None:
        """Push to the members up to the newest iteration rung. Every ring leads to a push (rings
        during one coalesce into the next): a ring at or below an earlier one is not known to be
        done, since a doorbell of another database (two nodes behind one Redis) may announce an
        iteration this one has not reached; members already past it are skipped."""
        if iteration > self.rung:
            self.rung = iteration
        self.unfollowed = True
        loop = asyncio.get_running_loop()
        self.heard = loop.time()
        if self.task is None:
            self.task = loop.create_task(self._push())

    async def _push(self) -> None:
        try:
            while self.unfollowed:
                self.unfollowed = False
                await self._push_up_to(self.rung, self.heard)
        finally:
            self.task = None

    async def _push_up_to(self, rung: int, heard: float) -> None:
        waiting: dict[int, list[LiveFeeds]] = {}
        push = spread_settings.FEED_PUSH
        for consumer in list(self.members):
            subscription = consumer.feeds.get(self.prefix)
            if consumer.closing or subscription is None or rung <= subscription.cursor:
                continue
            if push and not subscription.history and not consumer.delivery_lock.locked():
                waiting.setdefault(subscription.cursor, []).append(consumer)
            else:
                consumer.ring_feed(self.prefix, rung)
        for cursor, consumers in waiting.items():
            try:
                page = await asyncio.shield(shared_read_task(self.example, heard, cursor))
            except Exception:  # each reads for itself (and the heartbeats retry)
                page = None
            for consumer in consumers:
                if page is None:
                    consumer.ring_feed(self.prefix, rung)
                else:
                    consumer.take_pushed(self.prefix, rung, cursor, page, heard)


class _HeartbeatClock:
    """When each consumer of one event loop is due a heartbeat, every HEARTBEAT_INTERVAL from its
    first subscription: one task per loop tells them (their rings task sends it), instead of a
    sleeping task per connection, which 10,000 idle subscribers paid in memory."""

    def __init__(self) -> None:
        self.due: list[tuple[float, int, LiveFeeds]] = []  # a heap
        self.members: dict[LiveFeeds, int] = {}  # consumer -> its entry's sequence number
        self.sequence = 0
        self.task: asyncio.Task[None] | None = None

    def add(self, consumer: LiveFeeds) -> None:
        self._schedule(consumer, asyncio.get_running_loop().time() + spread_settings.HEARTBEAT_INTERVAL)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._tick())

    def discard(self, consumer: LiveFeeds) -> None:
        self.members.pop(consumer, None)  # its heap entry is skipped when it comes up

    def _schedule(self, consumer: LiveFeeds, when: float) -> None:
        self.sequence += 1
        self.members[consumer] = self.sequence
        heapq.heappush(self.due, (when, self.sequence, consumer))

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.members:
                interval = spread_settings.HEARTBEAT_INTERVAL
                await asyncio.sleep(min(HEARTBEAT_CLOCK_TICK, interval / 4))
                now = loop.time()
                while self.due and self.due[0][0] <= now:
                    when, sequence, consumer = heapq.heappop(self.due)
                    if self.members.get(consumer) != sequence:
                        continue  # discarded, or scheduled again since
                    self._schedule(consumer, max(when + interval, now))
                    consumer.heartbeat_due()
        finally:
            self.task = None
            self.due = [entry for entry in self.due if self.members.get(entry[2]) == entry[1]]
            heapq.heapify(self.due)


_heartbeat_clocks: dict[asyncio.AbstractEventLoop, _HeartbeatClock] = {}


def _heartbeat_clock() -> _HeartbeatClock:
    loop = asyncio.get_running_loop()
    clock = _heartbeat_clocks.get(loop)
    if clock is None:
        clock = _heartbeat_clocks[loop] = _HeartbeatClock()
    return clock


#: The ``_PrefixFeeds`` of each event loop and prefix.
_prefix_feeds: dict[tuple[asyncio.AbstractEventLoop, str], _PrefixFeeds] = {}


def _join_prefix_feeds(consumer: LiveFeeds, subscription: Subscription) -> None:
    key = (asyncio.get_running_loop(), subscription.prefix)
    feeds = _prefix_feeds.get(key)
    if feeds is None:
        feeds = _prefix_feeds[key] = _PrefixFeeds(subscription)
        hub.add_on_loop(feeds)
    feeds.join(consumer, consumer.layer_spans_processes)


def _leave_prefix_feeds(consumer: LiveFeeds, prefix: str) -> None:
    key = (asyncio.get_running_loop(), prefix)
    feeds = _prefix_feeds.get(key)
    if feeds is None:
        return
    feeds.leave(consumer)
    if not feeds.members:
        del _prefix_feeds[key]
        hub.discard_on_loop(feeds)


class LiveFeeds:
    """Mixin for Channels consumers: the feeds of one connection."""

    channel_layer: Any
    channel_name: str

    # Channel layer --------------------------------------------------------------------------------
    # AsyncConsumer.__call__ sets ``channel_receive`` to the layer's receive of this consumer's
    # channel and ends the consumer with an unhandled error if that ever raises. The setter keeps
    # the layer's receive and Channels gets ``receive_doorbells``, which outlives an outage.
    @property
    def channel_receive(self) -> LayerReceive:
        return self.receive_doorbells

    @channel_receive.setter
    def channel_receive(self, receive: LayerReceive) -> None:
        self._layer_receive = receive

    async def receive_doorbells(self) -> dict[str, Any]:
        """The next message from the channel layer; while the layer fails, retry with back-off."""
        delay = LAYER_RETRY_FIRST
        while True:
            try:
                message = await self._layer_receive()
            except Exception as exc:  # the layer is down: heartbeats deliver meanwhile
                _layer_health.failed("receive", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, LAYER_RETRY_MAX)
            else:
                _layer_health.works()
                return message

    def layer_group(self, prefix: str) -> str:
        """The layer group this consumer joins for ``prefix``: the one writes ring, or with
        doorbells one per process, the one that counts it (its loop hears the doorbells)."""
        return count_group_name(prefix) if per_process() else group_name(prefix)

    async def join(self, prefix: str) -> None:
        """Join (or renew) the prefix's group; during a layer outage the next heartbeat retries."""
        try:
            if per_process():
                process_doorbells.listen(self.channel_layer)
            await self.channel_layer.group_add(self.layer_group(prefix), self.channel_name)
        except Exception as exc:
            _layer_health.failed("group_add", exc)
        else:
            _layer_health.works()

    async def leave(self, prefix: str) -> None:
        """Leave the prefix's group; during a layer outage the membership expires by itself."""
        try:
            await self.channel_layer.group_discard(self.layer_group(prefix), self.channel_name)
        except Exception as exc:
            _layer_health.failed("group_discard", exc)

    def init_feeds(self) -> None:
        self.feeds: dict[str, Subscription] = {}
        self.batch = False  # events go out many to a frame (``send_updates``), not one each
        self.delivery_lock = asyncio.Lock()
        self.heartbeat_scheduled = False
        self._heartbeat_due = False
        self.rings_task: asyncio.Task[None] | None = None
        self._rung: dict[str, int] = {}  # prefix -> newest iteration rung, not yet followed
        #: prefix -> (iteration to deliver up to, cursor read from, page, loop time of the ring)
        self._pushed: dict[str, tuple[int, int, Page, float]] = {}
        self._heard = 0.0  # loop time of the latest ring
        self._bell = asyncio.Event()
        self.closing = False
        self.dropped = False

    @property
    def layer_spans_processes(self) -> bool:
        """Whether doorbells of other processes' writes come through the channel layer (Redis):
        this process's own writes ring its consumers directly (``fanout.hub``), and an in-memory
        layer reaches no other process, so then its groups are not joined at all."""
        return self.channel_layer is not None and not isinstance(self.channel_layer, InMemoryChannelLayer)

    # Transport ------------------------------------------------------------------------------------
    async def send_update(self, event: EventJSON) -> None:
        raise NotImplementedError("LiveFeeds consumers must implement send_update()")

    async def send_updates(self, events: list[EventJSON]) -> None:
        raise NotImplementedError("LiveFeeds consumers must implement send_updates()")

    async def send_synced(self, iteration: int, reset: bool) -> None:
        raise NotImplementedError("LiveFeeds consumers must implement send_synced()")

    async def send_heartbeat(self, iteration: int) -> None:
        raise NotImplementedError("LiveFeeds consumers must implement send_heartbeat()")

    async def drop_slow(self, reason: str) -> None:
        raise NotImplementedError("LiveFeeds consumers must implement drop_slow()")

    # Feeds ----------------------------------------------------------------------------------------
    async def add_feed(self, prefix: TopicPath, since: int, history: bool) -> None:
        """Join the prefix's group, send the catch-up, then ``synced``; live events follow."""
        subscription = Subscription(prefix, since, history=history)
        self.feeds[subscription.prefix] = subscription
        _join_prefix_feeds(self, subscription)  # rung from here on: before the catch-up reads
        if self.layer_spans_processes:
            await self.join(subscription.prefix)
        self.start_following_rings()
        reset = await in_thread_pool(subscription.reset_if_ahead)()
        if await self.deliver(subscription):
            await self.timed(self.send_synced(subscription.cursor, reset))
        self.start_heartbeat()

    async def remove_feed(self, prefix: str) -> bool:
        subscription = self.feeds.pop(prefix, None)
        if subscription is None:
            return False
        subscription.closed = True
        _leave_prefix_feeds(self, prefix)
        if self.layer_spans_processes:
            await self.leave(prefix)
        return True

    async def remove_all_feeds(self) -> None:
        """Stop the heartbeats (unless called from them: they stop on ``closing``) and leave
        every group."""
        self.closing = True
        self._bell.set()  # the rings task stops on ``closing``
        if self.heartbeat_scheduled:
            _heartbeat_clock().discard(self)
        task, self.rings_task = self.rings_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            # A cancelled send may surface as the transport's own error instead of CancelledError;
            # the loop stops on ``closing`` either way, and this never waits long.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, HEARTBEAT_STOP_TIMEOUT)
        for prefix in list(self.feeds):
            await self.remove_feed(prefix)

    async def deliver(
        self,
        subscription: Subscription,
        *,
        not_before: float | None = None,
        pushed: tuple[int, Page] | None = None,
    ) -> bool:
        """Send every event after the subscription's cursor, read by a query that started after
        ``not_before`` (default: now), starting with the ``pushed`` page if it was read from where
        the cursor stands; False when the client is gone."""
        if not_before is None:
            not_before = asyncio.get_running_loop().time()
        async with self.delivery_lock:
            page: Page | Read
            if pushed is not None and pushed[0] == subscription.cursor:
                page = pushed[1]
            else:
                page = shared_read_task(subscription, not_before, subscription.cursor)
            while not subscription.closed:
                events, cursor = page if isinstance(page, tuple) else await asyncio.shield(page)
                last = is_last_page(events)
                if not last:  # read the next page while this one goes out
                    page = shared_read_task(subscription, not_before, cursor)
                if events:
                    sent = await (
                        self.timed(self.send_updates(events)) if self.batch else self.timed_updates(events)
                    )
                    if not sent:
                        return False
                subscription.cursor = cursor
                if last:
                    return True
        return True

    async def timed(self, sending: Awaitable[None]) -> bool:
        """Await a send; drop the client if it does not take it within SEND_TIMEOUT. False when
        the client is gone (dropped, or its transport refused the message)."""
        return await self._within_send_timeout(lambda deadline: sending)

    async def timed_updates(self, events: Sequence[EventJSON]) -> bool:
        """``timed`` for ``send_update`` of each event in turn, under one timeout: renewing a
        timeout per message cost a tenth of a catch-up's time on the event loop. It is renewed once
        a tenth of SEND_TIMEOUT has gone by, so each message still gets SEND_TIMEOUT or more."""
        return await self._within_send_timeout(lambda deadline: self._send_each(events, deadline))

    async def _send_each(self, events: Sequence[EventJSON], deadline: asyncio.Timeout) -> None:
        loop = asyncio.get_running_loop()
        limit, slack = spread_settings.SEND_TIMEOUT, spread_settings.SEND_TIMEOUT * SEND_TIMEOUT_SLACK
        renewed = loop.time()
        for event in events:
            await self.send_update(event)
            now = loop.time()
            if now - renewed > slack:
                deadline.reschedule(now + limit + slack)
                renewed = now

    async def _within_send_timeout(self, send: Callable[[asyncio.Timeout], Awaitable[None]]) -> bool:
        """Run ``send`` under a timeout of SEND_TIMEOUT plus its slack (what ``_send_each``
        renews); on a timeout drop the client, on a transport error stop the feeds."""
        limit = spread_settings.SEND_TIMEOUT
        try:
            # asyncio.timeout: no task per send, unlike wait_for
            async with asyncio.timeout(limit + limit * SEND_TIMEOUT_SLACK) as deadline:
                await send(deadline)
            return True
        except TimeoutError:
            await self.drop()
        except Exception as exc:  # the transport refused: the client is gone
            logger.debug("Send to a subscriber failed: %r", exc)
            self.stop_feeds()
        return False

    def stop_feeds(self) -> None:
        self.closing = True
        for subscription in self.feeds.values():
            subscription.closed = True

    async def drop(self) -> None:
        """Disconnect a subscriber that does not take what it is sent: leave every group at
        once (writers stop counting it, doorbells stop), tell it why if its transport still
        takes a message, then end the consumer, even if its socket stays full."""
        if self.dropped:
            return
        self.dropped = True
        cursors = ", ".join(f"{prefix or '/'}: {s.cursor}" for prefix, s in self.feeds.items())
        self.stop_feeds()
        await self.remove_all_feeds()
        await self.drop_slow(f"too slow; resume from your last iteration ({cursors})")
        try:
            await self.channel_layer.send(self.channel_name, {"type": DROPPED})
        except Exception as exc:  # the consumer ends when its client goes, as it was told to
            _layer_health.failed("send", exc)

    async def spread_dropped(self, message: dict[str, Any]) -> None:
        raise StopConsumer()

    async def spread_changed(self, message: dict[str, Any]) -> None:
        """Doorbell from the layer (another process's write): the subscription reads for itself."""
        iteration = message.get("iteration", 0)
        self.ring_feed(message.get("prefix", ""), iteration if isinstance(iteration, int) else 0)

    # Rings ----------------------------------------------------------------------------------------
    def ring_feed(self, prefix: str, iteration: int) -> None:
        """Something under ``prefix`` changed at ``iteration`` (on the loop; never blocks): the
        rings task delivers it. Rings already covered by a delivery cost nothing: the cursor is
        past them."""
        subscription = self.feeds.get(prefix)
        if subscription is None or iteration <= subscription.cursor:
            return
        rung = self._rung.get(prefix, 0)
        if iteration > rung:
            self._rung[prefix] = iteration
        self._heard = asyncio.get_running_loop().time()
        self._bell.set()

    def take_pushed(self, prefix: str, rung: int, cursor: int, page: Page, heard: float) -> None:
        """A page read after ``cursor`` for every subscription of ``prefix`` standing there, for a
        ring up to ``rung`` (on the loop): the rings task sends it if the cursor is still there,
        else reads for itself."""
        if self.closing or prefix not in self.feeds:
            return
        self._pushed[prefix] = (max(rung, page[1]), cursor, page, heard)
        self._bell.set()

    def start_following_rings(self) -> None:
        if self.rings_task is None and not self.closing:
            self.rings_task = asyncio.get_running_loop().create_task(self._follow_rings())

    async def _follow_rings(self) -> None:
        """Deliver what rings announced, one consumer's subscriptions in turn. The reads start
        after the latest ring heard (rings come after their commits), so they see every write
        announced; a read that fails (the database is down) is retried by the next heartbeat."""
        while not self.closing:
            await self._bell.wait()
            self._bell.clear()
            pushed, self._pushed = self._pushed, {}
            for prefix, (iteration, cursor, page, heard) in pushed.items():
                if not await self._follow(prefix, iteration, heard, (cursor, page)):
                    return
            rung, self._rung = self._rung, {}
            heard = self._heard
            for prefix, iteration in rung.items():
                if not await self._follow(prefix, iteration, heard):
                    return
            if self._heartbeat_due and not self.closing:
                self._heartbeat_due = False
                if not await self._heartbeat():
                    return

    async def _follow(
        self, prefix: str, iteration: int, heard: float, pushed: tuple[int, Page] | None = None
    ) -> bool:
        """Deliver to the subscription of ``prefix`` if it is behind ``iteration``; False when the
        client is gone."""
        subscription = self.feeds.get(prefix)
        if self.closing or subscription is None or iteration <= subscription.cursor:
            return not self.closing
        try:
            return await self.deliver(subscription, not_before=heard, pushed=pushed)
        except Exception:
            logger.exception("Delivery of %r failed; the next heartbeat retries", prefix)
            return True

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels closes stale database connections (a hop to its shared thread) before every
        message; doorbells skip that: their database steps run in ``in_thread_pool``, which
        cleans up itself."""
        if message.get("type") == DOORBELL:
            await self.spread_changed(message)
            return
        await super().dispatch(message)  # type: ignore[misc]

    # Heartbeats -----------------------------------------------------------------------------------
    def start_heartbeat(self) -> None:
        if not self.heartbeat_scheduled:
            self.heartbeat_scheduled = True
            _heartbeat_clock().add(self)

    def heartbeat_due(self) -> None:
        """The clock says it is time (on the loop): the rings task sends the heartbeat."""
        self._heartbeat_due = True
        self._bell.set()

    async def _heartbeat(self) -> bool:
        """Deliver what doorbells may have missed, renew layer groups, then send the lowest
        cursor; False when the client is gone."""
        try:
            for prefix, subscription in list(self.feeds.items()):
                recent = asyncio.get_running_loop().time() - HEARTBEAT_READ_AGE
                if not await self.deliver(subscription, not_before=recent):
                    return False
                # Refresh the membership: layers expire group members that are not renewed,
                # and a restarted layer has lost them all.
                if self.layer_spans_processes:
                    await self.join(prefix)
            if self.feeds:
                cursor = min(subscription.cursor for subscription in self.feeds.values())
                if not await self.timed(self.send_heartbeat(cursor)):
                    return False
        except Exception:
            if self.closing:  # the client went away while we were sending
                return False
            logger.exception("Heartbeat failed; the next one retries")
        return True
