"""Snapshots: ``export`` writes every event under a prefix (values, tombstones, too_late writes,
blob bytes) as NDJSON, read in one consistent transaction; ``import_snapshot`` stores them again
by the last-writer-wins rule, so importing twice, or into a live node or another node, is safe.
``digest`` fingerprints the history and current values under a prefix, to compare two stores.

Format (one JSON object per line): a header ``{"format": "spread-snapshot-1", ...}``, then each
event in iteration order as a replication log entry (see docs/replication.md), each blob entry
followed by ``{"chunk": "<event id>", "data_b64": "..."}`` lines with its bytes. Several snapshots
end to end (an archive file) read as one.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from django.db import connection, transaction

from spread_core import api, store
from spread_core.conf import spread_settings
from spread_core.exceptions import SpreadError
from spread_core.iteration import current_iteration
from spread_core.models import Change, Event, Topic
from spread_core.paths import TopicPath
from spread_core.reader import ValueReader
from spread_core.replication.apply import check_entry, store_entry
from spread_core.replication.log import entry_json

FORMAT = "spread-snapshot-1"
READ_BATCH = 500

Progress = Callable[[int], None]


class InvalidSnapshot(SpreadError):
    default_code = "invalid_snapshot"
    default_detail = "This is not a Spread snapshot."


def _events(prefix: TopicPath, head: int) -> Iterator[Event]:
    """Complete, not aborted events under ``prefix`` up to ``head``, in iteration order, in batches."""
    last = 0
    while True:
        batch = list(
            Event.objects.under(prefix)
            .filter(iteration__gt=last, iteration__lte=head, aborted=False, complete=True)
            .select_related("topic")
            .order_by("iteration")[:READ_BATCH]
        )
        if not batch:
            return
        yield from batch
        last = batch[-1].iteration


def export(prefix: TopicPath, out: TextIO, progress: Progress = lambda n: None) -> int:
    """Write the snapshot of ``prefix`` to ``out``; returns the number of events written.

    Everything is read in one transaction (REPEATABLE READ on PostgreSQL; SQLite's WAL read
    snapshot), so the snapshot is consistent even while the node takes writes. Uploads still in
    progress are left out (they are not values yet)."""
    outermost = not connection.in_atomic_block  # else the caller's transaction decides
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        head = current_iteration()
        count = Event.objects.under(prefix).filter(iteration__lte=head, aborted=False, complete=True).count()
        write_header(out, prefix=prefix.canonical, iteration=head, events=count)
        written = 0
        for event in _events(prefix, head):
            write_event(out, event)
            written += 1
            progress(1)
    return written


def write_header(out: TextIO, **fields: Any) -> None:
    out.write(json.dumps({"format": FORMAT, "node": spread_settings.NODE_NAME, **fields}) + "\n")


def write_event(out: TextIO, event: Event) -> None:
    """One event as snapshot lines: its entry, then its bytes when it is a blob."""
    entry = entry_json(Change(iteration=event.iteration, event=event, kind=Change.WRITE))
    out.write(json.dumps(entry) + "\n")
    if event.is_blob and event.complete:
        for chunk in ValueReader(event):
            out.write(
                json.dumps({"chunk": event.event_id, "data_b64": base64.b64encode(chunk).decode()}) + "\n"
            )


@dataclass
class _Upload:
    event: Event
    size: int
    sha256: str
    stored: int = 0


@dataclass
class ImportReport:
    events: int = 0
    stored: int = 0
    existing: int = 0
    skipped_chunks: int = field(default=0)


def import_snapshot(lines: Iterable[str], progress: Progress = lambda n: None) -> ImportReport:
    """Store the events of a snapshot; events already here (same id) change nothing."""
    report = ImportReport()
    upload: _Upload | None = None
    header_seen = False
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise InvalidSnapshot(f"Line {number} is not JSON.") from exc
        is_header = isinstance(item, dict) and item.get("format") == FORMAT
        if not header_seen and not is_header:
            raise InvalidSnapshot(f"The first line must be a {FORMAT} header.")
        if is_header:  # archives are several snapshots end to end
            header_seen = True
            continue
        if isinstance(item, dict) and "chunk" in item:
            if upload is None or item["chunk"] != upload.event.event_id:
                report.skipped_chunks += 1  # bytes of an event that was already here
                continue
            data = base64.b64decode(item.get("data_b64", ""), validate=True)
            store.append_chunk(upload.event, upload.stored, data)
            upload.stored += len(data)
            continue
        _finish(upload)
        upload = None
        entry, path = check_entry(item, [""])
        with api.transaction():
            existed = Event.objects.filter(event_id=entry["id"], aborted=False).exists()
            new_upload = store_entry(entry, path, source="")
        report.events += 1
        report.existing += existed
        report.stored += not existed
        if new_upload is not None:
            upload = _Upload(new_upload, int(entry.get("size", 0)), str(entry.get("sha256", "")))
        progress(1)
    _finish(upload)
    if not header_seen:
        raise InvalidSnapshot("The snapshot is empty.")
    return report


def _finish(upload: _Upload | None) -> None:
    if upload is not None:
        store.finish_upload(upload.event, size=upload.size, received_sha256=upload.sha256)


def digest(prefix: TopicPath) -> str:
    """SHA-256 over every complete event under ``prefix`` (id, date, origin, tombstone, content
    type, value digest) and every topic's current event: equal digests, equal stores."""
    lines = []
    for event in Event.objects.under(prefix).filter(aborted=False, complete=True).select_related("topic"):
        value = event.sha256 if event.is_blob else hashlib.sha256(bytes(event.value or b"")).hexdigest()
        lines.append(
            f"event {event.event_id} {event.topic.path} {event.date} {event.origin} {event.deleted} "
            f"{event.content_type} {value}"
        )
    for path, current in Topic.objects.under(prefix).values_list("path", "current__event_id"):
        lines.append(f"current {path} {current}")
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()
