"""The transactional write core: record an event, stream a large value in, abort a broken upload.

Everything here runs in one database transaction per step. The async paths call the same steps
through ``database_sync_to_async`` (see ``writer.py``), except ``arecord``, which hands a write
from the event loop to the group-commit writer thread and awaits it there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

from channels.db import database_sync_to_async
from django.db import transaction

from . import fanout, iteration, tree
from .batch_record import new_event, record_all
from .batching import Together, batcher
from .blobs import blob_store, upload_progress
from .cache import value_cache
from .clock import MICROSECONDS, now_us
from .conf import spread_settings
from .exceptions import DigestMismatch, UploadAborted
from .merge import Outcome, event_id, winner
from .models import Change, Event, EventQuerySet, Topic, path_hash
from .paths import TopicPath
from .signals import event_accepted, upload_aborted
from .types import PropagationEntry

logger = logging.getLogger(__name__)

DEFAULT_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class WriteRequest:
    """Everything about a write except its value bytes."""

    path: TopicPath
    origin: str
    date: int = field(default_factory=now_us)
    content_type: str = DEFAULT_CONTENT_TYPE
    deleted: bool = False
    create_only: bool = False
    expected_sha256: str | None = None
    #: The peer node it was replicated from ("" for a write made here).
    source: str = ""

    @property
    def event_id(self) -> str:
        return event_id(self.path.canonical, self.date, self.origin)

    def tombstone(self) -> WriteRequest:
        return replace(self, deleted=True, content_type=DEFAULT_CONTENT_TYPE)


@dataclass
class Recorded:
    """The stored event, what storing it did, and (once committed and announced) how many
    subscribers were rung per ancestor prefix."""

    event: Event
    outcome: Outcome
    propagation: list[PropagationEntry] | None = None


# The lease is extended when a chunk is stored, and bytes that arrive within CHUNK_FLUSH_INTERVAL
# of a store wait for the next one: a lease of twice the idle timeout outlives every writer that
# is still within its idle timeout, so only a writer that is really gone loses its upload.
LEASE_FACTOR = 2


def _lease() -> int:
    return now_us() + int(LEASE_FACTOR * spread_settings.UPLOAD_IDLE_TIMEOUT * MICROSECONDS)


@dataclass(frozen=True, slots=True)
class QueuedWrite:
    """A write queued for group commit: called, it is stored alone by ``_record``; a run of
    them is stored together by ``together`` (set-based, ``batch_record``)."""

    request: WriteRequest
    value: bytes | None
    is_blob: bool
    sha256: str

    def __call__(self) -> Recorded:
        return _record(self.request, self.value, self.is_blob, self.sha256)

    @staticmethod
    def together(writes: Sequence[QueuedWrite]) -> list[Recorded | Exception]:
        """Each write's answer, as ``_record`` one after the other would give it."""
        answers = record_all(writes, lease_until=_lease())
        return [answer if isinstance(answer, Exception) else Recorded(*answer) for answer in answers]


def _together() -> Together | None:
    return QueuedWrite.together if spread_settings.GROUP_COMMIT_SET_BASED else None


def record(write: WriteRequest, *, value: bytes | None, is_blob: bool = False, sha256: str = "") -> Recorded:
    """Store one event and merge it into its topic, atomically, with the next iteration.

    ``value`` is the inline value, or the first chunk of a blob when ``is_blob`` (the event then
    stays incomplete until ``finish_upload``). An event already stored gives ``EXISTING`` and
    changes nothing. Raises ``TopicExists`` for a create-only write to a topic that has a value.
    """
    if batcher.applies():
        recorded: Recorded = batcher.run(QueuedWrite(write, value, is_blob, sha256), together=_together())
        if recorded.outcome is not Outcome.EXISTING:
            _announce(recorded)  # committed: ring from the caller's thread, not the writer's
        return recorded
    with iteration.write_transaction():
        recorded = _record(write, value, is_blob, sha256)
        if recorded.outcome is not Outcome.EXISTING:
            transaction.on_commit(lambda: _announce(recorded))
    return recorded


