"""Playback: events of a range replayed in order into another prefix, paced by their dates and a
speed factor; the command's stdout form; the admin time-travel view stepping through changes."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from spread_core import api
from spread_core.clock import MICROSECONDS
from spread_core.models import Event
from spread_core.paths import TopicPath
from spread_history.playback import MAX_PAUSE, Player, events_between

from .test_history import admin_url, operator

DATE = 1_764_130_000_000_000
pytestmark = pytest.mark.django_db


def record_three() -> list[int]:
    first = api.post("live/a", "1", date=DATE)["iteration"]
    second = api.post("live/b/c", "2", date=DATE + 2 * MICROSECONDS)["iteration"]
    third = api.delete("live/a", date=DATE + 60 * MICROSECONDS)["iteration"]
    return [first, second, third]


def test_a_replay_writes_each_event_in_order_under_the_target_paced_by_speed() -> None:
    record_three()
    pauses: list[float] = []
    player = Player(
        TopicPath.from_canonical("live"), TopicPath.from_canonical("replay"), speed=2, sleep=pauses.append
    )
    count = player.play(events_between(TopicPath.from_canonical("live"), {}, {}))
    assert count == 3
    assert pauses == [0.0, 1.0, MAX_PAUSE]  # 2 s apart at speed 2; 58 s capped
    replayed = Event.objects.filter(topic__path__startswith="replay/").order_by("iteration")
    assert [(e.topic.path, e.deleted, e.origin) for e in replayed] == [
        ("replay/a", False, "spread_playback"),
        ("replay/b/c", False, "spread_playback"),
        ("replay/a", True, "spread_playback"),
    ]
    assert api.get("replay/b/c").value == b"2"  # type: ignore[union-attr]
    assert api.get("replay/a") is None


def test_a_range_selects_by_iteration_or_by_date() -> None:
    first, second, third = record_three()
    prefix = TopicPath.from_canonical("live")
    by_iteration = events_between(prefix, {"at": first}, {"at": second})
    assert [e.iteration for e in by_iteration] == [second]
    by_date = events_between(prefix, {"at_date": DATE}, {})
    assert [e.iteration for e in by_date] == [second, third]


def test_the_command_prints_events_without_into_and_refuses_an_overlapping_target() -> None:
    record_three()
    out = io.StringIO()
    call_command("spread_playback", "live", "--speed", "0", "--no-progress", stdout=out)
    printed = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["path"] for e in printed] == ["live/a", "live/b/c", "live/a"]
    with pytest.raises(CommandError):
        call_command("spread_playback", "live", "--into", "live/copy", "--no-progress")


def test_time_travel_shows_the_subtree_as_of_an_iteration_and_steps_between_changes() -> None:
    first, second, third = record_three()
    client = operator()
    page = client.get(admin_url("travel"), {"prefix": "live", "at": second}).content.decode()
    assert "live/a" in page and "live/b/c" in page
    assert f"next change ({third})" in page and f"previous change ({first})" in page
    later = client.get(admin_url("travel"), {"prefix": "live", "at": third}).content.decode()
    assert "live/a" not in later.split('id="travel"')[1]  # deleted by then
    assert "next change" not in later


@pytest.mark.django_db(transaction=True)
def test_the_admin_replay_previews_then_streams_its_progress_while_writing() -> None:
    record_three()
    assert operator(username="viewer").get(admin_url("replay")).status_code == 403
    client = operator("playback_topic")
    form = {"prefix": "live", "into": "copy", "speed": "0"}
    preview = client.get(admin_url("replay"), form).content.decode()
    assert "3 event(s) to replay" in preview
    assert not Event.objects.filter(topic__path__startswith="copy/").exists()  # a preview writes nothing
    overlapping = client.get(admin_url("replay"), {**form, "into": "live/copy"}).content.decode()
    assert "must not overlap" in overlapping

    response = client.post(admin_url("replay"), form)
    body = b"".join(response.streaming_content).decode()
    assert body.count('class="replayed"') == 3
    assert "1 / 3: copy/a" in body and "3 / 3: copy/a" in body
    assert 'id="replay-done">Replayed 3 event(s).' in body
    assert api.get("copy/b/c").value == b"2"  # type: ignore[union-attr]
    assert api.get("copy/a") is None
    assert {e.origin for e in Event.objects.filter(topic__path__startswith="copy/")} == {"operator"}
