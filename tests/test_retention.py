"""Retention: the last N events per topic and/or recent events are kept, a topic's current event
always; expired events go to a gzip NDJSON archive that spread_import restores; subscribers and
catch-ups keep working after a prune."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import override_settings

from spread_core import api
from spread_core.clock import now_us
from spread_core.models import Event
from spread_core.paths import TopicPath
from spread_core.subscriptions import read_after
from spread_history.retention import Policy, expired, prune
from spread_history.snapshot import import_snapshot

from .blob_stores import spread_with

DATE = 1_764_130_000_000_000
pytestmark = pytest.mark.django_db


def history(path: str) -> list[bytes | None]:
    return [None if e.deleted else bytes(e.value or b"") for e in Event.objects.filter(topic__path=path)]


def test_keep_last_keeps_the_newest_events_of_each_topic_and_always_the_current_one() -> None:
    for i in range(5):
        api.post("k/a", f"a{i}", date=DATE + i)
    api.post("k/b", "winner", date=DATE + 100)
    for i in range(3):
        api.post("k/b", f"late {i}", date=DATE + i)  # too_late: the current is the oldest event
    assert prune(Policy(keep_last=2)) == 3 + 1
    assert history("k/a") == [b"a3", b"a4"]
    # The two newest stay, and the current one too though it is older than them.
    assert history("k/b") == [b"winner", b"late 1", b"late 2"]
    assert api.get("k/b").value == b"winner"  # type: ignore[union-attr]


def test_keep_seconds_keeps_recent_events_and_nothing_goes_without_a_policy() -> None:
    api.post("t/a", "old", date=DATE)
    api.post("t/a", "new", date=DATE + 1)
    assert prune(Policy()) == 0
    assert expired(Policy(keep_seconds=3600)).count() == 0  # both stored just now
    assert list(expired(Policy(keep_seconds=3600), now=now_us() + 7200 * 1_000_000)) == [
        Event.objects.get(value=b"old")
    ]


def test_pruned_events_are_archived_by_day_and_the_archive_restores_them(tmp_path: Path) -> None:
    for i in range(4):
        api.post("arc/x", f"v{i}", date=DATE + i)
    api.delete("arc/y", date=DATE)
    api.post("arc/y", "revived", date=DATE + 1)
    subscriber_view = {
        e["path"]: e["id"] for e in read_after(TopicPath.from_canonical("arc"), 0, history=False)[0]
    }

    removed = prune(Policy(keep_last=1, archive_dir=str(tmp_path)))
    assert removed == 3 + 1
    files = list(tmp_path.glob("spread-archive-*.ndjson.gz"))
    assert len(files) == 1
    # A subscriber catching up from 0 still gets every current value.
    after = {e["path"]: e["id"] for e in read_after(TopicPath.from_canonical("arc"), 0, history=False)[0]}
    assert after == subscriber_view

    prune(Policy(keep_last=1, archive_dir=str(tmp_path)))  # nothing more: no new member
    with gzip.open(files[0], "rt") as archive:
        text = archive.read()
    Event.objects.all().delete()
    report = import_snapshot(io.StringIO(text))
    assert report.stored == 4
    assert history("arc/x") == [b"v0", b"v1", b"v2"]
    assert history("arc/y") == [None]


@override_settings(SPREAD=spread_with(RETENTION={"KEEP_LAST": 1}))
def test_the_prune_command_applies_the_setting_and_has_a_dry_run() -> None:
    for i in range(3):
        api.post("cmd/x", f"v{i}", date=DATE + i)
    out = io.StringIO()
    call_command("spread_prune", "--dry-run", stdout=out)
    assert "2 event(s) would be pruned" in out.getvalue()
    assert Event.objects.count() == 3
    call_command("spread_prune", "--no-progress", stdout=out)
    assert "2 event(s) deleted" in out.getvalue()
    assert history("cmd/x") == [b"v2"]
