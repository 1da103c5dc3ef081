"""Storage: topics, their append-only events, the node's change log, blob chunks, the counter."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Collection, Sequence
from typing import Any, TypeVar

from django.db import models
from django.db.models.functions import Substr
from django.db.models.lookups import Exact

from .merge import EventKey
from .paths import SEPARATOR, TopicPath
from .types import EventJSON

ITERATION_COUNTER = "iteration"


def path_hash(canonical: str) -> str:
    """Fixed-size unique key of a canonical path (paths can be longer than an index allows)."""
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


#: Values per ``IN (...)`` list: well under the bound parameters a statement may take on SQLite.
IN_BATCH = 500
M = TypeVar("M", bound=models.Model)


def in_batches(queryset: models.QuerySet[M], field: str, values: Collection[Any]) -> list[M]:
    """The rows of ``queryset`` whose ``field`` is one of ``values``: one query per ``IN_BATCH``
    values (a batch of writes can name more paths than a statement takes parameters)."""
    ordered = list(values)
    rows: list[M] = []
    for start in range(0, len(ordered), IN_BATCH):
        rows.extend(queryset.filter(**{f"{field}__in": ordered[start : start + IN_BATCH]}))
    return rows


def under_filter(prefix: TopicPath | str | Sequence[str], field: str) -> models.Q:
    """``field`` is the canonical ``prefix`` or starts with ``prefix/``, compared byte for byte.

    Not ``__startswith``: SQLite's LIKE ignores ASCII case, so "A" would cover "a/x".
    """
    canonical = prefix if isinstance(prefix, str) else TopicPath.coerce(prefix).canonical
    if canonical == "":
        return models.Q()
    head = canonical + SEPARATOR
    starts_with_head: Exact[str] = Exact(Substr(models.F(field), 1, len(head)), head)
    return models.Q(**{field: canonical}) | models.Q(starts_with_head)


class TopicQuerySet(models.QuerySet["Topic"]):
    def under(self, prefix: TopicPath | str | Sequence[str]) -> TopicQuerySet:
        """Topics at ``prefix`` or below it."""
        return self.filter(under_filter(prefix, "path"))

    def written(self) -> TopicQuerySet:
        """Topics that have been written (not tree nodes that only hold descendants)."""
        return self.filter(changed__gt=0)


class Topic(models.Model):
    """A node of the path tree: a path that has held a value (``current`` is the winning event),
    or an ancestor of one (``current`` None, no events), so the tree can be browsed level by
    level through ``parent``."""

    path = models.TextField(help_text="Canonical (escaped, '/'-joined) path.")
    path_hash = models.CharField(max_length=64, unique=True, editable=False)
    depth = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=800, default="", help_text="Last segment of the path (canonical).")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    current = models.ForeignKey("Event", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    changed = models.BigIntegerField(
        default=0, db_index=True, help_text="Iteration of the last change of the current value."
    )

    objects = TopicQuerySet.as_manager()

    class Meta:
        ordering = ["path"]
        indexes = [models.Index(fields=["parent", "name"], name="topic_children")]

    def __str__(self) -> str:
        return self.path

    @property
    def topic_path(self) -> TopicPath:
        return TopicPath.from_canonical(self.path)


class EventQuerySet(models.QuerySet["Event"]):
    def for_topic(self, topic: Topic) -> EventQuerySet:
        return self.filter(topic=topic)

    def under(self, prefix: TopicPath | str | Sequence[str]) -> EventQuerySet:
        return self.filter(under_filter(prefix, "topic__path"))

    def live(self) -> EventQuerySet:
        """Events that can win: not aborted uploads."""
        return self.filter(aborted=False)

    def as_of(self, iteration: int) -> EventQuerySet:
        """Events that could win at ``iteration``: stored by then, and (an upload) complete by then."""
        completed_by_then = models.Exists(
            Change.objects.filter(event=models.OuterRef("pk"), kind=Change.COMPLETE, iteration__lte=iteration)
        )
        return (
            self.live().filter(iteration__lte=iteration).filter(models.Q(is_blob=False) | completed_by_then)
        )

    def as_of_date(self, date: int) -> EventQuerySet:
        """Complete events whose date is at most ``date`` (the merge clock, the same on every node)."""
        return self.live().filter(date__lte=date, complete=True)


class Event(models.Model):
    """One write to a topic (a value or a tombstone); never modified except an upload's progress."""

    iteration = models.BigIntegerField(primary_key=True, help_text="Node-local commit order.")
    event_id = models.CharField(max_length=32, db_index=True, help_text="Hash of (path, date, origin).")
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="events")
    origin = models.CharField(max_length=255)
    date = models.BigIntegerField(help_text="Microseconds since the epoch.")
    received = models.BigIntegerField(help_text="When this node stored it (microseconds).")
    deleted = models.BooleanField(default=False)
    too_late = models.BooleanField(default=False, help_text="Lost to the current value on arrival.")
    content_type = models.CharField(max_length=255, default="application/octet-stream")
    size = models.BigIntegerField(default=0)
    value = models.BinaryField(null=True, blank=True, help_text="Inline value (small values).")
    is_blob = models.BooleanField(default=False)
    complete = models.BooleanField(default=True)
    aborted = models.BooleanField(default=False)
    sha256 = models.CharField(max_length=64, blank=True, default="")
    lease_until = models.BigIntegerField(
        null=True, blank=True, help_text="An unfinished upload is dead after this (microseconds)."
    )
    source = models.CharField(
        max_length=255, blank=True, default="", help_text="Node it was replicated from ('' = written here)."
    )

    objects = EventQuerySet.as_manager()

    class Meta:
        ordering = ["iteration"]
        indexes = [models.Index(fields=["topic", "iteration"])]
        constraints = [
            # An aborted upload does not block a retry of the same event (same id).
            models.UniqueConstraint(
                fields=["event_id"], condition=models.Q(aborted=False), name="unique_live_event_id"
            )
        ]

    def __str__(self) -> str:
        return f"{self.topic.path}@{self.iteration}"

    @property
    def path(self) -> str:
        return self.topic.path

    @property
    def key(self) -> EventKey:
        return EventKey(self.date, self.origin)

    def history_status(self, current_id: int | None) -> str:
        """Where this event stands in its topic's history: ``aborted`` (an upload that broke off),
        ``too_late`` (lost to the current value on arrival), ``current``, ``deleted`` (a tombstone
        since superseded) or ``superseded``."""
        if self.aborted:
            return "aborted"
        if self.too_late:
            return "too_late"
        if self.pk == current_id:
            return "current"
        return "deleted" if self.deleted else "superseded"

    def as_json(self) -> EventJSON:
        """The wire form of an event (HTTP, websocket, SSE and the Python API)."""
        return event_json(
            self.event_id,
            self.path,
            self.iteration,
            self.origin,
            self.date,
            self.content_type,
            self.size,
            self.complete,
            self.deleted,
            self.aborted,
            self.is_blob,
            self.value,
        )


