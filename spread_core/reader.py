"""Reading values: the current event of a topic and a byte stream that follows an upload in progress.

``ValueReader.poll`` is the one synchronous step (a read from the blob store, and a short query
when it found nothing new); iterating the reader in a thread calls it directly and waits between
polls, iterating it asynchronously calls it through ``database_sync_to_async``. A reader of an
upload that breaks off gets ``UploadAborted`` instead of a truncated value.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from channels.db import database_sync_to_async
from django.db import transaction

from . import store
from .blobs import blob_store, upload_progress
from .blobs.base import BlobCursor
from .cache import MISS, Miss, value_cache
from .conf import spread_settings
from .exceptions import UploadAborted
from .models import Event, Topic, path_hash
from .paths import TopicPath

#: Longest wait of a reader between two looks at an upload in progress (seconds).
MAX_POLL_INTERVAL = 1.0


def current_event(path: TopicPath) -> Event | None:
    """The topic's current value (None when it has none or is deleted); an upload whose writer is
    gone is aborted on sight. Served from the process's value cache when it holds the topic
    (validated first: see ``spread_core.cache``); inside a transaction, always from the store
    (the transaction may see its own uncommitted writes)."""
    if not value_cache.enabled() or transaction.get_connection().in_atomic_block:
        return _visible(_stored_current(path))
    cached = cached_current(path)
    if not isinstance(cached, Miss):
        return cached
    canonical = path.canonical
    stripe = value_cache.stripe_version(canonical)
    topic = _topic_with_current(canonical)
    event = _live_current(topic)
    value_cache.fill(canonical, event, topic.changed if topic else 0, stripe)
    return _visible(event)


def cached_current(path: TopicPath) -> Event | Miss | None:
    """``current_event`` from the value cache alone (validated first), or ``MISS``."""
    if not value_cache.enabled():
        return MISS
    value_cache.validate()
    return _looked_up(path)


async def acached_current(path: TopicPath) -> Event | Miss | None:
    """``cached_current`` for a coroutine (see ``ValueCache.avalidate``)."""
    if not value_cache.enabled():
        return MISS
    await value_cache.avalidate()
    return _looked_up(path)


def _looked_up(path: TopicPath) -> Event | Miss | None:
    entry = value_cache.lookup(path.canonical)
    return MISS if entry is None else _visible(entry.event)


def _topic_with_current(canonical: str) -> Topic | None:
    return Topic.objects.select_related("current").filter(path_hash=path_hash(canonical)).first()


def _live_current(topic: Topic | None) -> Event | None:
    """``topic``'s current event with its topic attached, after aborting an expired upload (then
    the topic's new current one)."""
    for _ in range(2):
        if topic is None or topic.current is None:
            return None
        event = topic.current
        if store.lease_expired(event):
            store.abort_upload(event, "upload lease expired (writer gone)")
            topic = _topic_with_current(topic.path)
            continue
        event.topic = topic
        return event
    return None


def _stored_current(path: TopicPath) -> Event | None:
    return _live_current(_topic_with_current(path.canonical))


def _visible(event: Event | None) -> Event | None:
    """A tombstone is no value."""
    return None if event is None or event.deleted else event


def topic_at(path: TopicPath) -> Topic | None:
    return Topic.objects.filter(path_hash=path_hash(path.canonical)).first()


def event_as_of(topic: Topic, *, at: int | None = None, at_date: int | None = None) -> Event | None:
    """The event that was ``topic``'s value as of iteration ``at`` (this node's log) or as of event
    date ``at_date`` (the merge clock); None when it had no value then (none yet, or a tombstone)."""
    candidates = Event.objects.all()
    if at is not None:
        candidates = candidates.as_of(at)
    if at_date is not None:
        candidates = candidates.as_of_date(at_date)
    event = store.best_event(topic, candidates)
    if event is None or event.deleted:
        return None
    event.topic = topic
    return event


class ValueReader:
    """The bytes of one event's value, following the upload while it is still arriving; with
    ``byte_range`` (start, stop: stop exclusive), only those bytes of a complete value.

    A reader of an upload in progress waits for its bytes between looks: the writer's process
    wakes it (``blobs.upload_progress``) when bytes are stored, the upload completes or aborts;
    a writer elsewhere does not, so the wait ends after ``READ_POLL_INTERVAL`` too, doubled
    after each look that found nothing, up to ``MAX_POLL_INTERVAL``.
    """

    def __init__(self, event: Event, byte_range: tuple[int, int] | None = None) -> None:
        self.event = event
        self.done = False
        self.byte_range = byte_range
        self.poll_interval: float = spread_settings.READ_POLL_INTERVAL
        self._wait = self.poll_interval
        start = 0 if byte_range is None else byte_range[0]
        self._left: int | None = None if byte_range is None else byte_range[1] - start
        self._cursor: BlobCursor | None = blob_store().cursor(event, start) if event.is_blob else None

    def poll(self) -> list[bytes]:
        """Return the bytes available now; set ``done`` once the value is fully read."""
        try:
            chunks = self._poll()
        except BaseException:
            self.close()
            raise
        if self._left is not None:
            chunks = self._trimmed(chunks)
            self.done = self.done or self._left == 0
        if self.done:
            self.close()
        return chunks

    def _trimmed(self, chunks: list[bytes]) -> list[bytes]:
        result = []
        for chunk in chunks:
            assert self._left is not None
            chunk = chunk[: self._left]
            self._left -= len(chunk)
            if chunk:
                result.append(chunk)
        return result

    def _poll(self) -> list[bytes]:
        event = self.event
        if self._cursor is None:
            self.done = True
            value = bytes(event.value or b"")
            return [value[self.byte_range[0] :] if self.byte_range else value]
        chunks = self._cursor.take()
        if chunks or event.complete:
            self.done = not chunks
            return chunks
        state = Event.objects.get(pk=event.pk)
        if state.complete:
            event.complete, event.size = True, state.size
            chunks = self._cursor.take()  # the last bytes may have landed just before completion
            self.done = not chunks
            return chunks
        if state.aborted:
            raise UploadAborted()
        if store.lease_expired(state):
            store.abort_upload(state, "upload lease expired (writer gone)")
            raise UploadAborted()
        return []

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()

    def _waited(self, found: bool, rung: bool) -> None:
        """The next wait: short again after progress, doubled after a look that found nothing."""
        if found or rung:
            self._wait = self.poll_interval
        else:
            self._wait = min(self._wait * 2, MAX_POLL_INTERVAL)

    def __iter__(self) -> Iterator[bytes]:
        try:
            while not self.done:
                with upload_progress.watch(self.event.pk) as watch:
                    chunks = self.poll()
                    rung = False
                    if not chunks and not self.done:
                        rung = watch.wait(self._wait)
                self._waited(bool(chunks), rung)
                yield from chunks
        finally:
            self.close()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        poll = database_sync_to_async(self.poll)
        try:
            while not self.done:
                with upload_progress.watch(self.event.pk) as watch:
                    chunks = await poll()
                    rung = False
                    if not chunks and not self.done:
                        rung = await watch.await_ring(self._wait)
                self._waited(bool(chunks), rung)
                for chunk in chunks:
                    yield chunk
        finally:
            self.close()

    def read(self) -> bytes:
        return b"".join(self)

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self])
