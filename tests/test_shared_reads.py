"""Reads of subscribers are shared (``spread_api.live.shared_read``): a doorbell's read must start
after the doorbell; a heartbeat may reuse a read up to HEARTBEAT_READ_AGE old."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from spread_api import live
from spread_core.paths import TopicPath
from spread_core.subscriptions import Subscription

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_doorbell_needs_a_read_started_after_it_and_a_heartbeat_reuses_a_recent_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[int] = []

    def counting_read(prefix: Any, cursor: int, *, history: bool) -> tuple[list[Any], int]:
        reads.append(cursor)
        return [], cursor

    monkeypatch.setattr(live, "read_after", counting_read)
    loop = asyncio.get_running_loop()
    subscriptions = [
        Subscription(TopicPath.from_canonical("shared/reads"), 0, history=False) for _ in range(3)
    ]
    before = loop.time()
    await asyncio.gather(*(live.shared_read(s, before) for s in subscriptions))
    assert len(reads) == 1  # three subscribers at one cursor: one query
    await asyncio.sleep(0.01)
    await live.shared_read(subscriptions[0], loop.time() - live.HEARTBEAT_READ_AGE)
    assert len(reads) == 1  # a heartbeat takes the recent read
    await live.shared_read(subscriptions[0], loop.time())
    assert len(reads) == 2  # a doorbell heard after that read needs a new one
