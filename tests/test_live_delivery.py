"""``LiveFeeds.deliver`` over real database reads, pages small enough to need many: every event
after the cursor once, in order, the next page read while one is sent, the cursor left at the
head; a pushed first page is sent only when it was read from where the cursor stands."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from spread_api.live import LiveFeeds
from spread_core import api, subscriptions
from spread_core.iteration import current_iteration
from spread_core.subscriptions import Subscription
from spread_core.types import EventJSON


class RecordingFeeds(LiveFeeds):
    """A consumer without a transport: what it would send, in order."""

    channel_layer = None

    def __init__(self) -> None:
        self.init_feeds()
        self.sent: list[Any] = []

    async def send_update(self, event: EventJSON) -> None:
        self.sent.append(event)

    async def send_updates(self, events: list[EventJSON]) -> None:
        self.sent.append(list(events))


def write(count: int, prefix: str = "f") -> list[int]:
    return [api.post(f"{prefix}/t{index:02d}", f"v{index}".encode())["iteration"] for index in range(count)]


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subscriptions, "PULL_BATCH", 3)


@pytest.mark.django_db(transaction=True)
async def test_a_delivery_of_many_pages_sends_every_event_once_in_order_and_ends_at_the_head() -> None:
    iterations = await sync_to_async(write)(10)
    await sync_to_async(write)(2, prefix="other")  # after them, not under the prefix
    feeds = RecordingFeeds()
    subscription = Subscription("f")
    assert await feeds.deliver(subscription)
    assert [event["iteration"] for event in feeds.sent] == iterations
    assert subscription.cursor == await sync_to_async(current_iteration)()

    feeds.batch = True  # the same pages, one frame each
    batched = Subscription("f")
    assert await feeds.deliver(batched)
    assert [[event["iteration"] for event in page] for page in feeds.sent[10:]] == [
        iterations[0:3],
        iterations[3:6],
        iterations[6:9],
        iterations[9:10],
    ]


@pytest.mark.django_db(transaction=True)
async def test_a_pushed_page_is_sent_only_when_read_from_the_cursor() -> None:
    iterations = await sync_to_async(write)(4)
    feeds = RecordingFeeds()
    subscription = Subscription("f", since=iterations[1])
    stale: Any = (iterations[0], ([{"iteration": -1}], iterations[1]))  # read from elsewhere
    assert await feeds.deliver(subscription, pushed=stale)
    assert [event["iteration"] for event in feeds.sent] == iterations[2:]  # read for itself

    fresh = Subscription("f", since=iterations[3])
    page: Any = ([{"iteration": iterations[3] + 100}], iterations[3] + 100)
    assert await feeds.deliver(fresh, pushed=(iterations[3], page))
    assert feeds.sent[-1] == {"iteration": iterations[3] + 100}  # the page as it was handed
    assert fresh.cursor == iterations[3] + 100
