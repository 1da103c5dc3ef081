"""Reading values: the current event of a topic and a chunk stream that follows an upload in progress.

``ValueReader.poll`` is the one synchronous step (one short query); iterating the reader in a
thread calls it directly and sleeps between polls, iterating it asynchronously calls it through
``database_sync_to_async``. A reader of an upload that breaks off gets ``UploadAborted`` instead of
a truncated value.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

from channels.db import database_sync_to_async
from django.db import transaction
from django.db.models.functions import Length

from . import store
from .cache import MISS, Miss, value_cache
from .conf import spread_settings
from .exceptions import UploadAborted
from .models import BlobChunk, Event, Topic, path_hash
from .paths import TopicPath

CHUNKS_PER_POLL = 16


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
    ``byte_range`` (start, stop: stop exclusive), only those bytes of a complete value."""

    def __init__(self, event: Event, byte_range: tuple[int, int] | None = None) -> None:
        self.event = event
        self.next_index = 0
        self.done = False
        self.poll_interval: float = spread_settings.READ_POLL_INTERVAL
        self.byte_range = byte_range
        self._skip = 0  # bytes of the next chunk before the range
        self._left: int | None = None  # bytes of the range still to give (None: no range)

    def poll(self) -> list[bytes]:
        """Return the bytes available now; set ``done`` once the value is fully read."""
        if self.byte_range is None:
            return self._poll()
        if self._left is None:
            self._seek(*self.byte_range)
        chunks = self._trimmed(self._poll())
        self.done = self.done or self._left == 0
        return chunks

    def _seek(self, start: int, stop: int) -> None:
        """Start at the chunk holding byte ``start`` (one query of the chunks' sizes)."""
        self._left = stop - start
        self._skip = start
        if not self.event.is_blob:
            return
        sizes = (
            BlobChunk.objects.filter(event_id=self.event.pk)
            .order_by("index")
            .annotate(size=Length("data"))
            .values_list("index", "size")
        )
        offset = 0
        for index, size in sizes:
            if offset + size > start:
                self.next_index, self._skip = index, start - offset
                return
            offset += size

    def _trimmed(self, chunks: list[bytes]) -> list[bytes]:
        result = []
        for chunk in chunks:
            if self._skip:
                chunk, self._skip = chunk[self._skip :], max(self._skip - len(chunk), 0)
            assert self._left is not None
            chunk = chunk[: self._left]
            self._left -= len(chunk)
            if chunk:
                result.append(chunk)
        return result

    def _poll(self) -> list[bytes]:
        event = self.event
        if not event.is_blob:
            self.done = True
            return [bytes(event.value or b"")]
        chunks = self._chunks()
        if chunks:
            return chunks
        state = Event.objects.get(pk=event.pk)
        if state.complete:
            chunks = self._chunks()  # a last chunk may have landed just before completion
            self.done = not chunks
            return chunks
        if state.aborted:
            raise UploadAborted()
        if store.lease_expired(state):
            store.abort_upload(state, "upload lease expired (writer gone)")
            raise UploadAborted()
        return []

    def _chunks(self) -> list[bytes]:
        rows = list(
            BlobChunk.objects.filter(event_id=self.event.pk, index__gte=self.next_index)
            .order_by("index")
            .values_list("index", "data")[:CHUNKS_PER_POLL]
        )
        if rows:
            self.next_index = rows[-1][0] + 1
        return [bytes(data) for _, data in rows]

    def __iter__(self) -> Iterator[bytes]:
        while not self.done:
            chunks = self.poll()
            yield from chunks
            if not chunks and not self.done:
                time.sleep(self.poll_interval)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        poll = database_sync_to_async(self.poll)
        while not self.done:
            chunks = await poll()
            for chunk in chunks:
                yield chunk
            if not chunks and not self.done:
                await asyncio.sleep(self.poll_interval)

    def read(self) -> bytes:
        return b"".join(self)

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self])
