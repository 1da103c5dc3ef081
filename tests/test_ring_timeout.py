"""A write's doorbells through the channel layer are bounded (``fanout.RING_TIMEOUT``): a layer
that hangs (Redis frozen) neither fails nor holds up a committed write."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from spread_core import fanout
from spread_core.layers import InMemoryChannelLayer


class FrozenLayer(InMemoryChannelLayer):
    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await asyncio.sleep(3600)


def test_announce_returns_within_ring_timeout_when_the_layer_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = FrozenLayer()
    layer.groups = {fanout.group_name("frozen"): {"specific.inmemory!x": time.time()}}
    monkeypatch.setattr(fanout, "get_channel_layer", lambda: layer)
    monkeypatch.setattr(fanout, "RING_TIMEOUT", 0.2)
    started = time.monotonic()
    report = fanout.announce("frozen/topic", 7)
    assert time.monotonic() - started < 5  # bounded, not an hour
    assert {"path": "frozen", "subscribers": 1} in report  # the size was read before the hang
