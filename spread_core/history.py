"""A topic's timeline: every event stored for it, in iteration order, with where each stands
(current, superseded, too_late, deleted, aborted). Shared by the JSON history endpoint, the admin
and ``spread_history``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .models import Event, Topic
from .paths import TopicPath
from .reader import topic_at

DEFAULT_PAGE = 100
MAX_PAGE = 1000


@dataclass(frozen=True)
class TimelinePage:
    topic: Topic | None
    events: list[Event]
    next_after: int | None  # pass as ``after`` for the next page; None on the last one

    def as_json(self) -> dict[str, Any]:
        current_id = self.topic.current_id if self.topic else None
        return {
            "path": self.topic.path if self.topic else None,
            "current": self.topic.current.event_id if self.topic and self.topic.current else None,
            "events": [
                {**event.as_json(), "status": event.history_status(current_id)} for event in self.events
            ],
            "next_after": self.next_after,
        }


def timeline(path: TopicPath, *, after: int = 0, limit: int = DEFAULT_PAGE) -> TimelinePage:
    """Up to ``limit`` events of the topic at ``path`` stored after iteration ``after``."""
    topic = topic_at(path.require_topic())
    if topic is None:
        return TimelinePage(None, [], None)
    limit = max(1, min(limit, MAX_PAGE))
    rows = list(Event.objects.for_topic(topic).filter(iteration__gt=after).order_by("iteration")[: limit + 1])
    for event in rows:
        event.topic = topic
    more = len(rows) > limit
    events = rows[:limit]
    return TimelinePage(topic, events, events[-1].iteration if more else None)
