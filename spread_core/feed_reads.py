"""Plain SQL for the reads of subscription feeds (catch-up and live), straight into event JSON.

The ORM's version of these reads (``Topic.objects.under(...).select_related("current")``, then
``Event.as_json`` per row) spent ~47 of the ~55 µs per event of a catch-up building querysets and
model instances. These are the same reads as one statement each, whose rows go to
``models.event_json``, the function ``Event.as_json`` uses too, so both give the same JSON
(tests/test_feed_reads.py compares them on random logs, SQLite and PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from django.db import connection

from .models import Change, Event, Topic, event_json
from .paths import SEPARATOR
from .statements import quoted_column, quoted_table
from .types import EventJSON

#: The event columns a feed's JSON is built from, in ``event_json``'s order (after the path).
_EVENT_FIELDS = (
    "event_id",
    "iteration",
    "origin",
    "date",
    "content_type",
    "size",
    "complete",
    "deleted",
    "aborted",
    "is_blob",
    "value",
)


@cache  # per database vendor: quoting is the backend's
def _statements(vendor: str) -> dict[str, str]:
    event_columns = ", ".join(f"e.{quoted_column(Event, name)}" for name in _EVENT_FIELDS)
    topic_path, topic_changed = f"t.{quoted_column(Topic, 'path')}", f"t.{quoted_column(Topic, 'changed')}"
    event_key, event_topic = f"e.{quoted_column(Event, 'iteration')}", f"e.{quoted_column(Event, 'topic_id')}"
    return {
        # The current event of each topic changed after the cursor; a topic left without any
        # value by an abort has none (LEFT JOIN: its e columns are NULL).
        "current": (
            f"SELECT {topic_path}, {topic_changed}, t.{quoted_column(Topic, 'id')}, {event_columns} "
            f"FROM {quoted_table(Topic)} t LEFT JOIN {quoted_table(Event)} e "
            f"ON {event_key} = t.{quoted_column(Topic, 'current_id')} "
            f"WHERE {topic_changed} > %s{{under}} ORDER BY {topic_changed} LIMIT %s"
        ),
        # Every log entry after the cursor, with the event it is about.
        "history": (
            f"SELECT {topic_path}, c.{quoted_column(Change, 'iteration')}, {event_columns} "
            f"FROM {quoted_table(Change)} c "
            f"JOIN {quoted_table(Event)} e ON {event_key} = c.{quoted_column(Change, 'event_id')} "
            f"JOIN {quoted_table(Topic)} t ON t.{quoted_column(Topic, 'id')} = {event_topic} "
            f"WHERE c.{quoted_column(Change, 'iteration')} > %s{{under}} "
            f"ORDER BY c.{quoted_column(Change, 'iteration')} LIMIT %s"
        ),
        # The last aborted event of topics without a current one.
        "aborted": (
            f"SELECT {event_topic}, {event_columns} FROM {quoted_table(Event)} e "
            f"WHERE {quoted_column(Event, 'aborted')} AND {event_topic} IN ({{ids}}) ORDER BY {event_key}"
        ),
        "under": f" AND ({topic_path} = %s OR SUBSTR({topic_path}, 1, %s) = %s)",
    }


def _under(prefix: str) -> tuple[str, list[Any]]:
    """The path condition of a prefix (``models.under_filter``'s, byte for byte) and its parameters."""
    if prefix == "":
        return "", []
    head = prefix + SEPARATOR
    return _statements(connection.vendor)["under"], [prefix, len(head), head]


def _json(path: str, iteration: int, columns: Sequence[Any]) -> EventJSON:
    """Event JSON from a row's event columns (``_EVENT_FIELDS``), with the entry's iteration."""
    event_id, _, origin, date, content_type, size, complete, deleted, aborted, is_blob, value = columns
    return event_json(
        event_id,
        path,
        iteration,
        origin,
        date,
        content_type,
        size,
        complete,
        deleted,
        aborted,
        is_blob,
        value,
    )


def current_after(prefix: str, cursor: int, limit: int) -> list[EventJSON]:
    """The current event of each topic under ``prefix`` that changed after ``cursor`` (at most
    ``limit``, in order of change), each with the iteration of that change; for a topic left
    without a value by an abort, its last aborted event (to tell subscribers)."""
    statements = _statements(connection.vendor)
    condition, parameters = _under(prefix)
    with connection.cursor() as cursor_:
        cursor_.execute(statements["current"].format(under=condition), [cursor, *parameters, limit])
        rows = cursor_.fetchall()
        orphans = [row[2] for row in rows if row[4] is None]  # no current event
        aborted: dict[int, Sequence[Any]] = {}
        if orphans:
            ids = ", ".join(["%s"] * len(orphans))
            cursor_.execute(statements["aborted"].format(ids=ids), orphans)
            aborted = {row[0]: row[1:] for row in cursor_.fetchall()}  # the last one per topic wins
    events: list[EventJSON] = []
    for row in rows:
        path, changed, topic_id, columns = row[0], row[1], row[2], row[3:]
        if columns[1] is None:
            columns = aborted.get(topic_id)
            if columns is None:
                continue
        events.append(_json(path, changed, columns))
    return events


def history_after(prefix: str, cursor: int, limit: int) -> list[EventJSON]:
    """Every log entry about a topic under ``prefix`` after ``cursor`` (at most ``limit``, in
    order), as the JSON of its event with the entry's iteration."""
    condition, parameters = _under(prefix)
    with connection.cursor() as cursor_:
        cursor_.execute(
            _statements(connection.vendor)["history"].format(under=condition), [cursor, *parameters, limit]
        )
        return [_json(row[0], row[1], row[2:]) for row in cursor_.fetchall()]
