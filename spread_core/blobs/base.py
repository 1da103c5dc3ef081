"""The interface every blob store implements: an upload's bytes written as they arrive, made
durable before its completion commits, read from any offset while they still arrive, discarded
when the upload aborts or retention removes its event."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from ..conf import spread_settings

if TYPE_CHECKING:
    from django.core.checks import CheckMessage

    from ..models import Event


class BlobCursor:
    """A reading position in one event's bytes."""

    def take(self) -> list[bytes]:
        """The bytes stored from the position on, as pieces of at most ``CHUNK_SIZE`` (a bounded
        number of them); an empty list when none arrived since the last call. Moves the position.
        Raises ``UploadAborted`` when the bytes of a complete value end before its size."""
        raise NotImplementedError("subclasses of BlobCursor must provide a take() method")

    def close(self) -> None:
        """Let go of what the cursor holds open."""


class BlobStore:
    """Bytes of blob events (``Event.is_blob``), keyed by the event's primary key (its
    iteration, never reused in one database).

    The write steps run on the writer's thread. ``begin`` and ``begin_all`` run inside the
    transaction that inserts the events; ``append`` inside the transaction that extends the
    upload's lease when ``in_database`` (the bytes are rows), else outside any transaction;
    ``seal`` before the transaction that completes the upload; ``discard`` inside the one that
    aborts it or deletes its events (a store outside the database acts once it commits).
    """

    #: The bytes are rows of the node's database, written in its transactions.
    in_database = False
    #: ``seal`` gives the digest of the bytes as they were written (no re-read): a local writer
    #: need not hash them too, the store's digest is checked against the client's.
    hashes_as_written = False

    def write_size(self) -> int:
        """Bytes a writer hands over per ``append`` (at most; a partial piece is flushed after
        ``CHUNK_FLUSH_INTERVAL``). Readers get pieces of at most ``CHUNK_SIZE`` whatever it is."""
        return int(spread_settings.CHUNK_SIZE)

    def begin(self, event: Event, first: bytes) -> None:
        """Store the first bytes of a new upload (maybe none: a replicated or imported upload
        whose bytes follow)."""
        raise NotImplementedError("subclasses of BlobStore must provide a begin() method")

    def begin_all(self, started: Sequence[tuple[Event, bytes]]) -> None:
        """``begin`` for each (event, first bytes) of a group commit."""
        for event, first in started:
            self.begin(event, first)

    def append(self, event: Event, offset: int, data: bytes) -> None:
        """Store ``data`` at ``offset``, which is ``stored_size(event)``."""
        raise NotImplementedError("subclasses of BlobStore must provide an append() method")

    def stored_size(self, event: Event) -> int:
        """How many bytes of ``event`` are stored."""
        raise NotImplementedError("subclasses of BlobStore must provide a stored_size() method")

    def seal(self, event: Event) -> str:
        """Make the stored bytes durable; return their SHA-256 (hex)."""
        raise NotImplementedError("subclasses of BlobStore must provide a seal() method")

    def discard(self, event_pks: Collection[int]) -> None:
        """Forget the bytes of these events."""
        raise NotImplementedError("subclasses of BlobStore must provide a discard() method")

    def cursor(self, event: Event, start: int = 0) -> BlobCursor:
        """A reader of ``event``'s bytes from byte ``start`` on."""
        raise NotImplementedError("subclasses of BlobStore must provide a cursor() method")

    def sweep(self) -> int:
        """Remove what a crash left behind (bytes of no live event); return how many items."""
        return 0

    def check(self) -> list[CheckMessage]:
        """System-check messages about the store's configuration."""
        return []
