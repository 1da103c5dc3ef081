"""The outgoing side of replication: a ``Link`` keeps one peer's websocket up (reconnecting with
back-off) and runs a session on it; the ``Connector`` runs a link per row of the peer table and
follows changes to that table while the node runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from channels.layers import get_channel_layer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from ..conf import spread_settings
from ..exceptions import SpreadError
from ..fanout import group_name
from ..models import Peer
from ..threads import in_thread_pool
from .session import GROUP_RENEW_INTERVAL, Session, Transport, close_code, dumps
from .status import link_cursor_name, peer_prefixes

logger = logging.getLogger(__name__)

ENDPOINT = "replicate/"
FIRST_BACKOFF = 0.5
OPEN_TIMEOUT = 10.0
#: Bytes frames carry blob chunks (CHUNK_SIZE) plus a header; events frames stay well below.
MAX_FRAME = 16 * 1024 * 1024


def websocket_url(base: str) -> str:
    """``http://host:port/x/`` → ``ws://host:port/x/replicate/``."""
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((scheme, parts.netloc, path + ENDPOINT, "", ""))


class ClientTransport(Transport):
    def __init__(self, websocket: ClientConnection) -> None:
        self.websocket = websocket

    async def send_text(self, text: str) -> None:
        await self.websocket.send(text)

    async def send_bytes(self, data: bytes) -> None:
        await self.websocket.send(data)

    async def watch(self, prefixes: list[str], wake: Any) -> None:
        """Doorbells through the channel layer, like a subscriber consumer gets them."""
        layer = get_channel_layer()
        if layer is None:
            return  # no layer: heartbeats alone carry changes
        channel = await layer.new_channel()
        renewed = 0.0
        try:
            while True:
                if time.monotonic() - renewed > GROUP_RENEW_INTERVAL:
                    for prefix in prefixes:
                        await layer.group_add(group_name(prefix), channel)
                    renewed = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(layer.receive(channel), GROUP_RENEW_INTERVAL)
                    wake()
        finally:
            for prefix in prefixes:
                with contextlib.suppress(Exception):
                    await layer.group_discard(group_name(prefix), channel)


@dataclass(frozen=True)
class LinkConfig:
    pk: int
    url: str
    token: str
    prefixes: tuple[str, ...]
    remote_node: str

    @classmethod
    def of(cls, peer: Peer) -> LinkConfig:
        return cls(peer.pk, peer.url, peer.token, tuple(peer_prefixes(peer)), peer.remote_node)

    def same_link(self, other: LinkConfig) -> bool:
        return (self.url, self.token, self.prefixes) == (other.url, other.token, other.prefixes)


class Link:
    """One peer link: connect, run a session until the socket closes, wait, reconnect."""

    def __init__(self, config: LinkConfig) -> None:
        self.config = config
        self.session: Session | None = None
        self.connected = False
        self.last_error = ""

    async def run(self) -> None:
        backoff = FIRST_BACKOFF
        while True:
            try:
                await self.connect_once()
                backoff = FIRST_BACKOFF
            except asyncio.CancelledError:
                raise
            except InvalidStatus as exc:
                self.last_error = f"refused with HTTP {exc.response.status_code}: {exc.response.body[:200]!r}"
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"[:500]
            finally:
                self.connected = False
            if self.last_error:
                logger.warning("Link to %s: %s (retry in %.1f s)", self.config.url, self.last_error, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, spread_settings.RECONNECT_MAX_BACKOFF)

    async def connect_once(self) -> None:
        headers = {"Authorization": f"Bearer {self.config.token}"}
        async with connect(
            websocket_url(self.config.url),
            additional_headers=headers,
            max_size=MAX_FRAME,
            open_timeout=OPEN_TIMEOUT,
        ) as websocket:
            session = Session(
                ClientTransport(websocket),
                cursor_name=link_cursor_name(self.config.url),
                remote_node=self.config.remote_node,
                want=list(self.config.prefixes),
            )
            self.session, self.connected, self.last_error = session, True, ""
            try:
                await session.send_hello()
                async for message in websocket:
                    if isinstance(message, bytes):
                        await session.receive_bytes(message)
                    else:
                        await session.receive_text(message)
            except SpreadError as exc:
                self.last_error = f"{exc.code}: {exc.detail}"
                code = close_code(exc)
                with contextlib.suppress(Exception):
                    await websocket.send(dumps({"type": "error", "code": exc.code, "message": exc.detail}))
                await websocket.close(code, exc.detail[:120])
            finally:
                await session.stop()
            if websocket.close_code not in (None, 1000) and not self.last_error:
                self.last_error = f"closed by the peer: {websocket.close_code} {websocket.close_reason}"

    def status(self) -> dict[str, Any]:
        state = self.session.state if self.session else None
        return {
            "connected": self.connected,
            "last_error": self.last_error,
            "remote_node": state.remote_node if state and state.remote_node else self.config.remote_node,
            "resumed_from": state.resumed_from if state else 0,
            "entries_sent": state.entries_sent if state else 0,
            "entries_received": state.entries_received if state else 0,
            "lag_events": state.lag_events if state else 0,
            "lag_seconds": state.lag_seconds if state else 0.0,
            "last_seen": int(state.last_seen * 1_000_000) if state else 0,
        }


def _enabled_links() -> list[LinkConfig]:
    return [LinkConfig.of(peer) for peer in Peer.objects.filter(enabled=True)]


def _save_status(statuses: dict[int, dict[str, Any]]) -> None:
    for pk, fields in statuses.items():
        Peer.objects.filter(pk=pk).update(**fields)


class Connector:
    """Runs a ``Link`` per enabled peer row; re-reads the table every PEER_POLL_INTERVAL so that
    peers added, changed or removed (admin, ``spread_peer``, ``ensure_remote``) apply at once."""

    def __init__(self) -> None:
        self.links: dict[int, tuple[Link, asyncio.Task[None]]] = {}

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.reconcile(await in_thread_pool(_enabled_links)())
                    statuses = {pk: link.status() for pk, (link, _) in self.links.items()}
                    await in_thread_pool(_save_status)(statuses)
                except Exception:
                    logger.exception("The replication connector failed a round; the next one retries")
                await asyncio.sleep(spread_settings.PEER_POLL_INTERVAL)
        finally:
            for pk in list(self.links):
                await self.stop(pk)

    async def reconcile(self, configs: list[LinkConfig]) -> None:
        wanted = {config.pk: config for config in configs}
        for pk in list(self.links):
            if pk not in wanted or not self.links[pk][0].config.same_link(wanted[pk]):
                await self.stop(pk)
        for pk, config in wanted.items():
            if pk not in self.links:
                link = Link(config)
                self.links[pk] = (link, asyncio.ensure_future(link.run()))

    async def stop(self, pk: int) -> None:
        _, task = self.links.pop(pk)
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await in_thread_pool(_save_status)({pk: {"connected": False}})
