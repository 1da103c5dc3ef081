"""Set-based recording of a group commit's writes: the rows and answers that ``store._record``
gives applied to each write in turn, with a handful of statements for the whole batch; and
``new_event``, the step of deciding and building one write's event that both share.

Statements per batch: one query for the event ids already stored; one for the topics written to,
with the date, origin and flags of their current event; for new topics, one query for their
missing ancestors and one insert per depth (``tree.new_nodes``); then one insert each for the
events and their log entries, the first bytes of blobs (to the blob store), and one UPDATE run for
each topic whose
current value changed. The counter row is written once, by ``iteration.shared_counter``. The
reads and the update are plain SQL (``statements``): the ORM's Python cost more than the database.

Between the reads and the writes, each write is decided in queue order by ``merge.decide``
against its topic's current event as the writes before it left it: a second write to a topic
sees the first as current if that one won, a repeated event id is ``EXISTING`` after its first
occurrence, and a create-only write to a topic with a value gets ``TopicExists`` (it alone: it
stores nothing and takes no iteration).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from . import iteration, statements, tree
from .blobs import blob_store
from .clock import now_us
from .exceptions import InvalidPath, TopicExists
from .merge import EventKey, Outcome, decide
from .models import Change, Counter, Event, Topic, in_batches, path_hash

if TYPE_CHECKING:
    from .store import WriteRequest

#: A write's answer: the stored (or already stored) event and what storing it did, or the error
#: it fails with.
Answer = tuple[Event, Outcome] | Exception


class PendingWrite(Protocol):
    """The arguments of one ``store._record`` call."""

    @property
    def request(self) -> WriteRequest: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def is_blob(self) -> bool: ...
    @property
    def sha256(self) -> str: ...


def record_all(writes: Sequence[PendingWrite], *, lease_until: int) -> list[Answer]:
    """Store ``writes`` in queue order inside the batch's transaction (counter locked by
    ``iteration.shared_counter``); return each one's answer. ``lease_until`` is the lease of the
    uploads they start. Database errors are raised, for the batch to be re-run write by write."""
    return _Batch(writes, lease_until).record()


class _Batch:
    def __init__(self, writes: Sequence[PendingWrite], lease_until: int) -> None:
        self.writes = writes
        self.lease_until = lease_until
        self.event_ids = [write.request.event_id for write in writes]
        self.events: list[Event] = []
        self.started: list[tuple[Event, bytes]] = []  # blobs and their first bytes
        self.moved: dict[str, Topic] = {}  # topics whose current event changed, by path

    def record(self) -> list[Answer]:
        self.stored = _stored(set(self.event_ids))
        self.topics = _topics(
            {
                write.request.path.canonical
                for write, eid in zip(self.writes, self.event_ids, strict=True)
                if eid not in self.stored and not write.request.path.is_root
            }
        )
        self.counter = iteration.lock_counter()
        answers = [self._decide(write, eid) for write, eid in zip(self.writes, self.event_ids, strict=True)]
        statements.insert_rows(self.events)
        statements.insert_rows(
            [Change(iteration=event.iteration, event=event, kind=Change.WRITE) for event in self.events]
        )
        if self.started:
            blob_store().begin_all(self.started)
        if self.moved:
            statements.move_current(self.moved.values())
        return answers

    def _decide(self, write: PendingWrite, eid: str) -> Answer:
        """One write, as ``store._record`` does it, against the state the writes before it left."""
        request = write.request
        try:
            path = request.path.require_topic().canonical
        except InvalidPath as exc:
            return exc
        existing = self.stored.get(eid)
        if existing is not None:
            return existing, Outcome.EXISTING
        try:
            event, outcome = new_event(
                write, eid, self.topics[path], self.counter, lease_until=self.lease_until
            )
        except TopicExists as exc:
            return exc
        topic = event.topic
        self.events.append(event)
        if write.is_blob:
            self.started.append((event, write.value or b""))
        if outcome is Outcome.OK:
            topic.current, topic.changed = event, event.iteration
            self.moved[path] = topic
        self.stored[eid] = event
        return event, outcome


def new_event(
    write: PendingWrite, eid: str, topic: Topic, counter: Counter, *, lease_until: int
) -> tuple[Event, Outcome]:
    """The event ``write`` adds to ``topic``, not saved yet, with the next iteration of
    ``counter``, and what it does to the topic's current event (``topic.current``): the step that
    ``store._record`` and a set-based batch share. Raises ``TopicExists``, before taking an
    iteration, for a create-only write to a topic that has a value."""
    request = write.request
    current = topic.current
    if request.create_only and current is not None and not current.deleted and not current.aborted:
        raise TopicExists(_whole(current, topic))
    outcome = decide(current.key if current else None, EventKey(request.date, request.origin))
    event = Event(
        iteration=iteration.take_next(counter),
        event_id=eid,
        topic=topic,
        origin=request.origin,
        date=request.date,
        received=now_us(),
        deleted=request.deleted,
        too_late=outcome is Outcome.TOO_LATE,
        content_type=request.content_type,
        size=0 if write.value is None else len(write.value),
        value=None if write.is_blob else write.value,
        is_blob=write.is_blob,
        complete=not write.is_blob,
        sha256=write.sha256,
        # A replicated upload has no lease: its bytes come from the peer, and a link that
        # drops resumes it (readers wait) instead of aborting it.
        lease_until=lease_until if write.is_blob and not request.source else None,
        source=request.source,
    )
    return event, outcome


def _stored(event_ids: set[str]) -> dict[str, Event]:
    """The live events among ``event_ids``, by id, with their topics: their ids in one plain
    query (new almost always), the few found through the ORM."""
    found = statements.live_event_ids(event_ids)
    if not found:
        return {}
    live = Event.objects.select_related("topic").filter(aborted=False)
    return {event.event_id: event for event in in_batches(live, "event_id", found)}


def _topics(paths: set[str]) -> dict[str, Topic]:
    """The topic rows of ``paths`` by path, the missing ones created with their ancestors."""
    found = statements.topics_with_current([path_hash(path) for path in paths])
    topics = {topic.path: topic for topic in found}
    missing = paths - topics.keys()
    if missing:
        topics.update(tree.new_nodes(missing, topics))
    return topics


def _whole(current: Event, topic: Topic) -> Event:
    """The current event of ``topic`` with every field and its topic (a 409 answer shows them)."""
    if current.get_deferred_fields():  # a batch read only what deciding needs
        current = Event.objects.get(pk=current.pk)
    current.topic = topic
    return current
