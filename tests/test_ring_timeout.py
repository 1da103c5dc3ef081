"""A write's doorbells through the channel layer are bounded (``fanout.RING_TIMEOUT``): a layer
that hangs (Redis frozen) neither fails nor holds up a committed write."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from spread_core import fanout
from spread_core.layers import InMemoryChannelLayer
from spread_core.process_doorbells import count_group_name


class FrozenLayer(InMemoryChannelLayer):
    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await asyncio.sleep(3600)


@pytest.mark.parametrize("group", [fanout.group_name, count_group_name], ids=["peer-link", "subscriber"])
def test_announce_returns_within_ring_timeout_when_the_layer_hangs(
    monkeypatch: pytest.MonkeyPatch, group: Any
) -> None:
    """A member of the prefix's doorbell group (a peer link) or of its counting group (a
    subscriber of another process, rung by the one doorbell per process): both sends hang."""
    layer = FrozenLayer()
    layer.groups = {group("frozen"): {"specific.inmemory!x": time.time()}}
    monkeypatch.setattr(fanout, "get_channel_layer", lambda: layer)
    monkeypatch.setattr(fanout, "RING_TIMEOUT", 0.2)
    started = time.monotonic()
    report = fanout.announce("frozen/topic", 7)
    assert time.monotonic() - started < 5  # bounded, not an hour
    assert {"path": "frozen", "subscribers": 1} in report  # the size was read before the hang
