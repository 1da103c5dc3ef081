"""The `SPREAD` settings dict, read through one object with documented defaults.

Users write, in their Django settings::

    SPREAD = {"NODE_NAME": "edge-1", "INLINE_MAX": 8192}

and code reads ``spread_settings.INLINE_MAX``. Unknown keys raise, dotted paths listed in
``IMPORT_STRINGS`` are imported on first access, and the cache is dropped on Django's
``setting_changed`` signal so ``override_settings(SPREAD=...)`` works in tests.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

T = TypeVar("T")

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

DEFAULTS: dict[str, Any] = {
    # Name of this node: the origin of in-process writes, unique in a cluster.
    "NODE_NAME": "spread",
    # Values up to this many bytes are stored inline on the event; larger ones as blob chunks.
    "INLINE_MAX": 4096,
    # Size of one stored blob chunk.
    "CHUNK_SIZE": 256 * KIB,
    # A client's write dated more than this many seconds ahead of the node's clock is refused
    # (400 date_too_far_ahead): under last-writer-wins it would beat every later write until
    # then. None accepts any date. Only dates given over HTTP (X-Spread-Etag) are checked.
    "MAX_FUTURE_SKEW": 300.0,
    # Largest accepted value; bigger uploads get 413 while streaming.
    "MAX_UPLOAD": 10 * GIB,
    # A partial chunk is stored after this many seconds even if it is not full, so readers of a
    # slow upload see its first bytes early.
    "CHUNK_FLUSH_INTERVAL": 0.2,
    # An upload that receives no byte for this long is aborted; its lease expires after it, so an
    # upload whose server died is aborted by the next reader or at the next node start.
    "UPLOAD_IDLE_TIMEOUT": 30.0,
    # How long a reader of an in-progress upload waits at most before it looks for new bytes again
    # (seconds): a writer in the same process wakes it at once, one in another process does not.
    "READ_POLL_INTERVAL": 0.05,
    # Where the bytes of blobs (values over INLINE_MAX) live: {"BACKEND": dotted path, "OPTIONS":
    # {...}}. The file store (one file per event; OPTIONS "ROOT", default beside a SQLite
    # database file, and "FSYNC") or "spread_core.blobs.database.DatabaseBlobStore" (chunk rows
    # in the node's database). See docs/data-model.md.
    "BLOB_STORE": {"BACKEND": "spread_core.blobs.files.FileBlobStore", "OPTIONS": {}},
    # Reads need a valid token when True; writes always do.
    "READ_REQUIRES_TOKEN": False,
    # POST /jwttoken hands out tokens for new anonymous device uids.
    "DEVICE_TOKENS": True,
    # Lifetime of the tokens POST /jwttoken issues (seconds).
    "DEVICE_TOKEN_LIFETIME": 30 * 24 * 3600,
    # Decides who may read and write where (see spread_api.policy).
    "ACCESS_POLICY": "spread_api.policy.TokenClaimsPolicy",
    # Value of Access-Control-Allow-Origin on the raw API and SSE.
    "CORS_ORIGIN": "*",
    # Seconds between heartbeats on websocket and SSE subscriptions.
    "HEARTBEAT_INTERVAL": 15.0,
    # Subscriptions one websocket may hold.
    "MAX_SUBSCRIPTIONS": 100,
    # A subscriber that does not take a message within this many seconds is disconnected (it
    # resumes from its last iteration); it never holds up writers or other subscribers.
    "SEND_TIMEOUT": 10.0,
    # Largest websocket frame accepted (bytes).
    "WS_MAX_FRAME": 1024 * KIB,
    # spread_node: offer websocket compression (permessage-deflate). Off by default: compressing
    # and decompressing every frame costs both ends CPU per frame and keeps zlib state per
    # connection; worth it on slow links, and for batched frames (?batch=1) of compressible JSON.
    "WS_PER_MESSAGE_DEFLATE": False,
    # How writes ring the subscribers of other node processes through a channel layer spanning
    # processes (Redis): "process", one layer message per commit to each process, which rings its
    # own subscribers; "subscriber", one message per subscriber of each changed prefix.
    "LAYER_DOORBELLS": "process",
    # Seconds between heartbeats on replication links (an idle peer's cursor advances with them).
    "REPLICATION_HEARTBEAT": 1.0,
    # How often the connector re-reads the peer table, so link changes apply without a restart.
    "PEER_POLL_INTERVAL": 1.0,
    # Longest wait between two attempts to reconnect a link (the wait doubles from 0.5 s).
    "RECONNECT_MAX_BACKOFF": 10.0,
    # Run the outgoing peer links in `spread_node` (turn off on all but one process of a node).
    "CONNECTOR": True,
    # spread_node: seconds an idle keep-alive connection is kept open. Longer than the idle
    # expiry of clients' connection pools (httpx 5 s, aiohttp 15 s), so that a client never
    # sends a request on a connection the server is closing at that moment (a reset, not an
    # answer); nginx's default is the same 75 s.
    "KEEP_ALIVE_TIMEOUT": 75.0,
    # On a local miss for a path no peer link replicates here, GET it from the peers (passed on,
    # not stored).
    "READ_THROUGH": False,
    # Seconds a read-through waits for a peer to answer.
    "READ_THROUGH_TIMEOUT": 5.0,
    # Every accepted event as JSON to: None (off), "logging" (logger "spread.events", INFO), or
    # the dotted path of a callable taking the event dict.
    "EVENT_LOG": None,
    # Concurrent writes of a process share one transaction and durable commit (group commit);
    # at most this many per commit.
    "GROUP_COMMIT": True,
    "GROUP_COMMIT_MAX": 64,
    # A batch of writes is stored with a handful of set-based statements (False: each write runs
    # its own queries inside the shared transaction, as outside a batch).
    "GROUP_COMMIT_SET_BASED": True,
    # Bytes of current values each node process keeps in memory for reads (least recently used
    # out; blobs count as metadata only); 0 switches the value cache off. See spread_core.cache.
    "CACHE_MAX_BYTES": 64 * MIB,
    # Where validating the cache needs a database query (PostgreSQL), concurrent reads on an event
    # loop share one: each read waits for a validation that started after it did (spread_core.cache).
    "CACHE_SHARED_VALIDATION": True,
    # Subscription feeds (catch-up and live) read events with plain SQL straight into event JSON
    # (spread_core.feed_reads); False reads them through the ORM's model instances.
    "FEED_PLAIN_SQL": True,
    # A ring reads what changed once per prefix and event loop and hands the page to each
    # websocket and SSE subscription standing at its cursor (False: each reads for itself,
    # sharing the query but each awaiting it). See spread_api.live.
    "FEED_PUSH": True,
    # GET, HEAD, POST and DELETE of /raw/ are answered by spread_api.lean.LeanRawMiddleware (same
    # rules, without Django's handler and middleware chain) where the node's ASGI stack uses it.
    "LEAN_PATH": True,
    # spread_node: garbage collector thresholds (None keeps Python's 700, 10, 10: with 1,000
    # websocket subscribers its collections were the tail of fan-out delays, p99 139 against 54 ms
    # at these), and whether to move what
    # start-up allocated out of the collector's sight (gc.freeze): a node holds many long-lived
    # objects, which full collections would otherwise walk again and again.
    "GC_THRESHOLDS": (50000, 20, 100),
    "GC_FREEZE": True,
    # History retention (spread_prune, the admin): None keeps everything; else a dict with
    # "KEEP_LAST" (events per topic) and/or "KEEP_SECONDS", and "ARCHIVE_DIR" (None: expired
    # events are deleted). A topic's current event is never removed.
    "RETENTION": None,
}

IMPORT_STRINGS = frozenset({"ACCESS_POLICY"})


class SpreadSettings:
    """Attribute access to ``settings.SPREAD`` merged over ``DEFAULTS``."""

    def __init__(self, defaults: dict[str, Any] | None = None) -> None:
        self.defaults = defaults or DEFAULTS
        self._cached: set[str] = set()

    def user_settings(self) -> dict[str, Any]:
        """``settings.SPREAD``, checked for unknown keys (a method: an AttributeError raised in a
        property would be swallowed by ``__getattr__``)."""
        if "_user_settings" not in self.__dict__:
            user = dict(getattr(settings, "SPREAD", {}) or {})
            unknown = sorted(set(user) - set(self.defaults))
            if unknown:
                raise AttributeError(f"Unknown SPREAD setting(s): {', '.join(unknown)}")
            self._user_settings = user
        return self._user_settings

    def __getattr__(self, attr: str) -> Any:
        if attr not in self.defaults:
            raise AttributeError(f"Invalid SPREAD setting: {attr!r}")
        value = self.user_settings().get(attr, self.defaults[attr])
        if attr in IMPORT_STRINGS and isinstance(value, str):
            value = import_string(value)
        self._cached.add(attr)
        setattr(self, attr, value)
        return value

    def reload(self) -> None:
        for attr in self._cached:
            delattr(self, attr)
        self._cached.clear()
        self.__dict__.pop("_user_settings", None)


spread_settings = SpreadSettings()

#: Functions memoised by ``per_settings``, forgotten whenever a setting changes.
_PER_SETTINGS: list[Any] = []


def per_settings(function: Callable[[], T]) -> Callable[[], T]:
    """Memoise a function of the settings alone (no arguments) until any setting changes: what
    a hot path would otherwise recompute from Django's settings on every request."""
    memoised = functools.cache(function)
    _PER_SETTINGS.append(memoised)
    return memoised


def _reload_settings(*, setting: str, **kwargs: Any) -> None:
    if setting == "SPREAD":
        spread_settings.reload()
    for memoised in _PER_SETTINGS:
        memoised.cache_clear()


setting_changed.connect(_reload_settings)
