"""The state of this node's peer links, as the status endpoint and the admin show it."""

from __future__ import annotations

from typing import Any

from ..conf import spread_settings
from ..iteration import current_iteration
from ..models import Peer
from . import apply
from .session import cursor_key


def link_cursor_name(url: str) -> str:
    return f"out:{url}"


def peer_prefixes(peer: Peer) -> list[str]:
    return list(peer.prefixes) if peer.prefixes else [""]


def peer_cursor(peer: Peer) -> int:
    """The iteration of the peer's log applied here for this link's prefixes."""
    return apply.cursor(cursor_key(link_cursor_name(peer.url), peer_prefixes(peer)))


def link_status() -> dict[str, Any]:
    return {
        "node": spread_settings.NODE_NAME,
        "iteration": current_iteration(),
        "peers": [
            {
                "url": peer.url,
                "prefixes": peer_prefixes(peer),
                "enabled": peer.enabled,
                "remote_node": peer.remote_node,
                "connected": peer.connected,
                "cursor": peer_cursor(peer),
                "resumed_from": peer.resumed_from,
                "entries_sent": peer.entries_sent,
                "entries_received": peer.entries_received,
                "lag_events": peer.lag_events,
                "lag_seconds": peer.lag_seconds,
                "last_error": peer.last_error,
                "last_seen": peer.last_seen,
            }
            for peer in Peer.objects.all()
        ],
    }