def record_together(writes: Sequence[tuple[WriteRequest, bytes | None]]) -> list[Recorded]:
    """Store inline writes (a value, or None for a tombstone) inside the caller's write
    transaction, set-based as a group commit stores its batch (``batch_record``), in order, with
    the answers ``record`` would give one after the other. An error of one write is raised (the
    caller's transaction then rolls back). Once the caller's transaction commits, the cache is
    told and ``event_accepted`` sent for each stored write, and their subscribers are rung with
    one doorbell per prefix (``fanout.announce_all``); no propagation report."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("record_together() must run inside the caller's write transaction.")
    with iteration.shared_counter():
        answers = QueuedWrite.together([QueuedWrite(write, value, False, "") for write, value in writes])
    recorded = []
    for answer in answers:
        if isinstance(answer, Exception):
            raise answer
        recorded.append(answer)
    stored = [r for r in recorded if r.outcome is not Outcome.EXISTING]
    if stored:
        transaction.on_commit(lambda: _announce_all(stored))
    return recorded


def _announce_all(stored: list[Recorded]) -> None:
    for recorded in stored:
        _accepted(recorded)
    fanout.announce_all([(r.event.topic.path, r.event.iteration) for r in stored])


async def arecord(
    write: WriteRequest, *, value: bytes | None, is_blob: bool = False, sha256: str = ""
) -> Recorded:
    """``record`` from an event loop, with the same answer and errors. With group commit on, the
    write goes from the loop to the writer thread's queue and the loop awaits its commit (no
    thread of the caller's waits for it); a write made here is never part of a caller's
    transaction, since the loop thread holds none. With group commit off: ``record`` in a thread.
    A caller cancelled while its write is queued does not unqueue it: it is stored and announced.
    """
    if not spread_settings.GROUP_COMMIT:
        return await database_sync_to_async(record)(write, value=value, is_blob=is_blob, sha256=sha256)
    future: Future[Recorded] = batcher.submit(
        QueuedWrite(write, value, is_blob, sha256), together=_together()
    )
    committed = asyncio.wrap_future(future)  # set from the writer thread via loop.call_soon_threadsafe
    try:
        recorded = await asyncio.shield(committed)
    except asyncio.CancelledError:
        _keep(asyncio.ensure_future(_announce_once_committed(committed)))
        raise
    if recorded.outcome is not Outcome.EXISTING:
        await _aannounce(recorded)
    return recorded


_announcing: set[asyncio.Future[None]] = set()  # tasks of cancelled writers, kept until they end


def _keep(task: asyncio.Future[None]) -> None:
    _announcing.add(task)
    task.add_done_callback(_announcing.discard)


async def _announce_once_committed(committed: asyncio.Future[Recorded]) -> None:
    try:
        recorded = await committed
    except Exception as exc:  # its caller is gone: nobody else to tell
        logger.info("A write whose caller was cancelled failed: %s: %s", type(exc).__name__, exc)
        return
    if recorded.outcome is not Outcome.EXISTING:
        await _aannounce(recorded)


def _record(write: WriteRequest, value: bytes | None, is_blob: bool, sha256: str) -> Recorded:
    """The body of ``record``, inside a write transaction (the caller's or a group commit's)."""
    path = write.path.require_topic()
    eid = write.event_id
    counter = iteration.lock_counter()
    existing = Event.objects.select_related("topic").filter(event_id=eid, aborted=False).first()
    if existing is not None:
        return Recorded(existing, Outcome.EXISTING)
    topic = Topic.objects.select_related("current").filter(path_hash=path_hash(path.canonical)).first()
    if topic is None:
        topic = tree.new_node(path.canonical)
    queued = QueuedWrite(write, value, is_blob, sha256)
    event, outcome = new_event(queued, eid, topic, counter, lease_until=_lease())
    event.save(force_insert=True)
    Change.objects.create(iteration=event.iteration, event=event, kind=Change.WRITE)
    if is_blob:
        blob_store().begin(event, value or b"")
    if outcome is Outcome.OK:
        topic.current, topic.changed = event, event.iteration
        topic.save(update_fields=["current", "changed"])
    return Recorded(event, outcome)


def _announce(recorded: Recorded) -> None:
    """What follows the commit of a stored (not ``EXISTING``) write, before its caller gets the
    answer: the ``event_accepted`` signal, and its subscribers rung. ``_aannounce`` is the same
    from an event loop; every write goes through exactly one of them."""
    event = recorded.event
    _accepted(recorded)
    propagation = fanout.announce(event.topic.path, event.iteration)
    recorded.propagation = _delivered(recorded, propagation)


async def _aannounce(recorded: Recorded) -> None:
    """``_announce`` from an event loop (sync receivers of the signal run in a thread)."""
    event = recorded.event
    _note_in_cache(recorded)
    await event_accepted.asend(sender=Event, event=event, outcome=recorded.outcome)
    propagation = await fanout.aannounce(event.topic.path, event.iteration)
    recorded.propagation = _delivered(recorded, propagation)


def _accepted(recorded: Recorded) -> None:
    """What every committed write does in sync code before it is announced: the cache is told,
    then the ``event_accepted`` signal."""
    _note_in_cache(recorded)
    event_accepted.send(sender=Event, event=recorded.event, outcome=recorded.outcome)


def _delivered(recorded: Recorded, propagation: list[PropagationEntry]) -> list[PropagationEntry] | None:
    """The report of a write: a too_late event is rung for history subscribers only (the
    current value did not change), so it reports no delivery."""
    return propagation if recorded.outcome is Outcome.OK else None


def _note_in_cache(recorded: Recorded) -> None:
    """Tell this process's value cache what a committed write did, before it is answered."""
    event = recorded.event
    changed_current = recorded.outcome is Outcome.OK
    value_cache.note_committed(event.path if changed_current else None, event, event.iteration)


