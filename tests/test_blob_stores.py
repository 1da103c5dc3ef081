"""The blob stores behind one interface: bytes written as they arrive and read from any offset
while they do, a digest of what was stored, discards after commit; the file store's followers
woken by the writer, its refusal to serve a short file as a whole value, and its sweep of
leftovers."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from spread_core import api, store
from spread_core.blobs import blob_store, upload_progress
from spread_core.blobs.files import SWEEP_GRACE, FileBlobStore
from spread_core.exceptions import DigestMismatch, StorageFull, UploadAborted
from spread_core.models import ITERATION_COUNTER, Counter, Event
from spread_core.paths import TopicPath
from spread_core.reader import ValueReader
from spread_core.store import WriteRequest
from spread_core.writer import write_value

from .blob_stores import SMALL, spread_with, stored_pieces

DATE = 1_764_130_000_000_000


@pytest.fixture
def iteration_counter(transactional_db: None) -> None:
    """The counter row of migration 0002; transactional tests flush it away after each test."""
    Counter.objects.get_or_create(name=ITERATION_COUNTER, defaults={"value": 0})


def started_upload(path: str, first: bytes, date: int = DATE) -> Event:
    return store.record(
        WriteRequest(TopicPath.coerce(path), origin="alice", date=date), value=first, is_blob=True
    ).event


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_bytes_appended_are_read_from_any_offset_and_sealed_with_their_digest() -> None:
    data = bytes(range(256)) * 3
    event = started_upload("b/s", data[:60])  # pieces as a writer stores them: at most CHUNK_SIZE
    for offset in range(60, len(data), 50):
        assert blob_store().stored_size(event) == offset
        store.append_chunk(event, offset, data[offset : offset + 50])
    assert blob_store().stored_size(event) == len(data)
    assert b"".join(stored_pieces(event.pk)) == data
    for start in (0, 1, 63, 64, 65, 500, len(data) - 1):
        cursor = blob_store().cursor(event, start)
        read = b""
        while pieces := cursor.take():
            assert all(len(piece) <= SMALL["CHUNK_SIZE"] for piece in pieces)
            read += b"".join(pieces)
        cursor.close()
        assert read == data[start:], start
    assert blob_store().seal(event) == hashlib.sha256(data).hexdigest()


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_an_upload_completed_through_the_store_reads_back_whole_and_by_range() -> None:
    data = os.urandom(1000)
    api.post("b/whole", (data[i : i + 70] for i in range(0, len(data), 70)), date=DATE, origin="alice")
    event = Event.objects.get(topic__path="b/whole")
    assert event.complete and event.size == len(data)
    assert event.sha256 == hashlib.sha256(data).hexdigest()
    assert ValueReader(event).read() == data
    assert ValueReader(event, (130, 777)).read() == data[130:777]


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_a_mismatching_stored_digest_aborts_the_upload(django_capture_on_commit_callbacks: Any) -> None:
    event = started_upload("b/bad", b"x" * 40)
    with pytest.raises(UploadAborted), django_capture_on_commit_callbacks(execute=True):
        store.finish_upload(event, size=40, received_sha256=hashlib.sha256(b"y" * 40).hexdigest())
    event.refresh_from_db()
    assert event.aborted and not event.complete
    assert stored_pieces(event.pk) == []


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_bytes_are_discarded_only_once_the_abort_commits(django_capture_on_commit_callbacks: Any) -> None:
    event = started_upload("b/discard", b"z" * 40)
    with django_capture_on_commit_callbacks(execute=False) as pending:
        store.abort_upload(event, "test")
        if not blob_store().in_database:
            assert stored_pieces(event.pk) == [b"z" * 40]  # not gone before the abort commits
    for callback in pending:
        callback()
    assert stored_pieces(event.pk) == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("iteration_counter")
def test_a_follower_of_an_upload_is_woken_by_its_bytes_not_by_its_poll_interval() -> None:
    """With a poll interval of 30 s, only the writer's ring can bring the bytes in time."""
    with override_settings(SPREAD=spread_with("files", **SMALL, READ_POLL_INTERVAL=30.0)):
        event = started_upload("b/follow", b"a" * 20)
        got: list[tuple[float, bytes]] = []

        def follow() -> None:
            for piece in ValueReader(event):
                got.append((time.monotonic(), piece))

        follower = threading.Thread(target=follow)
        follower.start()
        _wait_until(lambda: upload_progress.watched(event.pk) == 1)
        sent = time.monotonic()
        store.append_chunk(event, 20, b"b" * 30)
        _wait_until(lambda: len(b"".join(piece for _, piece in got)) == 50)
        assert got[-1][0] - sent < 5.0
        store.finish_upload(event, size=50, received_sha256=hashlib.sha256(b"a" * 20 + b"b" * 30).hexdigest())
        follower.join(timeout=5.0)
        assert not follower.is_alive()
        assert b"".join(piece for _, piece in got) == b"a" * 20 + b"b" * 30


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("iteration_counter")
def test_an_async_follower_is_woken_by_the_bytes_and_by_the_abort() -> None:
    with override_settings(SPREAD=spread_with("files", **SMALL, READ_POLL_INTERVAL=30.0)):
        event = started_upload("b/afollow", b"a" * 20)

        async def follow() -> bytes:
            read = b""
            async for piece in ValueReader(event):
                read += piece
            return read

        async def scenario() -> tuple[float, BaseException | None]:
            task = asyncio.ensure_future(follow())
            while upload_progress.watched(event.pk) == 0:
                await asyncio.sleep(0.01)
            started = time.monotonic()
            await asyncio.to_thread(store.abort_upload, event, "test")
            try:
                await asyncio.wait_for(task, 10.0)
            except UploadAborted as exc:
                return time.monotonic() - started, exc
            return time.monotonic() - started, None

        elapsed, error = asyncio.run(scenario())
        assert isinstance(error, UploadAborted)
        assert elapsed < 5.0


