"""Proxy models that give the history admin its place and its permissions (no tables of its own:
history is spread_core's events)."""

from __future__ import annotations

from spread_core.models import Topic


class TopicHistory(Topic):
    """A topic seen through its history: timeline, rollback, playback."""

    class Meta:
        proxy = True
        verbose_name = "topic history"
        verbose_name_plural = "topic histories"
        permissions = [
            ("rollback_topic", "Can roll topics and subtrees back"),
            ("playback_topic", "Can play events back"),
            ("prune_history", "Can prune history by the retention policy"),
        ]
