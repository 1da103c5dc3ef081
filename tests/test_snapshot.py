"""Export → wipe → import gives back the same history and current values (digest comparison),
blobs included; importing again, or into a store that has some of the events, changes nothing."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.management import call_command

from spread_core import api
from spread_core.models import BlobChunk, Change, Counter, Event, Topic
from spread_core.paths import TopicPath
from spread_history.snapshot import InvalidSnapshot, digest, export, import_snapshot

from .blob_stores import SMALL, spread_with

DATE = 1_764_130_000_000_000
SMALL_BLOBS = spread_with(**SMALL)
ROOT = TopicPath(())
pytestmark = pytest.mark.django_db


def fill() -> bytes:
    api.post("s/text", "hello", origin="alice", date=DATE)
    api.post("s/text", "hello again", origin="alice", date=DATE + 2)
    api.post("s/text", "lost the race", origin="bob", date=DATE + 1)  # too_late
    api.post("s/tie", "from carol", origin="carol", date=DATE)
    api.post("s/tie", "from dave", origin="dave", date=DATE)  # equal dates: dave wins
    api.post("s/bin", bytes(range(256)))
    api.delete("s/gone", date=DATE)
    blob = b"".join(hashlib.sha256(bytes([i])).digest() for i in range(100))  # 3,200 bytes
    api.post("s/blob", blob)
    api.post("other/x", "outside the prefix")
    return blob


def wipe() -> None:
    Topic.objects.update(current=None)
    for model in (BlobChunk, Change, Event, Topic, Counter):
        model.objects.all().delete()


@pytest.mark.usefixtures("small_blobs")
def test_export_wipe_import_restores_identical_history_and_values_with_blobs() -> None:
    blob = fill()
    assert Event.objects.filter(is_blob=True).count() == 3  # s/bin, s/blob, other/x (INLINE_MAX 16)
    before = digest(ROOT)
    snapshot = io.StringIO()
    assert export(ROOT, snapshot) == Event.objects.count() == 9

    wipe()
    assert digest(ROOT) != before
    report = import_snapshot(io.StringIO(snapshot.getvalue()))
    assert (report.events, report.stored, report.existing) == (9, 9, 0)
    assert digest(ROOT) == before
    assert api.get("s/blob").value == blob  # type: ignore[union-attr]
    assert api.get("s/tie").value == b"from dave"  # type: ignore[union-attr]
    assert Event.objects.get(origin="bob").too_late

    again = import_snapshot(io.StringIO(snapshot.getvalue()))  # idempotent
    assert (again.stored, again.existing) == (0, 9)
    assert digest(ROOT) == before
    assert Event.objects.count() == 9


@pytest.mark.usefixtures("small_blobs")
def test_importing_into_a_store_with_newer_values_merges_by_last_writer_wins() -> None:
    fill()
    snapshot = io.StringIO()
    export(TopicPath.from_canonical("s"), snapshot)
    wipe()
    api.post("s/text", "newer than the backup", origin="zed", date=DATE + 100)
    import_snapshot(io.StringIO(snapshot.getvalue()))
    assert api.get("s/text").value == b"newer than the backup"  # type: ignore[union-attr]
    assert api.get("other/x") is None  # the snapshot held only the prefix


def test_a_file_that_is_not_a_snapshot_is_refused_and_changes_nothing() -> None:
    with pytest.raises(InvalidSnapshot):
        import_snapshot(io.StringIO('{"some": "json"}\n'))
    with pytest.raises(InvalidSnapshot):
        import_snapshot(io.StringIO("not json\n"))
    assert not Event.objects.exists()


@pytest.mark.usefixtures("small_blobs")
def test_the_commands_round_trip_through_a_gzip_file(tmp_path: object) -> None:
    fill()
    before = digest(ROOT)
    path = f"{tmp_path}/backup.ndjson.gz"
    call_command("spread_export", "--output", path, "--no-progress")
    wipe()
    call_command("spread_import", path, "--no-progress")
    assert digest(ROOT) == before