@pytest.mark.django_db
def test_a_complete_value_whose_file_is_short_is_never_served_whole() -> None:
    data = os.urandom(10_000)
    api.post("b/short", data, date=DATE, origin="alice")
    event = Event.objects.get(topic__path="b/short")
    files = blob_store()
    assert isinstance(files, FileBlobStore)
    os.truncate(files.path(event.pk), 6_000)
    reader = ValueReader(event)
    with pytest.raises(UploadAborted):
        reader.read()


@pytest.mark.django_db
def test_sweep_removes_old_files_of_no_live_event_only() -> None:
    files = blob_store()
    assert isinstance(files, FileBlobStore)
    live = started_upload("b/live", b"l" * 5000)
    api.post("b/done", os.urandom(5000), date=DATE, origin="alice")
    done = Event.objects.get(topic__path="b/done")
    orphan, young_orphan = files.path(900_001), files.path(900_002)
    for path in (orphan, young_orphan):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left by a crash")
    old = time.time() - SWEEP_GRACE - 10
    for path in (orphan, files.path(live.pk), files.path(done.pk)):
        os.utime(path, (old, old))
    assert files.sweep() == 1
    assert not orphan.exists()
    assert young_orphan.exists()  # its event may not have committed yet
    assert files.path(live.pk).exists() and files.path(done.pk).exists()


def test_no_room_on_the_disk_is_storage_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk that fills up is simulated here (os.write raising ENOSPC); tests/faults fills a
    real one."""
    files = FileBlobStore(ROOT=tmp_path)

    class FakeEvent:
        pk = 7

    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StorageFull):
        files.begin(FakeEvent(), b"abc")  # type: ignore[arg-type]


def _wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_a_client_digest_is_checked_against_the_stored_bytes_before_completion(
    django_capture_on_commit_callbacks: Any,
) -> None:
    data = os.urandom(500)
    pieces = [data[i : i + 30] for i in range(0, len(data), 30)]
    wrong = WriteRequest(TopicPath.coerce("b/digest"), origin="alice", date=DATE, expected_sha256="0" * 64)
    with pytest.raises(DigestMismatch), django_capture_on_commit_callbacks(execute=True):
        write_value(wrong, pieces)
    refused = Event.objects.get(topic__path="b/digest")
    assert refused.aborted and not refused.complete
    assert stored_pieces(refused.pk) == []
    right = replace(wrong, date=DATE + 1, expected_sha256=hashlib.sha256(data).hexdigest().upper())
    recorded = write_value(right, pieces)
    assert recorded.event.complete and recorded.event.sha256 == hashlib.sha256(data).hexdigest()
    assert api.get("b/digest").value == data
