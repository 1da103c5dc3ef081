"""Writing and reading through spread_core.api: merge statuses, dense iterations, tombstones,
create-only writes, chunked blobs, aborted uploads and the propagation report."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from spread_core import api, store
from spread_core.blobs import blob_store
from spread_core.clock import now_us
from spread_core.exceptions import TopicExists, TopicNotFound, UploadAborted, ValueTooLarge
from spread_core.iteration import current_iteration
from spread_core.merge import EventKey, Outcome, decide, event_id
from spread_core.models import ITERATION_COUNTER, Change, Counter, Event, Topic
from spread_core.paths import TopicPath
from spread_core.signals import event_accepted, upload_aborted
from spread_core.store import WriteRequest
from spread_core.writer import ValueWriter

from .blob_stores import SMALL, spread_with, stored_blob_count, stored_pieces

DATE = 1_764_130_000_000_000  # fixed event dates, in microseconds
SMALL_BLOBS = spread_with(**SMALL)
TEXT = "text/plain; charset=utf-8"


class ClientWentAway(Exception):
    """Raised by a test generator to break an upload off midway."""


def events_of(path: str) -> list[Event]:
    return list(Event.objects.filter(topic__path=path).order_by("iteration"))


def current_of(path: str) -> Event | None:
    topic = Topic.objects.select_related("current").get(path=path)
    return topic.current


def pattern(size: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(size))


@pytest.fixture
def iteration_counter(transactional_db: None) -> None:
    """The counter row of migration 0002; transactional tests flush it away after each test."""
    Counter.objects.get_or_create(name=ITERATION_COUNTER, defaults={"value": 0})


# --- statuses ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_first_write_is_ok_and_reads_back() -> None:
    report = api.post(["s", "a"], b"v1", date=DATE, origin="alice")
    assert report["status"] == "ok"
    assert report["path"] == "s/a"
    assert report["id"] == event_id("s/a", DATE, "alice")
    assert api.get(["s", "a"]) == api.Value(report["iteration"], "alice", b"v1")
    assert api.get("s/a") == api.get(["s", "a"])


@pytest.mark.django_db
def test_in_process_writes_default_to_the_node_name_as_origin() -> None:
    with override_settings(SPREAD=spread_with(NODE_NAME="edge-7")):
        api.post("s/node", b"v")
    value = api.get("s/node")
    assert value is not None
    assert value.origin == "edge-7"


@pytest.mark.django_db
def test_str_values_are_stored_as_utf8_text() -> None:
    api.post("s/text", "été", date=DATE, origin="alice")
    [event] = events_of("s/text")
    assert event.content_type == TEXT
    assert bytes(event.value) == "été".encode()
    assert event.size == len("été".encode())
    assert event.as_json()["value"] == "été"
    api.post("s/bin", b"\xff\x00", date=DATE, origin="alice", content_type="application/x-thing")
    [binary] = events_of("s/bin")
    assert binary.content_type == "application/x-thing"
    assert binary.as_json()["value_b64"] == "/wA="


@pytest.mark.django_db
def test_same_date_and_origin_twice_is_existing_and_stored_once() -> None:
    first = api.post("s/dup", b"first", date=DATE, origin="alice")
    second = api.post("s/dup", b"second", date=DATE, origin="alice")
    assert second["status"] == "existing"
    assert second["id"] == first["id"]
    assert second["iteration"] == first["iteration"]
    assert Event.objects.filter(topic__path="s/dup").count() == 1
    assert api.get("s/dup") == api.Value(first["iteration"], "alice", b"first")
    # The duplicate took no iteration.
    assert current_iteration() == first["iteration"]


@pytest.mark.django_db
def test_older_write_is_too_late_but_kept_in_history() -> None:
    new = api.post("s/late", b"new", date=DATE + 10, origin="alice")
    old = api.post("s/late", b"old", date=DATE, origin="bob")
    assert old["status"] == "too_late"
    assert old["iteration"] == new["iteration"] + 1
    history = events_of("s/late")
    assert [(e.origin, e.too_late, bytes(e.value)) for e in history] == [
        ("alice", False, b"new"),
        ("bob", True, b"old"),
    ]
    assert api.get("s/late") == api.Value(new["iteration"], "alice", b"new")
    assert current_of("s/late").event_id == new["id"]


@pytest.mark.django_db
def test_equal_dates_are_broken_by_origin_bytes_in_the_store() -> None:
    assert api.post("s/tie", b"b", date=DATE, origin="b")["status"] == "ok"
    assert api.post("s/tie", b"B", date=DATE, origin="B")["status"] == "too_late"  # b"B" < b"b"
    assert api.post("s/tie", b"e", date=DATE, origin="é")["status"] == "ok"
    assert api.post("s/tie", b"bmp", date=DATE, origin="\ufffd")["status"] == "ok"
    assert api.post("s/tie", b"astral", date=DATE, origin="\U0001f600")["status"] == "ok"
    assert api.post("s/tie", b"bmp2", date=DATE, origin="\uffef")["status"] == "too_late"
    value = api.get("s/tie")
    assert value is not None
    assert value.value == b"astral"


@pytest.mark.django_db
def test_iterations_are_dense_across_every_kind_of_write() -> None:
    start = current_iteration()
    api.post("d/a", b"1", date=DATE, origin="x")  # ok
    api.post("d/a", b"0", date=DATE - 1, origin="x")  # too_late
    api.post("d/a", b"1", date=DATE, origin="x")  # existing: no iteration
    api.delete("d/a", date=DATE + 1, origin="x")  # tombstone
    api.delete("d/a", date=DATE - 2, origin="x")  # too_late tombstone
    api.post("d/b", b"2", date=DATE, origin="y")
    with pytest.raises(TopicExists):
        api.maybe_post("d/b", b"3", date=DATE + 1, origin="y")  # rolled back: no iteration
    with override_settings(SPREAD=SMALL_BLOBS):
        api.post("d/c", pattern(200), date=DATE, origin="z")  # a blob: one event, two log entries
    api.post("d/c", b"4", date=DATE + 1, origin="z")
    log = list(Change.objects.filter(iteration__gt=start).values_list("iteration", "kind"))
    assert [iteration for iteration, _ in log] == list(range(start + 1, start + 9))
    assert [kind for _, kind in log].count(Change.COMPLETE) == 1
    iterations = list(Event.objects.under("d").order_by("iteration").values_list("iteration", flat=True))
    assert iterations == [iteration for iteration, kind in log if kind == Change.WRITE]
    assert current_iteration() == start + 8


_example_numbers = itertools.count()


@pytest.mark.django_db
@settings(max_examples=30, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 2), st.sampled_from(["x", "é", "\U0001f600"])),
        min_size=1,
        max_size=12,
    ),
    data=st.data(),
)
def test_store_applies_any_order_with_duplicates_like_the_merge_rule(
    events: list[tuple[str, int, str]], data: st.DataObject
) -> None:
    prefix = f"prop{next(_example_numbers)}"  # examples share the test's database transaction
    arrivals = data.draw(st.permutations(events + events[: len(events) // 2]), label="arrivals")

    def is_tombstone(date: int, origin: str) -> bool:
        return (date + len(origin)) % 3 == 0

    start = current_iteration()
    current: dict[str, EventKey] = {}
    stored: set[tuple[str, int, str]] = set()
    for topic, date, origin in arrivals:
        path = f"{prefix}/{topic}"
        if is_tombstone(date, origin):
            report = api.delete(path, date=DATE + date, origin=origin)
        else:
            report = api.post(path, f"{date}:{origin}", date=DATE + date, origin=origin)
        key = EventKey(date, origin)
        expected = Outcome.EXISTING if (topic, date, origin) in stored else decide(current.get(topic), key)
        assert report["status"] == expected.value
        stored.add((topic, date, origin))
        if expected is Outcome.OK:
            current[topic] = key

    assert Event.objects.under(prefix).count() == len(stored)
    iterations = sorted(Event.objects.under(prefix).values_list("iteration", flat=True))
    assert iterations == list(range(start + 1, start + len(stored) + 1))
    for topic in {topic for topic, _, _ in events}:
        best = max(
            (EventKey(d, o) for t, d, o in events if t == topic), key=lambda k: (k.date, k.origin.encode())
        )
        value = api.get(f"{prefix}/{topic}")
        if is_tombstone(best.date, best.origin):
            assert value is None
        else:
            assert value is not None
            assert (value.origin, value.value) == (best.origin, f"{best.date}:{best.origin}".encode())


# --- tombstones -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_tombstone_hides_the_value_and_a_later_write_revives_it() -> None:
    api.post("t/a", b"v1", date=DATE, origin="alice")
    deleted = api.delete("t/a", date=DATE + 1, origin="alice")
    assert deleted["status"] == "ok"
    assert api.get("t/a") is None
    with pytest.raises(TopicNotFound):
        api.open_value("t/a")
    assert current_of("t/a").deleted
    revived = api.post("t/a", b"v2", date=DATE + 2, origin="alice")
    assert revived["status"] == "ok"
    assert api.get("t/a") == api.Value(revived["iteration"], "alice", b"v2")
    assert [e.deleted for e in events_of("t/a")] == [False, True, False]


@pytest.mark.django_db
def test_write_older_than_the_tombstone_stays_deleted() -> None:
    api.delete("t/b", date=DATE + 5, origin="alice")
    assert api.post("t/b", b"v", date=DATE, origin="alice")["status"] == "too_late"
    assert api.get("t/b") is None


@pytest.mark.django_db
def test_delete_with_an_older_date_is_too_late() -> None:
    written = api.post("t/c", b"v1", date=DATE + 5, origin="alice")
    report = api.delete("t/c", date=DATE, origin="alice")
    assert report["status"] == "too_late"
    assert api.get("t/c") == api.Value(written["iteration"], "alice", b"v1")
    assert [e.deleted for e in events_of("t/c")] == [False, True]


# --- create-only ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_only_raises_topic_exists_and_changes_nothing() -> None:
    first = api.maybe_post("c/a", b"v1", date=DATE, origin="alice")
    assert first["status"] == "ok"
    iteration = current_iteration()
    with pytest.raises(TopicExists) as raised:
        api.maybe_post("c/a", b"v2", date=DATE + 1, origin="bob")
    assert raised.value.event.event_id == first["id"]
    assert raised.value.as_json()["current"]["id"] == first["id"]
    assert Event.objects.filter(topic__path="c/a").count() == 1
    assert current_iteration() == iteration
    assert api.get("c/a") == api.Value(first["iteration"], "alice", b"v1")


@pytest.mark.django_db
def test_create_only_succeeds_after_delete() -> None:
    api.maybe_post("c/b", b"v1", date=DATE, origin="alice")
    api.delete("c/b", date=DATE + 1, origin="alice")
    again = api.maybe_post("c/b", b"v2", date=DATE + 2, origin="alice")
    assert again["status"] == "ok"
    assert api.get("c/b") == api.Value(again["iteration"], "alice", b"v2")


@pytest.mark.django_db
def test_create_only_retry_of_the_same_event_is_existing() -> None:
    first = api.maybe_post("c/c", b"v1", date=DATE, origin="alice")
    assert api.maybe_post("c/c", b"v1", date=DATE, origin="alice")["status"] == "existing"
    assert Event.objects.filter(event_id=first["id"]).count() == 1


# --- blobs ------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_values_up_to_inline_max_stay_inline() -> None:
    api.post("b/inline", pattern(16), date=DATE, origin="alice")
    [event] = events_of("b/inline")
    assert not event.is_blob
    assert bytes(event.value) == pattern(16)
    assert event.sha256 == hashlib.sha256(pattern(16)).hexdigest()
    assert stored_pieces(event.pk) == []


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_values_over_inline_max_become_chunks_of_chunk_size() -> None:
    data = pattern(200)
    report = api.post("b/blob", data, date=DATE, origin="alice")
    assert report["status"] == "ok"
    [event] = events_of("b/blob")
    assert event.is_blob
    assert event.value is None
    assert event.complete and not event.aborted
    assert event.size == 200
    assert event.sha256 == hashlib.sha256(data).hexdigest()
    assert event.lease_until is None
    if blob_store().in_database:
        assert [len(c) for c in stored_pieces(event.pk)] == [64, 64, 64, 8]
    assert b"".join(stored_pieces(event.pk)) == data
    assert api.get("b/blob") == api.Value(report["iteration"], "alice", data)
    assert b"".join(api.open_value("b/blob")) == data


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_one_byte_over_inline_max_is_a_blob() -> None:
    api.post("b/17", pattern(17), date=DATE, origin="alice")
    [event] = events_of("b/17")
    assert event.is_blob
    assert stored_pieces(event.pk) == [pattern(17)]
    value = api.get("b/17")
    assert value is not None
    assert value.value == pattern(17)


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_a_streamed_value_reads_back_byte_identical() -> None:
    data = pattern(1000, seed=3)
    pieces = (data[i : i + 37] for i in range(0, len(data), 37))
    api.post("b/stream", pieces, date=DATE, origin="alice")
    [event] = events_of("b/stream")
    stored = stored_pieces(event.pk)
    if blob_store().in_database:
        assert all(0 < len(chunk) <= 64 for chunk in stored)
    assert b"".join(stored) == data
    assert event.size == len(data)
    assert event.sha256 == hashlib.sha256(data).hexdigest()
    value = api.get("b/stream")
    assert value is not None
    assert value.value == data


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_a_reader_follows_an_upload_to_its_end() -> None:
    data = pattern(300, seed=5)
    readers: list[Any] = []

    def pieces() -> Iterator[bytes]:
        yield data[:100]
        readers.append(api.open_value("b/follow"))  # opened while the upload is in progress
        assert not readers[0].event.complete
        yield data[100:]

    api.post("b/follow", pieces(), date=DATE, origin="alice")
    assert readers[0].read() == data


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_upload_broken_off_midway_is_aborted_and_the_previous_value_remains(
    django_capture_on_commit_callbacks: Any,
) -> None:
    previous = api.post("b/abort", b"v1", date=DATE, origin="alice")
    aborted: list[tuple[str, str]] = []

    def on_abort(sender: Any, event: Event, reason: str, **kwargs: Any) -> None:
        aborted.append((event.pk, reason))

    def pieces() -> Iterator[bytes]:
        yield pattern(40)
        yield pattern(40, seed=1)
        assert current_of("b/abort").event_id == event_id("b/abort", DATE + 1, "alice")  # it was current
        raise ClientWentAway("gone")

    upload_aborted.connect(on_abort)
    try:
        with pytest.raises(ClientWentAway), django_capture_on_commit_callbacks(execute=True):
            api.post("b/abort", pieces(), date=DATE + 1, origin="alice")
    finally:
        upload_aborted.disconnect(on_abort)

    broken = Event.objects.get(event_id=event_id("b/abort", DATE + 1, "alice"))
    assert broken.aborted
    assert not broken.complete
    assert stored_pieces(broken.pk) == []
    assert [pk for pk, _ in aborted] == [broken.pk]
    assert api.get("b/abort") == api.Value(previous["iteration"], "alice", b"v1")
    assert current_of("b/abort").event_id == previous["id"]


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_upload_broken_off_on_a_new_topic_leaves_no_value() -> None:
    def pieces() -> Iterator[bytes]:
        yield pattern(100)
        raise ClientWentAway("gone")

    with pytest.raises(ClientWentAway):
        api.post("b/abort-new", pieces(), date=DATE, origin="alice")
    assert api.get("b/abort-new") is None
    with pytest.raises(TopicNotFound):
        api.open_value("b/abort-new")


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_upload_broken_off_before_inline_max_stores_nothing() -> None:
    def pieces() -> Iterator[bytes]:
        yield b"tiny"
        raise ClientWentAway("gone")

    with pytest.raises(ClientWentAway):
        api.post("b/abort-tiny", pieces(), date=DATE, origin="alice")
    assert not Event.objects.filter(topic__path="b/abort-tiny").exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_reader_of_an_upload_in_progress_raises_when_it_is_aborted() -> None:
    readers: list[Any] = []
    first = pattern(40)

    def pieces() -> Iterator[bytes]:
        yield first
        reader = api.open_value("b/reader")
        assert reader.poll() == [first]  # the stored part is readable before the end
        assert not reader.done
        readers.append(reader)
        raise ClientWentAway("gone")

    with pytest.raises(ClientWentAway):
        api.post("b/reader", pieces(), date=DATE, origin="alice")
    with pytest.raises(UploadAborted):
        readers[0].read()


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_unread_reader_of_an_aborted_upload_raises() -> None:
    readers: list[Any] = []

    def pieces() -> Iterator[bytes]:
        yield pattern(40)
        readers.append(api.open_value("b/reader2"))  # opened, nothing read yet
        raise ClientWentAway("gone")

    with pytest.raises(ClientWentAway):
        api.post("b/reader2", pieces(), date=DATE, origin="alice")
    with pytest.raises(UploadAborted):
        list(readers[0])


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_aborted_upload_falls_back_to_the_greatest_remaining_event() -> None:
    api.post("b/fallback", b"v1", date=DATE, origin="alice")
    late: list[dict[str, Any]] = []

    def pieces() -> Iterator[bytes]:
        yield pattern(40)
        # Arrives while the upload (date +10) is current: too late for now, but the best remaining.
        late.append(api.post("b/fallback", b"v5", date=DATE + 5, origin="bob"))
        raise ClientWentAway("gone")

    with pytest.raises(ClientWentAway):
        api.post("b/fallback", pieces(), date=DATE + 10, origin="alice")
    assert late[0]["status"] == "too_late"
    assert api.get("b/fallback") == api.Value(late[0]["iteration"], "bob", b"v5")


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_fallback_breaks_equal_dates_by_origin_bytes_not_collation() -> None:
    # b"a" > b"B" as bytes; a case-insensitive or locale collation would pick "B".
    api.post("b/fallback-tie", b"from B", date=DATE, origin="B")
    api.post("b/fallback-tie", b"from a", date=DATE, origin="a")
    api.post("b/fallback-tie", b"from A", date=DATE, origin="A")

    def pieces() -> Iterator[bytes]:
        yield pattern(40)
        raise ClientWentAway("gone")

    with pytest.raises(ClientWentAway):
        api.post("b/fallback-tie", pieces(), date=DATE + 1, origin="alice")
    value = api.get("b/fallback-tie")
    assert value is not None
    assert (value.origin, value.value) == ("a", b"from a")


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_aborted_upload_falls_back_to_a_tombstone() -> None:
    api.post("b/fallback-del", b"v1", date=DATE, origin="alice")
    api.delete("b/fallback-del", date=DATE + 1, origin="alice")

    def pieces() -> Iterator[bytes]:
        yield pattern(40)
        raise ClientWentAway("gone")

    with pytest.raises(ClientWentAway):
        api.post("b/fallback-del", pieces(), date=DATE + 2, origin="alice")
    assert api.get("b/fallback-del") is None
    assert current_of("b/fallback-del").deleted


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_same_blob_event_twice_is_existing_and_its_chunks_stored_once() -> None:
    data = pattern(200)
    first = api.post("b/dup", data, date=DATE, origin="alice")
    [event] = events_of("b/dup")
    chunks_before = stored_pieces(event.pk)
    second = api.post("b/dup", pattern(300, seed=1), date=DATE, origin="alice")
    assert second["status"] == "existing"
    assert second["iteration"] == first["iteration"]
    assert stored_pieces(event.pk) == chunks_before
    assert stored_blob_count() == len(chunks_before)
    assert api.get("b/dup") == api.Value(first["iteration"], "alice", data)


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_too_late_blob_is_kept_complete_in_history() -> None:
    newer = api.post("b/late", b"new", date=DATE + 1, origin="alice")
    data = pattern(150)
    late = api.post("b/late", data, date=DATE, origin="alice")
    assert late["status"] == "too_late"
    event = Event.objects.get(event_id=late["id"])
    assert event.too_late and event.complete and not event.aborted
    assert b"".join(stored_pieces(event.pk)) == data
    assert api.get("b/late") == api.Value(newer["iteration"], "alice", b"new")


@pytest.mark.django_db
@pytest.mark.usefixtures("small_blobs")
def test_retrying_an_aborted_upload_with_the_same_date_stores_the_value() -> None:
    """A client (or a peer replaying the event) retries an upload that broke off, with the same
    date and origin: the value must end up stored, not be answered "existing" and dropped."""
    data = pattern(120)

    def broken() -> Iterator[bytes]:
        yield data[:40]
        raise ClientWentAway("gone")

    with pytest.raises(ClientWentAway):
        api.post("b/retry", broken(), date=DATE, origin="alice")
    retry = api.post("b/retry", data, date=DATE, origin="alice")
    value = api.get("b/retry")
    assert value is not None, f"retry answered {retry['status']!r} but the topic has no value"
    assert value.value == data


# --- size limit -------------------------------------------------------------------------------


@pytest.mark.django_db
@override_settings(SPREAD={**SMALL_BLOBS, "MAX_UPLOAD": 100})
def test_value_over_max_upload_raises_and_stores_nothing() -> None:
    previous = api.post("m/a", b"v1", date=DATE, origin="alice")
    events_before = Event.objects.count()
    with pytest.raises(ValueTooLarge):
        api.post("m/a", pattern(101), date=DATE + 1, origin="alice")
    assert Event.objects.count() == events_before
    assert stored_blob_count() == 0
    assert api.get("m/a") == api.Value(previous["iteration"], "alice", b"v1")
    # Exactly MAX_UPLOAD is accepted.
    assert api.post("m/a", pattern(100), date=DATE + 2, origin="alice")["status"] == "ok"


@pytest.mark.django_db
@override_settings(SPREAD={**SMALL_BLOBS, "MAX_UPLOAD": 100})
def test_streamed_value_over_max_upload_is_aborted_and_the_value_unchanged(
    django_capture_on_commit_callbacks: Any,
) -> None:
    previous = api.post("m/b", b"v1", date=DATE, origin="alice")
    live_before = Event.objects.live().count()
    pieces = (pattern(40, seed=i) for i in range(3))  # 120 bytes, in pieces under the limit
    with pytest.raises(ValueTooLarge), django_capture_on_commit_callbacks(execute=True):
        api.post("m/b", pieces, date=DATE + 1, origin="alice")
    assert Event.objects.live().count() == live_before
    assert stored_blob_count() == 0
    assert api.get("m/b") == api.Value(previous["iteration"], "alice", b"v1")
    assert current_of("m/b").event_id == previous["id"]


# --- stale uploads ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_abort_stale_uploads_aborts_only_expired_leases(django_capture_on_commit_callbacks: Any) -> None:
    previous = api.post("l/a", b"v1", date=DATE, origin="alice")
    stale = store.record(
        WriteRequest(TopicPath(("l", "a")), origin="alice", date=DATE + 1), value=b"x" * 10, is_blob=True
    ).event
    fresh = store.record(
        WriteRequest(TopicPath(("l", "b")), origin="alice", date=DATE), value=b"y" * 10, is_blob=True
    ).event
    Event.objects.filter(pk=stale.pk).update(lease_until=now_us() - 1)
    assert current_of("l/a").pk == stale.pk

    with django_capture_on_commit_callbacks(execute=True):
        assert store.abort_stale_uploads() == 1

    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.aborted
    assert not fresh.aborted and not fresh.complete
    assert stored_pieces(stale.pk) == []
    assert stored_pieces(fresh.pk) == [b"y" * 10]
    assert current_of("l/a").event_id == previous["id"]
    assert api.get("l/a") == api.Value(previous["iteration"], "alice", b"v1")
    assert store.abort_stale_uploads() == 0


@pytest.mark.django_db
def test_reading_a_topic_whose_upload_lease_expired_falls_back() -> None:
    previous = api.post("l/c", b"v1", date=DATE, origin="alice")
    stale = store.record(
        WriteRequest(TopicPath(("l", "c")), origin="alice", date=DATE + 1), value=b"x" * 10, is_blob=True
    ).event
    Event.objects.filter(pk=stale.pk).update(lease_until=now_us() - 1)
    assert api.get("l/c") == api.Value(previous["iteration"], "alice", b"v1")
    assert Event.objects.get(pk=stale.pk).aborted


# --- propagation report -----------------------------------------------------------------------


@pytest.mark.django_db
def test_report_lists_root_ancestors_and_the_path() -> None:
    report = api.post(["p", "q/r", "s"], b"v", date=DATE, origin="alice")
    assert report["path"] == "p/q%2Fr/s"
    assert report["propagation"] == [
        {"path": "", "subscribers": 0},
        {"path": "p", "subscribers": 0},
        {"path": "p/q%2Fr", "subscribers": 0},
        {"path": "p/q%2Fr/s", "subscribers": 0},
    ]


@pytest.mark.django_db(transaction=True)  # subscribers are rung when the write commits
def test_report_counts_subscribers_per_ancestor_for_delivered_writes_only() -> None:
    subscriptions = [
        api.subscribe("rp", lambda event: None),
        api.subscribe("rp", lambda event: None),
        api.subscribe("rp/x", lambda event: None),
        api.subscribe("other", lambda event: None),
    ]
    try:
        ok = api.post("rp/x", b"v", date=DATE, origin="alice")
        late = api.post("rp/x", b"v", date=DATE - 1, origin="alice")
        existing = api.post("rp/x", b"v", date=DATE, origin="alice")
    finally:
        for subscription in subscriptions:
            subscription.close()
    assert ok["propagation"] == [
        {"path": "", "subscribers": 0},
        {"path": "rp", "subscribers": 2},
        {"path": "rp/x", "subscribers": 1},
    ]
    zero = [{"path": p, "subscribers": 0} for p in ("", "rp", "rp/x")]
    assert late["status"] == "too_late"
    assert late["propagation"] == zero
    assert existing["status"] == "existing"
    assert existing["propagation"] == zero


# --- commit-time effects (transactional) ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_event_accepted_is_sent_once_per_stored_event(iteration_counter: None) -> None:
    received: list[tuple[str, str]] = []

    def on_accepted(sender: Any, event: Event, outcome: Any, **kwargs: Any) -> None:
        received.append((event.event_id, outcome.value))

    event_accepted.connect(on_accepted)
    try:
        ok = api.post("sig/a", b"v", date=DATE, origin="alice")
        late = api.post("sig/a", b"v", date=DATE - 1, origin="alice")
        api.post("sig/a", b"v", date=DATE, origin="alice")  # existing: not announced again
    finally:
        event_accepted.disconnect(on_accepted)
    assert received == [(ok["id"], "ok"), (late["id"], "too_late")]


@pytest.mark.django_db(transaction=True)
def test_consecutive_writes_take_consecutive_iterations(iteration_counter: None) -> None:
    start = current_iteration()
    reports = [api.post(f"dense/{i % 3}", b"v", date=DATE + i, origin="alice") for i in range(10)]
    assert [r["iteration"] for r in reports] == list(range(start + 1, start + 11))


# --- async API --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_async_statuses_and_reads(iteration_counter: None) -> None:
    ok = await api.apost("as/a", b"v1", date=DATE + 1, origin="alice")
    late = await api.apost("as/a", b"v0", date=DATE, origin="alice")
    existing = await api.apost("as/a", b"other", date=DATE + 1, origin="alice")
    assert [ok["status"], late["status"], existing["status"]] == ["ok", "too_late", "existing"]
    assert existing["iteration"] == ok["iteration"]
    assert late["iteration"] == ok["iteration"] + 1
    assert await api.aget("as/a") == api.Value(ok["iteration"], "alice", b"v1")

    deleted = await api.adelete("as/a", date=DATE + 2, origin="alice")
    assert deleted["status"] == "ok"
    assert await api.aget("as/a") is None
    with pytest.raises(TopicNotFound):
        await api.aopen("as/a")
    assert (await api.adelete("as/a", date=DATE, origin="bob"))["status"] == "too_late"


@pytest.mark.django_db(transaction=True)
async def test_async_create_only(iteration_counter: None) -> None:
    first = await api.amaybe_post("as/c", "v1", date=DATE, origin="alice")
    assert first["status"] == "ok"
    with pytest.raises(TopicExists):
        await api.amaybe_post("as/c", "v2", date=DATE + 1, origin="alice")
    await api.adelete("as/c", date=DATE + 2, origin="alice")
    again = await api.amaybe_post("as/c", "v3", date=DATE + 3, origin="alice")
    assert again["status"] == "ok"
    assert await api.aget("as/c") == api.Value(again["iteration"], "alice", b"v3")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("small_blobs")
async def test_async_streamed_blob_reads_back_identical(iteration_counter: None) -> None:
    data = pattern(500, seed=9)

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 50):
            yield data[i : i + 50]

    report = await api.apost("as/blob", pieces(), date=DATE, origin="alice")
    assert report["status"] == "ok"
    assert await api.aget("as/blob") == api.Value(report["iteration"], "alice", data)
    reader = await api.aopen("as/blob")
    assert reader.event.is_blob
    assert reader.event.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("small_blobs")
async def test_async_upload_broken_off_falls_back(iteration_counter: None) -> None:
    previous = await api.apost("as/abort", b"v1", date=DATE, origin="alice")

    async def pieces() -> AsyncIterator[bytes]:
        yield pattern(40)
        yield pattern(40, seed=1)
        raise ClientWentAway("gone")

    with pytest.raises(ClientWentAway):
        await api.apost("as/abort", pieces(), date=DATE + 1, origin="alice")
    assert await api.aget("as/abort") == api.Value(previous["iteration"], "alice", b"v1")


@pytest.mark.django_db
def test_an_upload_lease_outlives_the_idle_timeout_of_a_live_writer() -> None:
    """Bytes received right after a stored chunk wait up to CHUNK_FLUSH_INTERVAL for the next store,
    so the lease must last longer than the idle timeout a connected writer is allowed."""
    with override_settings(SPREAD={**SMALL_BLOBS, "UPLOAD_IDLE_TIMEOUT": 10.0}):
        before = now_us()
        writer = ValueWriter(WriteRequest(path=TopicPath(("lease", "a")), origin="w", date=DATE))
        for chunk in writer.take(b"x" * 100):
            writer.store(chunk)
        assert writer.recorded is not None
        lease = Event.objects.get(pk=writer.recorded.event.pk).lease_until
        assert lease is not None
        assert lease - before >= 2 * 10 * 1_000_000
