"""Channels' in-memory channel layer, made linear in the number of subscribers.

``channels.layers.InMemoryChannelLayer`` sweeps every channel and every group membership for
expired entries on each ``receive()`` and each ``group_send()``, and ``group_send`` starts a task
per member. With N websockets of one process waiting in ``receive()``, one doorbell rung to all N
then costs O(N²): at 1,000 subscribers the sweep took more of the node's CPU than delivering the
updates. This subclass sweeps at most once per ``SWEEP_INTERVAL`` seconds (an expired message may
be delivered up to that much later than its expiry) and puts a group message on each member's
queue directly. Everything else, the API and the semantics included, is Channels' own.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer

#: Seconds between two sweeps for expired messages and group memberships.
SWEEP_INTERVAL = 1.0


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next_sweep = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        super()._clean_expired()

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, {})):
            # As in Channels, a member whose queue is full misses this message. send() never
            # waits: a full queue raises at once.
            with contextlib.suppress(ChannelFull):
                await self.send(channel, message)
