"""Rollback: write a past value again as a NEW event (date = now, origin = who rolls back), for one
topic or for every topic of a subtree as of an iteration or a date, in one transaction. History
stays append-only, and the new events reach subscribers and peers like any other write."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from spread_core import api
from spread_core.clock import MICROSECONDS, now_us
from spread_core.exceptions import SpreadError
from spread_core.models import Event, Topic
from spread_core.paths import TopicPath
from spread_core.reader import ValueReader, event_as_of
from spread_core.types import PostReport


@dataclass(frozen=True)
class PlannedChange:
    """One topic of a subtree rollback: its current event (maybe a tombstone) and the event whose
    value it gets back (``target`` None: the topic had no value then, so it gets a tombstone)."""

    path: str
    current: Event | None
    target: Event | None

    @property
    def action(self) -> str:
        return "delete" if self.target is None else "restore"


def _value_event(event: Event | None) -> Event | None:
    return event if event is not None and not event.deleted and not event.aborted else None


def same_value(a: Event | None, b: Event | None) -> bool:
    """Both no value, or the same bytes and content type (a value restored earlier is the same
    value under a new event id: rolling back twice changes nothing the second time)."""
    if a is None or b is None:
        return a is b
    if a.event_id == b.event_id:
        return True
    if (a.content_type, a.size, a.is_blob) != (b.content_type, b.size, b.is_blob):
        return False
    return a.sha256 == b.sha256 if a.is_blob else bytes(a.value or b"") == bytes(b.value or b"")


def plan_rollback(
    prefix: TopicPath, *, at: int | None = None, at_date: int | None = None
) -> list[PlannedChange]:
    """What rolling ``prefix`` back to iteration ``at`` (or event date ``at_date``) would change:
    each topic whose current value is not the same as its value then."""
    if at is None and at_date is None:
        raise ValueError("plan_rollback needs an iteration (at) or a date (at_date).")
    changes = []
    topics = Topic.objects.under(prefix).select_related("current").order_by("path")
    for topic in topics.iterator(chunk_size=500):
        current = _value_event(topic.current)
        target = event_as_of(topic, at=at, at_date=at_date)
        if not same_value(current, target):
            changes.append(PlannedChange(topic.path, topic.current, target))
    return changes


def parse_point(text: str) -> dict[str, int]:
    """An iteration (digits) or an ISO date-time (UTC unless it says otherwise) → as-of arguments."""
    text = text.strip()
    if text.isdigit():
        return {"at": int(text)}
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise SpreadError("Give an iteration (a number) or a date like 2026-11-26T10:00:00.") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return {"at_date": int(moment.timestamp() * MICROSECONDS)}


def winning_date(currents: list[Event | None]) -> int:
    """Now, or just after the latest current date if that is ahead of this node's clock: a
    rollback must win over the values it replaces."""
    return max([now_us(), *(event.date + 1 for event in currents if event is not None)])


def restore(event: Event, *, origin: str, date: int | None = None) -> PostReport:
    """Write ``event``'s value again at its topic as a new event (a tombstone stays a tombstone),
    dated now (or just after the current value's date, if that is ahead)."""
    path = TopicPath.from_canonical(event.topic.path)
    if date is None:
        date = winning_date([Topic.objects.select_related("current").get(pk=event.topic_id).current])
    if _value_event(event) is None:
        return api.delete(path, origin=origin, date=date)
    value = bytes(event.value or b"") if not event.is_blob else iter(ValueReader(event))
    return api.post(path, value, content_type=event.content_type, origin=origin, date=date)


def rollback(
    prefix: TopicPath, *, origin: str, at: int | None = None, at_date: int | None = None
) -> list[PostReport]:
    """Apply ``plan_rollback`` as one transaction: each changed topic gets a new event (one date
    for all) with its value then, or a tombstone. Returns the reports of the new events."""
    with api.transaction():
        plan = plan_rollback(prefix, at=at, at_date=at_date)
        date = winning_date([change.current for change in plan])
        reports = []
        for change in plan:
            if change.target is None:
                reports.append(api.delete(TopicPath.from_canonical(change.path), origin=origin, date=date))
            else:
                reports.append(restore(change.target, origin=origin, date=date))
    return reports
