"""Managing peer links: the one place the peer table is written (Python API, ``spread_peer``,
admin forms use the same validation). A running node's connector picks changes up by itself."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from ..exceptions import InvalidPath, SpreadError
from ..models import Peer
from ..paths import TopicPath

URL_SCHEMES = ("http", "https")


class InvalidPeer(SpreadError):
    default_code = "invalid_peer"
    default_detail = "Invalid peer link."


def normalise_url(url: str) -> str:
    """``http(s)://host:port/[path/]`` with a trailing slash; raises ``InvalidPeer``."""
    parts = urlsplit(url.strip())
    if parts.scheme not in URL_SCHEMES or not parts.netloc or parts.query or parts.fragment:
        raise InvalidPeer(f"A peer URL is http(s)://host:port/ (got {url!r}).")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return f"{parts.scheme}://{parts.netloc}{path}"


def canonical_prefixes(prefixes: Sequence[str] | None) -> list[str]:
    """Canonical prefixes of a link; none given means everything (``[""]``)."""
    if not prefixes:
        return [""]
    try:
        return sorted({TopicPath.from_canonical(prefix.strip("/")).canonical for prefix in prefixes})
    except InvalidPath as exc:
        raise InvalidPeer(f"Invalid prefix: {exc.detail}") from exc


def ensure_remote(url: str, token: str, paths: Sequence[str] | None = None) -> Peer:
    """Create or update the link to ``url``: replicate ``paths`` (default everything) with the
    node credential ``token``. Returns the peer row; a running node connects within a second."""
    if not token or not token.strip():
        raise InvalidPeer("A peer link needs the node credential the peer issued (spread_token --node).")
    peer, _ = Peer.objects.update_or_create(
        url=normalise_url(url),
        defaults={"token": token.strip(), "prefixes": canonical_prefixes(paths), "enabled": True},
    )
    return peer


def remove_remote(url: str) -> bool:
    """Remove the link to ``url``; False when there was none. A running node disconnects it."""
    deleted, _ = Peer.objects.filter(url=normalise_url(url)).delete()
    return deleted > 0
