"""How a prefix's shared reader (``spread_api.live._PrefixFeeds``) hands out a ring: one read per
cursor the idle subscriptions stand at, its page to each of them; a ring of their own to those
that are busy, replay the log (``history=1``) or whose read failed; nothing to those past it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.test import override_settings

from spread_api import live
from spread_core.subscriptions import Subscription

from .blob_stores import spread_with


class FakeConsumer:
    """What ``_PrefixFeeds`` uses of a consumer, recording what it was handed."""

    def __init__(self, cursor: int, *, history: bool = False, busy: bool = False) -> None:
        subscription = Subscription("p", cursor, history=history)
        self.feeds = {"p": subscription}
        self.delivery_lock = asyncio.Lock()
        self.busy = busy
        self.closing = False
        self.rung: list[int] = []
        self.pushed: list[tuple[int, int, Any]] = []

    def ring_feed(self, prefix: str, iteration: int) -> None:
        self.rung.append(iteration)

    def take_pushed(self, prefix: str, rung: int, cursor: int, page: Any, heard: float) -> None:
        self.pushed.append((rung, cursor, page))


def feeds_of(consumers: list[FakeConsumer]) -> live._PrefixFeeds:
    feeds = live._PrefixFeeds(Subscription("p"))
    for consumer in consumers:
        feeds.join(consumer, False)  # type: ignore[arg-type]
    return feeds


async def ring(feeds: live._PrefixFeeds, consumers: list[FakeConsumer], iteration: int) -> None:
    for consumer in consumers:
        if consumer.busy:
            await consumer.delivery_lock.acquire()
    feeds.ring(iteration)
    assert feeds.task is not None
    await feeds.task


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The cursors read from; a read from cursor 13 fails."""
    started: list[int] = []

    def read_task(subscription: Subscription, not_before: float, cursor: int) -> asyncio.Future[Any]:
        started.append(cursor)
        future = asyncio.get_running_loop().create_future()
        if cursor == 13:
            future.set_exception(OSError("database down"))
        else:
            future.set_result(([{"iteration": cursor + 1}], cursor + 1))
        return future

    monkeypatch.setattr(live, "shared_read_task", read_task)
    return started


async def test_one_read_per_cursor_and_its_page_to_each_idle_subscription_there(reads: list[int]) -> None:
    at_10 = [FakeConsumer(10), FakeConsumer(10)]
    at_12 = FakeConsumer(12)
    busy, history, past = FakeConsumer(10, busy=True), FakeConsumer(10, history=True), FakeConsumer(20)
    consumers = [*at_10, at_12, busy, history, past]
    await ring(feeds_of(consumers), consumers, 15)

    assert sorted(reads) == [10, 12]  # not one per subscription
    for consumer in at_10:
        assert (consumer.pushed, consumer.rung) == ([(15, 10, ([{"iteration": 11}], 11))], [])
    assert (at_12.pushed, at_12.rung) == ([(15, 12, ([{"iteration": 13}], 13))], [])
    for consumer in (busy, history):  # they read for themselves
        assert (consumer.pushed, consumer.rung) == ([], [15])
    assert (past.pushed, past.rung) == ([], [])


async def test_a_failed_read_rings_its_subscriptions_to_read_for_themselves(reads: list[int]) -> None:
    failing, fine = FakeConsumer(13), FakeConsumer(10)
    await ring(feeds_of([failing, fine]), [failing, fine], 15)
    assert (failing.pushed, failing.rung) == ([], [15])
    assert fine.pushed and not fine.rung


async def test_with_feed_push_off_every_subscription_reads_for_itself(reads: list[int]) -> None:
    consumers = [FakeConsumer(10), FakeConsumer(10)]
    with override_settings(SPREAD=spread_with(FEED_PUSH=False)):
        await ring(feeds_of(consumers), consumers, 15)
    assert reads == []
    assert [(c.pushed, c.rung) for c in consumers] == [([], [15]), ([], [15])]


async def test_rings_during_a_push_are_followed_up_to_the_newest(reads: list[int]) -> None:
    consumer = FakeConsumer(10)
    feeds = feeds_of([consumer])
    feeds.ring(11)
    feeds.ring(12)  # before the push task ran: one pass, up to 12
    assert feeds.task is not None
    await feeds.task
    assert [rung for rung, _, _ in consumer.pushed] == [12]
    assert feeds.task is None and feeds.rung == 12 and not feeds.unfollowed


def test_subscriber_counts_leave_out_those_a_layer_group_counts() -> None:
    feeds = live._PrefixFeeds(Subscription("p"))
    first, second, third = object(), object(), object()
    feeds.join(first, False)  # type: ignore[arg-type]
    feeds.join(second, True)  # type: ignore[arg-type]
    feeds.join(third, False)  # type: ignore[arg-type]
    feeds.join(third, False)  # type: ignore[arg-type]  # joining again counts once
    assert feeds.uncounted() == 2
    feeds.leave(first)  # type: ignore[arg-type]
    feeds.leave(first)  # type: ignore[arg-type]
    assert feeds.uncounted() == 1
