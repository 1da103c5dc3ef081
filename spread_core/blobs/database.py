"""Blob bytes as rows of the node's database (``BlobChunk``), one row per stored piece, written
in the transactions that note them. On PostgreSQL the bytes are sent as binary parameters bound
by the server, not escaped into the statement's text by the client."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from django.db import connection
from django.db.models import Max
from django.db.models.functions import Length

from .. import statements
from ..exceptions import UploadAborted
from ..models import BlobChunk, Event
from .base import BlobCursor, BlobStore

if TYPE_CHECKING:
    from psycopg import Cursor

#: Rows read by one ``take`` (and by one step of ``seal``'s digest).
CHUNKS_PER_READ = 16


class DatabaseBlobStore(BlobStore):
    in_database = True

    def begin(self, event: Event, first: bytes) -> None:
        if first:
            self._insert(event.pk, 0, first)

    def begin_all(self, started: Sequence[tuple[Event, bytes]]) -> None:
        if connection.vendor == "postgresql":
            for event, first in started:
                self.begin(event, first)
        else:
            statements.insert_rows(
                [BlobChunk(event=event, index=0, data=first) for event, first in started if first]
            )

    def append(self, event: Event, offset: int, data: bytes) -> None:
        last = BlobChunk.objects.filter(event_id=event.pk).aggregate(last=Max("index"))["last"]
        self._insert(event.pk, 0 if last is None else last + 1, data)

    def stored_size(self, event: Event) -> int:
        return int(Event.objects.filter(pk=event.pk).values_list("size", flat=True).first() or 0)

    def seal(self, event: Event) -> str:
        digest = hashlib.sha256()
        last = -1
        while True:
            rows = list(
                BlobChunk.objects.filter(event_id=event.pk, index__gt=last)
                .order_by("index")
                .values_list("index", "data")[:CHUNKS_PER_READ]
            )
            if not rows:
                return digest.hexdigest()
            for index, data in rows:
                digest.update(data)
                last = index

    def discard(self, event_pks: Collection[int]) -> None:
        BlobChunk.objects.filter(event_id__in=list(event_pks)).delete()

    def cursor(self, event: Event, start: int = 0) -> BlobCursor:
        return _ChunkCursor(event, start)

    @staticmethod
    def _insert(event_pk: int, index: int, data: bytes) -> None:
        if connection.vendor != "postgresql":
            BlobChunk.objects.create(event_id=event_pk, index=index, data=data)
            return
        table = statements.quoted_table(BlobChunk)
        columns = ", ".join(
            statements.quoted_column(BlobChunk, name) for name in ("event_id", "index", "data")
        )
        with _server_bound_cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %b)", [event_pk, index, data])


def _server_bound_cursor() -> Cursor:
    """A cursor of Django's PostgreSQL connection that binds parameters on the server (Django's
    own cursors bind on the client unless ``server_side_binding`` is set, escaping ``bytea`` in
    Python)."""
    from psycopg import Cursor

    connection.ensure_connection()
    return Cursor(connection.connection)


class _ChunkCursor(BlobCursor):
    def __init__(self, event: Event, start: int) -> None:
        self.event_pk = event.pk
        self.next_index = 0
        self.skip = 0  # bytes of the next chunk before the start
        if start:
            self._seek(start)

    def _seek(self, start: int) -> None:
        """Start at the chunk holding byte ``start`` (one query of the chunks' sizes)."""
        sizes = (
            BlobChunk.objects.filter(event_id=self.event_pk)
            .order_by("index")
            .annotate(size=Length("data"))
            .values_list("index", "size")
        )
        offset = 0
        for index, size in sizes:
            if offset + size > start:
                self.next_index, self.skip = index, start - offset
                return
            offset += size
        raise UploadAborted("The stored value is shorter than the range asked for.")

    def take(self) -> list[bytes]:
        rows = list(
            BlobChunk.objects.filter(event_id=self.event_pk, index__gte=self.next_index)
            .order_by("index")
            .values_list("index", "data")[:CHUNKS_PER_READ]
        )
        if not rows:
            return []
        self.next_index = rows[-1][0] + 1
        pieces = [bytes(data) for _, data in rows]
        if self.skip:
            pieces[0], self.skip = pieces[0][self.skip :], 0
        return [piece for piece in pieces if piece]