#: A store outside the database extends an upload's lease (and notes its size) at most this often
#: (seconds), not at every piece; a store in the database does it in each piece's transaction.
LEASE_NOTE_INTERVAL = 1.0


def append_chunk(event: Event, offset: int, data: bytes) -> None:
    """Store the bytes at ``offset`` (the size stored so far) of an unfinished upload, and extend
    its lease. Not a durable commit: a crash aborts the upload anyway, and its completion is
    durable (see ``write_transaction``). Raises ``UploadAborted`` once the upload was aborted."""
    blobs = blob_store()
    size = offset + len(data)
    if blobs.in_database:
        with iteration.write_transaction(durable=False):
            _note_progress(event, size)
            blobs.append(event, offset, data)
    else:
        blobs.append(event, offset, data)
        if time.monotonic() - getattr(event, "_progress_noted", 0.0) >= LEASE_NOTE_INTERVAL:
            with iteration.write_transaction(durable=False):
                _note_progress(event, size)
    event.size = size
    upload_progress.ring(event.pk)


def _note_progress(event: Event, size: int) -> None:
    updated = Event.objects.filter(pk=event.pk, aborted=False, complete=False).update(
        size=size, lease_until=None if event.source else _lease()
    )
    if not updated:
        raise UploadAborted()
    event._progress_noted = time.monotonic()  # type: ignore[attr-defined]


