"""Blob bytes in files, one per event (``<ROOT>/<pk % 1000>/<pk>``), written as they arrive,
hashed as they are written, fsynced (with their directory) before the upload's completion
commits. Readers follow a file while it grows. Files of events that are not live (a crash
between a file's creation and its event's commit, an abort whose unlink was cut off) are
removed by ``sweep`` at the node's start.

Options: ``ROOT``, the directory (default: beside a SQLite database file, ``<file>-blobs``; a
temporary directory of the process for an in-memory one; required for other databases), and
``FSYNC`` (default True).
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core.checks import Error
from django.db import connection, transaction

from ..conf import spread_settings
from ..exceptions import StorageFull, UploadAborted
from ..models import Event
from .base import BlobCursor, BlobStore

if TYPE_CHECKING:
    from django.core.checks import CheckMessage

#: Subdirectories files are spread over (by primary key), so none holds millions of files.
FANOUT = 1000
#: Bytes a writer hands over per append (see ``write_size``).
WRITE_SIZE = 1024 * 1024
#: Pieces one ``take`` reads at most.
PIECES_PER_READ = 16
#: A file of no live event is left alone this long (seconds): its event may not have committed yet.
SWEEP_GRACE = 300.0
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@dataclass
class _Writing:
    """What this process knows of an upload it writes: the size written and their running hash."""

    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)


class FileBlobStore(BlobStore):
    hashes_as_written = True

    def __init__(self, ROOT: str | os.PathLike[str] | None = None, FSYNC: bool = True) -> None:
        self.configured_root = ROOT
        self.fsync = FSYNC
        self._lock = threading.Lock()
        self._writing: dict[int, _Writing] = {}

    @cached_property
    def root(self) -> Path:
        root = self.configured_root or default_root()
        if root is None:
            raise RuntimeError(
                'SPREAD["BLOB_STORE"]["OPTIONS"]["ROOT"] must name a directory for this database.'
            )
        return Path(root)

    def path(self, event_pk: int) -> Path:
        return self.root / f"{event_pk % FANOUT:03d}" / str(event_pk)

    # Writing ----------------------------------------------------------------------------------
    def write_size(self) -> int:
        """Larger than a chunk: a write to a file costs the same for 256 KiB or 1 MiB, and each
        is a hop of the writer to its thread."""
        return max(int(spread_settings.CHUNK_SIZE), WRITE_SIZE)

    def begin(self, event: Event, first: bytes) -> None:
        path = self.path(event.pk)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_file(path, first, os.O_CREAT | os.O_TRUNC)
        with self._lock:
            self._writing[event.pk] = _Writing(len(first), hashlib.sha256(first))

    def append(self, event: Event, offset: int, data: bytes) -> None:
        writing = self._state(event)
        if offset != writing.size:
            raise UploadAborted(f"Bytes at {offset} do not follow the {writing.size} stored.")
        try:
            _write_file(self.path(event.pk), data, os.O_APPEND)
        except FileNotFoundError as exc:  # discarded: the upload was aborted
            raise UploadAborted() from exc
        writing.size += len(data)
        writing.digest.update(data)

    def stored_size(self, event: Event) -> int:
        with self._lock:
            writing = self._writing.get(event.pk)
        if writing is not None:
            return writing.size
        try:
            return self.path(event.pk).stat().st_size
        except FileNotFoundError:
            return 0

    def seal(self, event: Event) -> str:
        writing = self._state(event)
        path = self.path(event.pk)
        if self.fsync:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError as exc:
                raise UploadAborted() from exc
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            _fsync_directory(path.parent)
        with self._lock:
            self._writing.pop(event.pk, None)
        return str(writing.digest.hexdigest())

    def _state(self, event: Event) -> _Writing:
        """The running state of ``event``'s upload, rebuilt from its file when this process did
        not start it (a setting changed, or another process wrote the first bytes)."""
        with self._lock:
            writing = self._writing.get(event.pk)
        if writing is not None:
            return writing
        writing = _Writing()
        try:
            with open(self.path(event.pk), "rb") as file:
                for piece in iter(lambda: file.read(spread_settings.CHUNK_SIZE), b""):
                    writing.digest.update(piece)
                    writing.size += len(piece)
        except FileNotFoundError as exc:
            raise UploadAborted() from exc
        with self._lock:
            return self._writing.setdefault(event.pk, writing)

    def discard(self, event_pks: Collection[int]) -> None:
        pks = list(event_pks)
        with self._lock:
            for pk in pks:
                self._writing.pop(pk, None)
        transaction.on_commit(lambda: self._unlink(pks))

    def _unlink(self, event_pks: Collection[int]) -> None:
        for pk in event_pks:
            self.path(pk).unlink(missing_ok=True)

    # Reading ----------------------------------------------------------------------------------
    def cursor(self, event: Event, start: int = 0) -> BlobCursor:
        return _FileCursor(self.path(event.pk), start, event.size if event.complete else None)

    # Upkeep -----------------------------------------------------------------------------------
    def sweep(self) -> int:
        removed = 0
        old = time.time() - SWEEP_GRACE
        for batch in _batches(self._files(), 500):
            live = set(Event.objects.filter(pk__in=list(batch), aborted=False).values_list("pk", flat=True))
            for pk, path in batch.items():
                if pk in live:
                    continue
                try:
                    if path.stat().st_mtime < old:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed

    def _files(self) -> Iterator[tuple[int, Path]]:
        if not self.root.is_dir():
            return
        for directory in self.root.iterdir():
            if not directory.is_dir():
                continue
            for path in directory.iterdir():
                if path.name.isdigit():
                    yield int(path.name), path

    def check(self) -> list[CheckMessage]:
        if self.configured_root or default_root() is not None:
            return []
        return [
            Error(
                "The file blob store has no directory for this database.",
                hint='Set SPREAD["BLOB_STORE"]["OPTIONS"]["ROOT"], or use '
                '"spread_core.blobs.database.DatabaseBlobStore" as its BACKEND.',
                id="spread_core.E006",
            )
        ]


class _FileCursor(BlobCursor):
    def __init__(self, path: Path, start: int, size: int | None) -> None:
        self.path = path
        self.position = start
        self.size = size  # of a complete value: its file must hold that many bytes
        self.fd: int | None = None

    def take(self) -> list[bytes]:
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return self._ended()
        piece_size = spread_settings.CHUNK_SIZE
        pieces = []
        for _ in range(PIECES_PER_READ):
            wanted = piece_size if self.size is None else min(piece_size, self.size - self.position)
            if wanted <= 0:
                break
            piece = os.pread(self.fd, wanted, self.position)
            if not piece:
                break
            pieces.append(piece)
            self.position += len(piece)
        return pieces or self._ended()

    def _ended(self) -> list[bytes]:
        """No byte past the position: an upload not further yet, or the end of a value, which must
        be its size (a shorter file is never served as the whole value)."""
        if self.size is not None and self.position < self.size:
            raise UploadAborted("The stored value is shorter than its size.")
        return []

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __del__(self) -> None:
        self.close()


def default_root() -> Path | None:
    """``<database file>-blobs`` for a SQLite file, a directory of this process for an
    in-memory SQLite database, None for other databases (they need ``ROOT``)."""
    if connection.vendor != "sqlite":
        return None
    name = str(connection.settings_dict["NAME"])
    if name == ":memory:" or "mode=memory" in name or not name:
        return Path(_process_directory())
    return Path(name + "-blobs")


_process_directories: list[str] = []


def _process_directory() -> str:
    """A directory for the blobs of this process's in-memory database, removed at its exit."""
    if not _process_directories:
        directory = tempfile.mkdtemp(prefix="spread-blobs-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        _process_directories.append(directory)
    return _process_directories[0]


def _write_file(path: Path, data: bytes, flags: int) -> None:
    """Write all of ``data`` to ``path`` opened with ``flags`` (a full disk: ``StorageFull``)."""
    with _no_room_is_storage_full():
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | flags, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _no_room_is_storage_full() -> Iterator[None]:
    """A disk (or quota, or file size limit) with no room left is the client's 507, not a 500."""
    try:
        yield
    except OSError as exc:
        if exc.errno in NO_ROOM:
            raise StorageFull() from exc
        raise


def _batches(items: Iterator[tuple[int, Path]], size: int) -> Iterator[dict[int, Path]]:
    batch: dict[int, Path] = {}
    for pk, path in items:
        batch[pk] = path
        if len(batch) >= size:
            yield batch
            batch = {}
    if batch:
        yield batch
