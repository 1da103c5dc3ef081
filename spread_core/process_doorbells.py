"""Doorbells between node processes that share a channel layer (Redis): one layer message per
commit to each process, not one per subscriber.

Each event loop that has websocket or SSE subscribers in a layer spanning processes keeps one
layer channel, a member of ``PROCESS_GROUP`` (renewed every ``HEARTBEAT_INTERVAL``). A commit
sends that group one message carrying the newest iteration of every prefix it changed; each loop
rings its own subscribers of those prefixes (``fanout.hub``), as a write of its own process
does, and skips the messages of its own process (the hub rang them already). Subscribers are
counted for propagation reports by their membership of ``count_group_name(prefix)``, which
nobody sends to. A lost message costs latency, never data: subscribers read from the database
by iteration, and their heartbeats read too (``SPREAD["LAYER_DOORBELLS"]``, docs/realtime.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from typing import Any

from .conf import spread_settings

logger = logging.getLogger(__name__)

PROCESS_GROUP = "spread.processes"
PROCESS_DOORBELL = "spread.changed.under"
#: Who sent a doorbell: this process (its own loops were rung by the hub, not by the layer).
PROCESS_ID = uuid.uuid4().hex
#: Back-off of a loop's receive from a channel layer that failed (doubling up to the max).
RETRY_FIRST, RETRY_MAX = 0.5, 5.0


def per_process() -> bool:
    """Whether doorbells between processes go one per process (else one per subscriber)."""
    return bool(spread_settings.LAYER_DOORBELLS == "process")


def count_group_name(prefix: str) -> str:
    """The layer group whose members are the subscribers of ``prefix`` (counted, never sent to)."""
    return "spread.n." + hashlib.sha1(prefix.encode("ascii")).hexdigest()


def doorbell(newest: dict[str, int]) -> dict[str, Any]:
    return {"type": PROCESS_DOORBELL, "newest": newest, "from": PROCESS_ID}


def rung_prefixes(message: dict[str, Any]) -> dict[str, int]:
    """The prefixes and iterations of another process's doorbell ({} for this process's own, or
    one not shaped as ``doorbell`` makes it)."""
    newest = message.get("newest")
    if message.get("from") == PROCESS_ID or not isinstance(newest, dict):
        return {}
    return {p: i for p, i in newest.items() if isinstance(p, str) and isinstance(i, int)}


class LoopDoorbells:
    """The layer channel of one event loop, ringing that loop's subscribers."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if not self.tasks:
            self.tasks = [asyncio.ensure_future(self._run())]

    async def _run(self) -> None:
        channel = await self._channel()
        renewal = asyncio.ensure_future(self._renew(channel))
        self.tasks.append(renewal)
        try:
            await self._receive(channel)
        finally:
            renewal.cancel()

    async def _channel(self) -> str:
        delay = RETRY_FIRST
        while True:
            try:
                # The layer's default prefix: channels-redis receives every channel of a process
                # through one Redis list per prefix, with one receiver at a time.
                return str(await self.layer.new_channel())
            except Exception as exc:
                logger.warning("No layer channel for doorbells (%s: %s); retrying", type(exc).__name__, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    async def _renew(self, channel: str) -> None:
        """Join the group, again every heartbeat interval: a restarted layer forgot it, and a
        process that died drops out after the layer's group expiry."""
        while True:
            with contextlib.suppress(Exception):  # the layer is down: the next round retries
                await self.layer.group_add(PROCESS_GROUP, channel)
            await asyncio.sleep(spread_settings.HEARTBEAT_INTERVAL)

    async def _receive(self, channel: str) -> None:
        from .fanout import hub

        delay = RETRY_FIRST
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # the layer is down: heartbeats deliver meanwhile
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            delay = RETRY_FIRST
            newest = rung_prefixes(message)
            if newest:
                hub.ring_running_loop(newest)


_loops: dict[asyncio.AbstractEventLoop, LoopDoorbells] = {}


def listen(layer: Any) -> None:
    """Make sure the running loop hears other processes' doorbells (call on that loop)."""
    loop = asyncio.get_running_loop()
    doorbells = _loops.get(loop)
    if doorbells is None:
        doorbells = _loops[loop] = LoopDoorbells(layer)
    doorbells.start()