def event_json(
    event_id: str,
    path: str,
    iteration: int,
    origin: str,
    date: int,
    content_type: str,
    size: int,
    complete: bool,
    deleted: bool,
    aborted: bool,
    is_blob: bool,
    value: bytes | memoryview | None,
) -> EventJSON:
    """The wire form of an event from its fields (``Event.as_json``, and the feeds' plain-SQL reads,
    which build no model instance): the value is carried inline unless the event is a blob or a
    tombstone. Booleans may come as SQLite's 0/1."""
    data: dict[str, Any] = {
        "id": event_id,
        "path": path,
        "iteration": iteration,
        "from": origin,
        "date": date,
        "content_type": content_type,
        "size": size,
        "complete": bool(complete),
        "deleted": bool(deleted),
    }
    if aborted:
        data["aborted"] = True
    if value is not None and not is_blob and not deleted:
        raw = bytes(value)
        try:
            data["value"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            data["value_b64"] = base64.b64encode(raw).decode("ascii")
    return data  # type: ignore[return-value]


class ChangeQuerySet(models.QuerySet["Change"]):
    def under(self, prefix: TopicPath | str | Sequence[str]) -> ChangeQuerySet:
        """Log entries about topics at or below ``prefix``."""
        return self.filter(under_filter(prefix, "event__topic__path"))


class Change(models.Model):
    """One entry of the node's log: an event stored, an upload completed, an upload aborted.

    Its iteration comes from the counter, so the log is dense and in commit order; a stored event
    has the iteration of its ``write`` entry.
    """

    WRITE = "write"
    COMPLETE = "complete"
    ABORT = "abort"
    KINDS = [(WRITE, "write"), (COMPLETE, "upload complete"), (ABORT, "upload aborted")]

    iteration = models.BigIntegerField(primary_key=True)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="changes")
    kind = models.CharField(max_length=8, choices=KINDS)

    objects = ChangeQuerySet.as_manager()

    class Meta:
        ordering = ["iteration"]

    def __str__(self) -> str:
        return f"{self.iteration}: {self.kind} of the event stored at {self.event_id}"


class BlobChunk(models.Model):
    """One ordered piece of a large value, stored while the upload is still arriving."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        ordering = ["event", "index"]
        constraints = [models.UniqueConstraint(fields=["event", "index"], name="unique_chunk_index")]


class Counter(models.Model):
    """Named persistent counters; ``iteration`` is incremented under a row lock by every write."""

    name = models.CharField(primary_key=True, max_length=32)
    value = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


class Peer(models.Model):
    """An outgoing replication link: this node connects to ``url`` with ``token``, receives the
    events under ``prefixes`` (``[""]`` = everything) and sends its own under the same prefixes.
    The connector reads this table while the node runs; the state fields are its report."""

    url = models.CharField(
        max_length=500, unique=True, help_text="Base URL of the peer node (http://host:port/)."
    )
    token = models.TextField(help_text="Node credential issued by the peer (spread_token --node).")
    prefixes = models.JSONField(default=list, help_text='Canonical path prefixes; [""] is everything.')
    enabled = models.BooleanField(default=True)
    remote_node = models.CharField(max_length=255, blank=True, default="", editable=False)
    connected = models.BooleanField(default=False, editable=False)
    lag_events = models.BigIntegerField(default=0, editable=False)
    lag_seconds = models.FloatField(default=0.0, editable=False)
    last_error = models.TextField(blank=True, default="", editable=False)
    last_seen = models.BigIntegerField(default=0, editable=False, help_text="Last frame from the peer (µs).")
    resumed_from = models.BigIntegerField(
        default=0, editable=False, help_text="Cursor the last connection resumed from (peer iteration)."
    )
    entries_sent = models.BigIntegerField(
        default=0, editable=False, help_text="Log entries sent (this connection)."
    )
    entries_received = models.BigIntegerField(
        default=0, editable=False, help_text="Log entries received (this connection)."
    )

    class Meta:
        ordering = ["url"]

    def __str__(self) -> str:
        return self.url


class ReplicaCursor(models.Model):
    """The last iteration of a peer's log applied here, per link direction and prefix set;
    advanced in the transaction that applies the events, so a crash re-applies, never skips."""

    key = models.CharField(max_length=300, unique=True)
    cursor = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.key}={self.cursor}"
