"""The in-memory channel layer with a periodic sweep (``spread_core.layers``): the same behaviour
as Channels' own, without sweeping every channel on every receive."""

from __future__ import annotations

import asyncio

from channels.layers import get_channel_layer

from spread_core import layers
from spread_core.layers import InMemoryChannelLayer


def test_the_demo_settings_use_it() -> None:
    assert isinstance(get_channel_layer(), InMemoryChannelLayer)


async def test_a_group_message_reaches_every_member_once_as_its_own_copy() -> None:
    layer = InMemoryChannelLayer()
    members = [await layer.new_channel() for _ in range(3)]
    outsider = await layer.new_channel()
    for channel in members:
        await layer.group_add("g", channel)
    await layer.group_send("g", {"type": "ring", "data": {"n": 1}})
    received = [await asyncio.wait_for(layer.receive(channel), 1) for channel in members]
    assert received == [{"type": "ring", "data": {"n": 1}}] * 3
    received[0]["data"]["n"] = 2  # a member changing its message changes nobody else's
    assert received[1]["data"]["n"] == 1
    await layer.send(outsider, {"type": "probe"})
    assert await asyncio.wait_for(layer.receive(outsider), 1) == {"type": "probe"}  # nothing else queued


async def test_a_full_member_misses_the_message_and_the_others_get_it() -> None:
    layer = InMemoryChannelLayer(capacity=1)
    full, free = await layer.new_channel(), await layer.new_channel()
    for channel in (full, free):
        await layer.group_add("g", channel)
    await layer.send(full, {"type": "first"})
    await layer.group_send("g", {"type": "second"})
    assert await asyncio.wait_for(layer.receive(full), 1) == {"type": "first"}
    assert await asyncio.wait_for(layer.receive(free), 1) == {"type": "second"}


async def test_expired_messages_and_memberships_are_swept_at_most_once_per_interval() -> None:
    layer = InMemoryChannelLayer(expiry=0, group_expiry=0)  # everything expires at once
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    layer._clean_expired()  # the first sweep runs
    await layer.send(channel, {"type": "stale"})
    await asyncio.sleep(0.01)  # past its expiry
    layer._clean_expired()  # within the interval: no sweep, the stale message stays
    assert channel in layer.channels
    layer._next_sweep -= layers.SWEEP_INTERVAL  # the interval has passed
    layer._clean_expired()  # swept: the message is gone and the channel left its group
    assert channel not in layer.channels
    assert channel not in layer.groups.get("g", {})