def finish_upload(
    event: Event, *, size: int, received_sha256: str | None = None, expected_sha256: str | None = None
) -> None:
    """Mark an upload complete once its stored bytes are durable and checked: their size against
    ``size``, their digest against ``received_sha256`` (the digest of the bytes the writer got;
    None when the store hashed them as written, ``BlobStore.hashes_as_written``) and against the
    client's ``expected_sha256`` (``DigestMismatch``). A failed check aborts the upload.

    Completion is a log entry with its own iteration; when the upload is the topic's current
    value, the topic changes at that iteration so subscribers learn that it is complete.
    """
    blobs = blob_store()
    stored_size = blobs.stored_size(event)
    stored_sha256 = blobs.seal(event)
    if stored_size != size or (received_sha256 is not None and stored_sha256 != received_sha256):
        abort_upload(event, "the stored bytes do not match the received bytes")
        raise UploadAborted("The stored value did not match the received bytes; upload aborted.")
    if expected_sha256 and expected_sha256.lower() != stored_sha256:
        abort_upload(event, "client digest mismatch")
        raise DigestMismatch()
    with iteration.write_transaction():
        counter = iteration.lock_counter()
        updated = Event.objects.filter(pk=event.pk, aborted=False, complete=False).update(
            complete=True, size=size, sha256=stored_sha256, lease_until=None
        )
        if not updated:
            raise UploadAborted()
        changed = iteration.log(counter, event, Change.COMPLETE)
        is_current = Topic.objects.filter(pk=event.topic_id, current=event).update(changed=changed)
        event.complete, event.size, event.sha256, event.lease_until = True, size, stored_sha256, None
        path = event.topic.path
        transaction.on_commit(
            lambda: value_cache.note_committed(path if is_current else None, event, changed)
        )
        transaction.on_commit(lambda: upload_progress.ring(event.pk))
        if is_current:
            transaction.on_commit(lambda: fanout.announce(path, changed))


def abort_upload(event: Event, reason: str) -> None:
    """Mark an unfinished upload aborted, drop its bytes, and restore the topic's best value.

    The abort is a log entry; when the upload was the current value, the topic changes at that
    iteration (to the greatest remaining event) so subscribers learn of the fallback.
    """
    with iteration.write_transaction():
        counter = iteration.lock_counter()  # also serialises with writers: the current stays exact
        updated = Event.objects.filter(pk=event.pk, complete=False, aborted=False).update(
            aborted=True, lease_until=None
        )
        if not updated:
            return
        blob_store().discard([event.pk])
        transaction.on_commit(lambda: upload_progress.ring(event.pk))
        changed = iteration.log(counter, event, Change.ABORT)
        topic = Topic.objects.get(pk=event.topic_id)
        if topic.current_id == event.pk:
            topic.current, topic.changed = best_event(topic), changed
            topic.save(update_fields=["current", "changed"])
            fallback = topic.current
            if fallback is not None:
                fallback.topic = topic
            transaction.on_commit(lambda: value_cache.note_committed(topic.path, fallback, changed))
            transaction.on_commit(lambda: fanout.announce(topic.path, changed))
        else:
            transaction.on_commit(lambda: value_cache.note_committed(None, None, changed))
    event.aborted = True
    logger.warning("Upload of %s aborted: %s", event.event_id, reason)
    upload_aborted.send(sender=Event, event=event, reason=reason)


def best_event(topic: Topic, candidates: EventQuerySet | None = None) -> Event | None:
    """The event of ``topic`` with the greatest (date, origin) by the merge rule, among
    ``candidates`` (default: its live events)."""
    live = Event.objects.for_topic(topic).live() if candidates is None else candidates.filter(topic=topic)
    latest = live.order_by("-date").values_list("date", flat=True).first()
    if latest is None:
        return None
    tied = {e.key: e for e in live.filter(date=latest)}
    best = winner(tied)
    return tied[best] if best else None


def lease_expired(event: Event) -> bool:
    return (
        not event.complete
        and not event.aborted
        and event.lease_until is not None
        and event.lease_until < now_us()
    )


def abort_stale_uploads() -> int:
    """Abort every unfinished upload whose lease ran out (its writer is gone); return how many."""
    stale = Event.objects.filter(complete=False, aborted=False, lease_until__lt=now_us())
    count = 0
    for event in stale:
        abort_upload(event, "upload lease expired (writer gone)")
        count += 1
    return count
