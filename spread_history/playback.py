"""Playback: the events of a subtree between two points, in order, replayed into another prefix
(as new writes, so subscribers of that prefix see them arrive) or handed to a callable, paced by
their original dates divided by a speed factor."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.db.models import QuerySet

from spread_core import api
from spread_core.clock import MICROSECONDS
from spread_core.models import Event
from spread_core.paths import TopicPath
from spread_core.reader import ValueReader

#: Longest pause between two replayed events, whatever the gap between their dates.
MAX_PAUSE = 10.0
BATCH = 500


def events_between(prefix: TopicPath, start: dict[str, int], end: dict[str, int]) -> QuerySet[Event]:
    """Complete events under ``prefix`` after ``start`` and up to ``end``: points given as
    ``{"at": iteration}`` (log order) or ``{"at_date": µs}`` (date order); ``{}`` is open."""
    events = Event.objects.under(prefix).filter(aborted=False, complete=True).select_related("topic")
    if "at" in start:
        events = events.filter(iteration__gt=start["at"])
    if "at_date" in start:
        events = events.filter(date__gt=start["at_date"])
    if "at" in end:
        events = events.filter(iteration__lte=end["at"])
    if "at_date" in end:
        events = events.filter(date__lte=end["at_date"])
    by_date = "at_date" in start or "at_date" in end
    return events.order_by("date", "iteration") if by_date else events.order_by("iteration")


def _in_batches(events: QuerySet[Event]) -> Iterator[Event]:
    """``events`` read a batch at a time, without a cursor held open between two steps (a
    streamed replay may run each step on another thread and database connection). The source
    prefix does not change while it is replayed elsewhere, so the offsets stay valid."""
    offset = 0
    while batch := list(events[offset : offset + BATCH]):
        yield from batch
        offset += len(batch)


def rebased(path: str, prefix: TopicPath, into: TopicPath) -> TopicPath:
    """``path`` (under ``prefix``) moved under ``into``."""
    return TopicPath(into.segments + TopicPath.from_canonical(path).segments[len(prefix.segments) :])


@dataclass
class Player:
    prefix: TopicPath
    into: TopicPath | None
    speed: float = 1.0
    origin: str = "spread_playback"
    sleep: Callable[[float], None] = time.sleep

    def pause_before(self, event: Event, previous: Event | None) -> float:
        if previous is None or self.speed <= 0:
            return 0.0
        gap = (event.date - previous.date) / MICROSECONDS / self.speed
        return min(max(gap, 0.0), MAX_PAUSE)

    def steps(self, events: QuerySet[Event]) -> Iterator[Event]:
        """Replay ``events`` in order, yielding each after it was written under ``into`` (a
        tombstone stays a tombstone)."""
        previous: Event | None = None
        for event in _in_batches(events):
            self.sleep(self.pause_before(event, previous))
            if self.into is not None:
                self.write(event)
            yield event
            previous = event

    def play(self, events: QuerySet[Event], on_event: Callable[[Event], None] = lambda e: None) -> int:
        """Replay ``events``, passing each to ``on_event``; returns how many."""
        count = 0
        for event in self.steps(events):
            on_event(event)
            count += 1
        return count

    def write(self, event: Event) -> None:
        assert self.into is not None
        path = rebased(event.topic.path, self.prefix, self.into)
        if event.deleted:
            api.delete(path, origin=self.origin)
            return
        value = bytes(event.value or b"") if not event.is_blob else iter(ValueReader(event))
        api.post(path, value, content_type=event.content_type, origin=self.origin)
