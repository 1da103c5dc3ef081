"""Read-through (``SPREAD["READ_THROUGH"]``): on a local miss for a path this node does not
replicate, fetch the value from a peer that holds it. The value is passed on, not stored: a node
keeps only the prefixes it asked for."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from ..conf import spread_settings
from ..models import Peer
from ..paths import TopicPath, covers_canonical
from .status import peer_prefixes

logger = logging.getLogger(__name__)

#: Headers of the peer's answer passed on to the client (its iteration is the peer's, not ours).
FORWARDED_HEADERS = ("content-type", "content-length", "etag", "from", "x-spread-etag", "x-spread-sha256")
READ_BLOCK = 64 * 1024


@dataclass
class RemoteValue:
    """A peer's streamed answer for a path: its headers, then its bytes (closes when done)."""

    peer_url: str
    response: httpx.Response
    client: httpx.Client

    @property
    def headers(self) -> dict[str, str]:
        forwarded = {
            name: value for name, value in self.response.headers.items() if name in FORWARDED_HEADERS
        }
        return {**forwarded, "X-Spread-Read-Through": self.peer_url}

    def chunks(self) -> Iterator[bytes]:
        try:
            yield from self.response.iter_bytes(READ_BLOCK)
        finally:
            self.close()

    def close(self) -> None:
        self.response.close()
        self.client.close()


def candidates(path: TopicPath) -> list[Peer]:
    """Peers to ask: every enabled peer, unless this node replicates the path (then a local miss
    is the answer: the path is held here)."""
    peers = list(Peer.objects.filter(enabled=True))
    if any(covers_canonical(prefix, path.canonical) for peer in peers for prefix in peer_prefixes(peer)):
        return []
    return peers


def fetch(path: TopicPath) -> RemoteValue | None:
    """The first peer's answer with a value at ``path``; None when read-through is off or no
    peer has one (unreachable peers are skipped and logged)."""
    if not spread_settings.READ_THROUGH:
        return None
    for peer in candidates(path):
        client = httpx.Client(timeout=spread_settings.READ_THROUGH_TIMEOUT)
        try:
            request = client.build_request(
                "GET", f"{peer.url}raw/{path.canonical}", headers={"Authorization": f"Bearer {peer.token}"}
            )
            response = client.send(request, stream=True)
        except httpx.HTTPError as exc:
            logger.warning("Read-through from %s failed: %r", peer.url, exc)
            client.close()
            continue
        if response.status_code == httpx.codes.OK:
            return RemoteValue(peer.url, response, client)
        response.close()
        client.close()
    return None
