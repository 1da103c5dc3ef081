"""The part of this node's log a peer asks for: entries under its prefixes after its cursor, in
iteration order, without the events that came from that peer (no echo), in frames of bounded size."""

from __future__ import annotations

import base64
from typing import Any

from django.db.models import Q

from ..blobs import blob_store
from ..iteration import current_iteration
from ..models import Change, Event, under_filter

#: Entries read per query.
BATCH = 500
#: Inline value bytes per frame: well under the websocket frame limit once base64-encoded.
FRAME_VALUE_BYTES = 256 * 1024


def prefixes_filter(prefixes: list[str], field: str) -> Q:
    """Rows whose ``field`` path is under any of ``prefixes``."""
    if "" in prefixes:
        return Q()  # the root covers everything (and an empty Q would vanish from an OR)
    query = Q(pk__in=[])
    for prefix in prefixes:
        query |= under_filter(prefix, field)
    return query


def entry_json(change: Change) -> dict[str, Any]:
    """One log entry on the wire: the event with everything a peer needs to store it the same."""
    event = change.event
    entry: dict[str, Any] = {
        "kind": change.kind,
        "iteration": change.iteration,
        "id": event.event_id,
        "path": event.topic.path,
        "from": event.origin,
        "date": event.date,
        "content_type": event.content_type,
        "deleted": event.deleted,
        "is_blob": event.is_blob,
        "size": event.size,
        "complete": event.complete,
        "aborted": event.aborted,
        "sha256": event.sha256,
    }
    if not event.is_blob and event.value is not None:
        entry["value_b64"] = base64.b64encode(bytes(event.value)).decode("ascii")
    return entry


def read_log(
    prefixes: list[str], cursor: int, *, exclude_source: str
) -> tuple[list[dict[str, Any]], int, int]:
    """Entries after ``cursor`` under ``prefixes``, skipping events from ``exclude_source``.

    Returns (entries, upto, head): ``upto`` is the cursor that follows the entries (the node's
    head when nothing newer matched: the head is read before the query), ``head`` the node's
    current iteration, for the peer's lag.
    """
    head = current_iteration()
    changes = (
        Change.objects.filter(prefixes_filter(prefixes, "event__topic__path"), iteration__gt=cursor)
        .exclude(event__source=exclude_source)
        .select_related("event__topic")
        .order_by("iteration")[:BATCH]
    )
    entries: list[dict[str, Any]] = []
    value_bytes = 0
    for change in changes:
        entry = entry_json(change)
        entries.append(entry)
        value_bytes += len(entry.get("value_b64", ""))
        if value_bytes >= FRAME_VALUE_BYTES:
            break
    if len(entries) == 0:
        return [], max(cursor, head), head
    return entries, entries[-1]["iteration"], max(head, entries[-1]["iteration"])


def blob_events(prefixes: list[str], source: str) -> list[Event]:
    """Unfinished uploads replicated from ``source`` under ``prefixes``: bytes to resume, each
    with ``size`` the bytes stored so far."""
    uploads = list(
        Event.objects.filter(
            prefixes_filter(prefixes, "topic__path"),
            source=source,
            is_blob=True,
            complete=False,
            aborted=False,
        ).select_related("topic")
    )
    blobs = blob_store()
    for upload in uploads:
        upload.size = blobs.stored_size(upload)
    return uploads
