"""Turn a stream of incoming bytes into an inline event or a chunked blob, sync or async.

``ValueWriter`` holds the state of one incoming value. Its ``take`` method is pure (it buffers and
says which chunks to store); its ``store``/``finish``/``abort`` steps touch the database. The sync
driver calls the steps directly, the async driver through ``database_sync_to_async``: one core,
two entry points; a complete inline value is handed from the event loop to ``store.arecord``
instead (``afinish``: no thread waits for its commit). The event is created with the first stored
chunk, so readers can stream the value while it is still arriving.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterable, Iterable

from channels.db import database_sync_to_async

from . import store
from .blobs import blob_store
from .conf import spread_settings
from .exceptions import DigestMismatch, EmptyValue, ValueTooLarge
from .merge import Outcome
from .store import Recorded, WriteRequest


class ValueWriter:
    """Accumulates one value; decides inline or blob; stores blob chunks as they fill."""

    def __init__(self, write: WriteRequest, *, max_size: int | None = None) -> None:
        self.write = write
        self.max_size = spread_settings.MAX_UPLOAD if max_size is None else max_size
        self.inline_max: int = spread_settings.INLINE_MAX
        blobs = blob_store()
        self.chunk_size: int = blobs.write_size()
        #: Once it is a blob, the store's digest of the bytes it wrote is the value's.
        self.store_hashes = blobs.hashes_as_written
        self.flush_interval: float = spread_settings.CHUNK_FLUSH_INTERVAL
        self.buffer = bytearray()
        self.size = 0
        self.digest = hashlib.sha256()
        self.recorded: Recorded | None = None
        self.stored_size = 0
        self.last_flush = time.monotonic()

    @property
    def started(self) -> bool:
        return self.recorded is not None

    @property
    def discarding(self) -> bool:
        """The event already existed: the rest of the body is not stored again."""
        return self.recorded is not None and self.recorded.outcome is Outcome.EXISTING

    def take(self, piece: bytes) -> list[bytes]:
        """Add received bytes; return the chunks that should be stored now (pure, no I/O)."""
        if not piece:
            return []
        self.size += len(piece)
        if self.size > self.max_size:
            raise ValueTooLarge(f"The value is larger than {self.max_size} bytes.")
        if not (self.started and self.store_hashes):
            self.digest.update(piece)
        if self.discarding:
            return []
        self.buffer += piece
        if not self.started and len(self.buffer) <= self.inline_max:
            return []
        now = time.monotonic()
        chunks = []
        while len(self.buffer) >= self.chunk_size:
            chunks.append(bytes(self.buffer[: self.chunk_size]))
            del self.buffer[: self.chunk_size]
        first_chunk_pending = not self.started and not chunks
        if self.buffer and (first_chunk_pending or now - self.last_flush >= self.flush_interval):
            chunks.append(bytes(self.buffer))
            self.buffer.clear()
        if chunks:
            self.last_flush = now
        return chunks

    def store(self, chunk: bytes) -> None:
        """Store one chunk; the first one creates the event (sync, one transaction)."""
        if self.recorded is None:
            self.recorded = store.record(self.write, value=chunk, is_blob=True)
        elif not self.discarding:
            store.append_chunk(self.recorded.event, self.stored_size, chunk)
        self.stored_size += len(chunk)

    def finish(self) -> Recorded:
        """Store what is left and complete the value; returns the recorded event."""
        if self.recorded is None:
            value, received = self._inline_value()
            return store.record(self.write, value=value, sha256=received)
        if self.discarding:
            return self.recorded
        if self.buffer:
            self.store(bytes(self.buffer))
            self.buffer.clear()
        event = self.recorded.event
        if self.store_hashes:
            store.finish_upload(event, size=self.size, expected_sha256=self.write.expected_sha256)
        else:
            store.finish_upload(event, size=self.size, received_sha256=self._verified_digest())
        return self.recorded

    async def afinish(self) -> Recorded:
        """``finish`` from an event loop: an inline value through ``store.arecord``, the end of
        a blob in a thread."""
        if self.recorded is not None:
            return await database_sync_to_async(self.finish)()
        value, received = self._inline_value()
        return await store.arecord(self.write, value=value, sha256=received)

    def _inline_value(self) -> tuple[bytes, str]:
        """The whole value, not started as a blob, and its checked digest (no database)."""
        if self.size == 0:
            raise EmptyValue()
        return bytes(self.buffer), self._verified_digest()

    def _verified_digest(self) -> str:
        """SHA-256 of the received bytes, checked against the client's X-Spread-Sha256 if given."""
        received = self.digest.hexdigest()
        expected = self.write.expected_sha256
        if expected and expected.lower() != received:
            self.abort("client digest mismatch")
            raise DigestMismatch()
        return received

    def abort(self, reason: str) -> None:
        """Give up on an unfinished upload: readers get an error, the topic falls back."""
        if self.recorded is not None and not self.discarding and not self.recorded.event.complete:
            store.abort_upload(self.recorded.event, reason)


def write_value(write: WriteRequest, pieces: Iterable[bytes], **kwargs: int) -> Recorded:
    """Sync driver: store a value arriving as an iterable of byte strings."""
    writer = ValueWriter(write, **kwargs)
    try:
        for piece in pieces:
            for chunk in writer.take(piece):
                writer.store(chunk)
        return writer.finish()
    except BaseException as exc:
        writer.abort(f"{type(exc).__name__}: {exc}")
        raise


async def awrite_value(write: WriteRequest, pieces: AsyncIterable[bytes], **kwargs: int) -> Recorded:
    """Async driver of the same steps: store a value arriving as an async iterable."""
    writer = ValueWriter(write, **kwargs)
    store_step = database_sync_to_async(writer.store)
    try:
        async for piece in pieces:
            for chunk in writer.take(piece):
                await store_step(chunk)
        return await writer.afinish()
    except BaseException as exc:
        if writer.started:  # else there is nothing to abort
            await database_sync_to_async(writer.abort)(f"{type(exc).__name__}: {exc}")
        raise
