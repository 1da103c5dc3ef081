"""Storage: topics, their append-only events, blob chunks and the iteration counter."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import Any

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


def _under_filter(prefix: TopicPath | str | Sequence[str], field: str) -> models.Q:
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
        return self.filter(_under_filter(prefix, "path"))

    def get_for_path(self, path: TopicPath) -> Topic | None:
        return self.filter(path_hash=path_hash(path.canonical)).first()


class Topic(models.Model):
    """A node of the tree that has held a value; ``current`` is the winning event."""

    path = models.TextField(help_text="Canonical (escaped, '/'-joined) path.")
    path_hash = models.CharField(max_length=64, unique=True, editable=False)
    depth = models.PositiveSmallIntegerField()
    current = models.ForeignKey("Event", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    objects = TopicQuerySet.as_manager()

    class Meta:
        ordering = ["path"]

    def __str__(self) -> str:
        return self.path

    @property
    def topic_path(self) -> TopicPath:
        return TopicPath.from_canonical(self.path)


class EventQuerySet(models.QuerySet["Event"]):
    def for_topic(self, topic: Topic) -> EventQuerySet:
        return self.filter(topic=topic)

    def under(self, prefix: TopicPath | str | Sequence[str]) -> EventQuerySet:
        return self.filter(_under_filter(prefix, "topic__path"))

    def after(self, iteration: int) -> EventQuerySet:
        return self.filter(iteration__gt=iteration).order_by("iteration")

    def live(self) -> EventQuerySet:
        """Events that can win: not aborted uploads."""
        return self.filter(aborted=False)


class Event(models.Model):
    """One write to a topic (a value or a tombstone); never modified except an upload's progress."""

    id = models.CharField(primary_key=True, max_length=32, editable=False)
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="events")
    origin = models.CharField(max_length=255)
    date = models.BigIntegerField(help_text="Microseconds since the epoch.")
    iteration = models.BigIntegerField(unique=True, help_text="Node-local commit order.")
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

    objects = EventQuerySet.as_manager()

    class Meta:
        ordering = ["iteration"]
        indexes = [models.Index(fields=["topic", "iteration"])]

    def __str__(self) -> str:
        return f"{self.path}@{self.iteration}"

    @property
    def path(self) -> str:
        return self.topic.path

    @property
    def key(self) -> EventKey:
        return EventKey(self.date, self.origin)

    def as_json(self) -> EventJSON:
        """The wire form of an event (HTTP, websocket, SSE and the Python API)."""
        data: dict[str, Any] = {
            "id": self.id,
            "path": self.path,
            "iteration": self.iteration,
            "from": self.origin,
            "date": self.date,
            "content_type": self.content_type,
            "size": self.size,
            "complete": self.complete,
            "deleted": self.deleted,
        }
        if not self.is_blob and self.value is not None and not self.deleted:
            raw = bytes(self.value)
            try:
                data["value"] = raw.decode("utf-8")
            except UnicodeDecodeError:
                data["value_b64"] = base64.b64encode(raw).decode("ascii")
        return data  # type: ignore[return-value]


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
