"""Retention: which past events expire under ``SPREAD["RETENTION"]``, and pruning them into an
archive (or deleting them). A topic's current event (value or tombstone) never expires, so a
subscriber's resume cursor and a peer's resync keep working: they need only current values.

Archive files are ``ARCHIVE_DIR/spread-archive-YYYY-MM-DD.ndjson.gz``, one per day the events
were stored, each run appending a gzip member that is a snapshot (``spread_import`` restores it).
"""

from __future__ import annotations

import gzip
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.db import transaction
from django.db.models import F, QuerySet, Window
from django.db.models.functions import RowNumber

from spread_core.blobs import blob_store
from spread_core.clock import MICROSECONDS, now_us
from spread_core.conf import spread_settings
from spread_core.models import Event, Topic

from .snapshot import write_event, write_header

BATCH = 500


@dataclass(frozen=True)
class Policy:
    """Keep the last ``keep_last`` events of each topic and/or the events stored in the last
    ``keep_seconds``; an event goes when no rule keeps it. No rule: keep everything."""

    keep_last: int | None = None
    keep_seconds: float | None = None
    archive_dir: str | None = None

    @classmethod
    def from_settings(cls) -> Policy:
        setting = spread_settings.RETENTION or {}
        return cls(setting.get("KEEP_LAST"), setting.get("KEEP_SECONDS"), setting.get("ARCHIVE_DIR"))

    @property
    def keeps_everything(self) -> bool:
        return self.keep_last is None and self.keep_seconds is None


def expired(policy: Policy, now: int | None = None) -> QuerySet[Event]:
    """The events ``policy`` lets go, oldest first (never a topic's current event)."""
    if policy.keeps_everything:
        return Event.objects.none()
    events = Event.objects.exclude(pk__in=Topic.objects.filter(current__isnull=False).values("current"))
    if policy.keep_seconds is not None:
        cutoff = (now or now_us()) - int(policy.keep_seconds * MICROSECONDS)
        events = events.filter(received__lt=cutoff)
    if policy.keep_last is not None:
        newest_first = Window(RowNumber(), partition_by=[F("topic_id")], order_by=F("iteration").desc())
        ranked = Event.objects.annotate(rank=newest_first).filter(rank__gt=policy.keep_last)
        events = events.filter(pk__in=ranked.values("pk"))
    return events.select_related("topic").order_by("iteration")


def _day(event: Event) -> str:
    return datetime.fromtimestamp(event.received / MICROSECONDS, tz=UTC).strftime("%Y-%m-%d")


def archive(events: list[Event], directory: str) -> list[Path]:
    """Append ``events`` to the archive files of the days they were stored; returns the files."""
    by_day: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_day[_day(event)].append(event)
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for day, day_events in sorted(by_day.items()):
        path = folder / f"spread-archive-{day}.ndjson.gz"
        with gzip.open(path, "at", encoding="utf-8") as out:
            write_header(out, archived=now_us(), events=len(day_events))
            for event in day_events:
                write_event(out, event)
        written.append(path)
    return written


def prune(policy: Policy, *, dry_run: bool = False, progress: Callable[[int], None] = lambda n: None) -> int:
    """Archive (when ``archive_dir`` is set) then delete the expired events, in batches; returns
    how many went (or would go, with ``dry_run``)."""
    if dry_run:
        return expired(policy).count()
    removed = 0
    while True:
        batch = list(expired(policy)[:BATCH])
        if not batch:
            return removed
        if policy.archive_dir:
            archive(batch, policy.archive_dir)
        with transaction.atomic():
            pks = [event.pk for event in batch]
            blob_store().discard([event.pk for event in batch if event.is_blob])
            Event.objects.filter(pk__in=pks).delete()
        removed += len(batch)
        progress(len(batch))
