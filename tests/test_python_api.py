"""In-process subscriptions (catch-up, then live events) and async reads of the Python API."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from spread_core import api
from spread_core.fanout import hub
from spread_core.merge import event_id
from spread_core.models import ITERATION_COUNTER, Counter
from spread_core.types import EventJSON

from .blob_stores import SMALL, spread_with

DATE = 1_764_130_000_000_000  # fixed event dates, in microseconds
SMALL_BLOBS = spread_with(**SMALL)
WAIT = 10.0  # seconds before a missing event fails the test (a hang guard, not a timing check)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def iteration_counter(transactional_db: None) -> None:
    """The counter row of migration 0002; transactional tests flush it away after each test."""
    Counter.objects.get_or_create(name=ITERATION_COUNTER, defaults={"value": 0})


def seen(events: list[EventJSON]) -> list[tuple[str, str | None]]:
    return [(e["path"], e.get("value")) for e in events]


def write_tree() -> dict[str, dict[str, Any]]:
    """Writes under "sub" and around it; returns the report of each write by a short name."""
    return {
        "a1": api.post("sub/a", "a1", date=DATE, origin="alice"),
        "b": api.post("sub/b", "b", date=DATE, origin="alice"),
        "near": api.post("subway/z", "near", date=DATE, origin="alice"),
        "a2": api.post("sub/a", "a2", date=DATE + 1, origin="alice"),
        "deep": api.post(["sub", "x/y", "z"], "deep", date=DATE, origin="alice"),
        "self": api.post("sub", "self", date=DATE, origin="alice"),
        "other": api.post("other/q", "other", date=DATE, origin="alice"),
        "late": api.post("sub/b", "late", date=DATE - 1, origin="alice"),  # too_late
    }


# --- subscribe (sync callback) ----------------------------------------------------------------


def test_catch_up_delivers_current_values_under_the_prefix_in_iteration_order() -> None:
    reports = write_tree()
    received: list[EventJSON] = []
    subscription = api.subscribe("sub", received.append)
    try:
        assert seen(received) == [
            ("sub/b", "b"),
            ("sub/a", "a2"),
            ("sub/x%2Fy/z", "deep"),
            ("sub", "self"),
        ]
        iterations = [e["iteration"] for e in received]
        assert iterations == sorted(iterations)
        assert iterations == [reports[k]["iteration"] for k in ("b", "a2", "deep", "self")]
        first = received[0]
        assert first["from"] == "alice"  # type: ignore[typeddict-item]
        assert first["id"] == reports["b"]["id"]
        assert first["date"] == DATE
        assert first["complete"] is True
        assert first["deleted"] is False
    finally:
        subscription.close()


def test_catch_up_excludes_topics_whose_name_differs_only_in_case() -> None:
    api.post("Room/x", "upper", date=DATE, origin="alice")
    api.post("room/x", "lower", date=DATE, origin="alice")
    api.post("ROOM", "upper-self", date=DATE, origin="alice")
    received: list[EventJSON] = []
    subscription = api.subscribe("room", received.append)
    try:
        assert seen(received) == [("room/x", "lower")]
    finally:
        subscription.close()


def test_catch_up_starts_after_since() -> None:
    reports = write_tree()
    received: list[EventJSON] = []
    subscription = api.subscribe("sub", received.append, since=reports["a2"]["iteration"])
    try:
        assert seen(received) == [("sub/x%2Fy/z", "deep"), ("sub", "self")]
    finally:
        subscription.close()


def test_catch_up_from_the_root_covers_every_topic() -> None:
    write_tree()
    received: list[EventJSON] = []
    subscription = api.subscribe([], received.append)
    try:
        assert sorted(e["path"] for e in received) == [
            "other/q",
            "sub",
            "sub/a",
            "sub/b",
            "sub/x%2Fy/z",
            "subway/z",
        ]
    finally:
        subscription.close()


def test_catch_up_includes_tombstones() -> None:
    api.post("tomb/a", "v", date=DATE, origin="alice")
    deleted = api.delete("tomb/a", date=DATE + 1, origin="alice")
    received: list[EventJSON] = []
    subscription = api.subscribe("tomb", received.append)
    try:
        assert [(e["id"], e["deleted"]) for e in received] == [(deleted["id"], True)]
        assert "value" not in received[0]
    finally:
        subscription.close()


def test_live_events_follow_the_catch_up() -> None:
    write_tree()
    received: list[EventJSON] = []
    subscription = api.subscribe("sub", received.append)
    try:
        caught_up = len(received)
        update = api.post("sub/a", "a3", date=DATE + 2, origin="bob")
        api.post("subway/z", "near2", date=DATE + 2, origin="bob")  # not under "sub"
        api.post("sub/a", "old", date=DATE - 5, origin="bob")  # too_late: current unchanged
        new_topic = api.post("sub/new", "n", date=DATE, origin="bob")
        removal = api.delete("sub/b", date=DATE + 2, origin="bob")
        assert subscription.wait_delivered(removal["iteration"])
        live = received[caught_up:]
        assert [(e["id"], e["path"], e.get("value"), e["deleted"]) for e in live] == [
            (update["id"], "sub/a", "a3", False),
            (new_topic["id"], "sub/new", "n", False),
            (removal["id"], "sub/b", None, True),
        ]
        assert [e["iteration"] for e in live] == sorted(e["iteration"] for e in live)
    finally:
        subscription.close()


def test_a_write_is_delivered_once_to_each_covering_subscription() -> None:
    outer: list[EventJSON] = []
    inner: list[EventJSON] = []
    subscriptions = [api.subscribe("n", outer.append), api.subscribe("n/m", inner.append)]
    try:
        report = api.post("n/m/o", "v", date=DATE, origin="alice")
        assert all(subscription.wait_delivered(report["iteration"]) for subscription in subscriptions)
        assert [e["id"] for e in outer] == [report["id"]]
        assert [e["id"] for e in inner] == [report["id"]]
    finally:
        for subscription in subscriptions:
            subscription.close()


def test_close_stops_delivery() -> None:
    received: list[EventJSON] = []
    subscription = api.subscribe("cl", received.append)
    first = api.post("cl/a", "1", date=DATE, origin="alice")
    assert subscription.wait_delivered(first["iteration"])
    subscription.close()
    api.post("cl/a", "2", date=DATE + 1, origin="alice")
    api.post("cl/b", "3", date=DATE, origin="alice")
    assert seen(received) == [("cl/a", "1")]
    assert hub.count("cl") == 0


def test_a_raising_callback_neither_fails_the_write_nor_gets_events_after_a_gap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    received: list[str] = []

    def fussy(event: EventJSON) -> None:
        if event.get("value") == "bad":
            raise ValueError("cannot take this one")
        received.append(str(event.get("value")))

    subscription = api.subscribe("fussy", fussy)
    api.post("fussy/a", "good", date=DATE, origin="alice")
    bad = api.post("fussy/a", "bad", date=DATE + 1, origin="alice")  # committed, answered ok
    assert bad["status"] == "ok"
    assert not subscription.wait_delivered(bad["iteration"])  # closed by its callback's error
    assert isinstance(subscription.error, ValueError) and subscription.closed
    api.post("fussy/a", "after", date=DATE + 2, origin="alice")
    assert received == ["good"]
    assert api.get("fussy/a").value == b"after"  # type: ignore[union-attr]
    assert "its callback raised" in caplog.text


def test_a_slow_callback_holds_up_no_write() -> None:
    release = threading.Event()
    received: list[str] = []

    def slow(event: EventJSON) -> None:
        release.wait(30)
        received.append(str(event.get("value")))

    subscription = api.subscribe("slow", slow)
    try:
        reports = [api.post("slow/a", f"v{i}", date=DATE + i, origin="alice") for i in range(5)]
        assert [r["status"] for r in reports] == ["ok"] * 5  # all answered while the callback waits
        assert received == []
        release.set()
        assert subscription.wait_delivered(reports[-1]["iteration"])
        # In order, no repeats; writes that landed while it waited may come as the latest value.
        assert received[-1] == "v4" and received == sorted(set(received), key=received.index)
    finally:
        subscription.close()


class ClientWentAway(Exception):
    """Raised by a test generator to break an upload off midway."""


@pytest.mark.usefixtures("small_blobs")
def test_subscriber_learns_that_an_aborted_upload_fell_back_to_the_previous_value() -> None:
    """The upload was announced as the topic's current value; when it breaks off the current
    value changes back, and that change must reach the subscriber too."""
    previous = api.post("ab/t", "v1", date=DATE, origin="alice")
    received: list[EventJSON] = []
    subscription = api.subscribe("ab", received.append)

    def pieces() -> Iterator[bytes]:
        yield bytes(40)
        raise ClientWentAway("gone")

    try:
        with pytest.raises(ClientWentAway):
            api.post("ab/t", pieces(), date=DATE + 1, origin="alice")
        assert api.get("ab/t") == api.Value(previous["iteration"], "alice", b"v1")
        assert subscription.wait_delivered(Counter.objects.get(name=ITERATION_COUNTER).value)
        announced = [(e["id"], e["complete"]) for e in received]
        assert announced[:2] == [(previous["id"], True), (event_id("ab/t", DATE + 1, "alice"), False)]
        assert received[-1]["id"] == previous["id"], f"last delivered: {announced[-1]}"
    finally:
        subscription.close()


# --- asubscribe -------------------------------------------------------------------------------


async def next_event(subscription: Any) -> EventJSON:
    return await asyncio.wait_for(anext(subscription), WAIT)


async def finish_feed_tasks() -> None:
    """Wait for the tasks asubscribe(callback=...) started, once their subscription is closed."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    await asyncio.wait_for(asyncio.gather(*tasks), WAIT)


async def test_asubscribe_yields_catch_up_then_live_events() -> None:
    first = await api.apost("aa/x", "1", date=DATE, origin="alice")
    await api.apost("elsewhere", "no", date=DATE, origin="alice")
    subscription = await api.asubscribe("aa")
    try:
        caught = await next_event(subscription)
        assert (caught["id"], caught.get("value")) == (first["id"], "1")

        waiting = asyncio.ensure_future(next_event(subscription))
        await asyncio.sleep(0.05)  # let it block on the doorbell (the test holds either way)
        live = await api.apost("aa/y", "2", date=DATE, origin="bob")
        event = await waiting
        assert (event["id"], event["path"], event.get("value")) == (live["id"], "aa/y", "2")
    finally:
        subscription.close()


async def test_asubscribe_respects_since_and_prefix() -> None:
    await api.apost("as2/a", "1", date=DATE, origin="alice")
    second = await api.apost("as2/b", "2", date=DATE, origin="alice")
    async with await api.asubscribe("as2", since=second["iteration"] - 1) as subscription:
        assert (await next_event(subscription))["id"] == second["id"]
        await api.apost("as2x", "no", date=DATE, origin="alice")
        third = await api.apost("as2/c", "3", date=DATE, origin="alice")
        assert (await next_event(subscription))["id"] == third["id"]


async def test_asubscribe_iteration_ends_when_closed() -> None:
    subscription = await api.asubscribe("ends")
    waiting = asyncio.ensure_future(asyncio.wait_for(subscription.__anext__(), WAIT))
    await asyncio.sleep(0)
    subscription.close()
    with pytest.raises(StopAsyncIteration):
        await waiting
    assert hub.count("ends") == 0


async def test_asubscribe_with_an_async_callback() -> None:
    first = await api.apost("cb/a", "1", date=DATE, origin="alice")
    received: list[EventJSON] = []
    got_two = asyncio.Event()

    async def callback(event: EventJSON) -> None:
        received.append(event)
        if len(received) == 2:
            got_two.set()

    subscription = await api.asubscribe("cb", callback=callback)
    try:
        second = await api.apost("cb/b", "2", date=DATE, origin="alice")
        await asyncio.wait_for(got_two.wait(), WAIT)
    finally:
        subscription.close()
    await finish_feed_tasks()
    assert [e["id"] for e in received] == [first["id"], second["id"]]


async def test_asubscribe_with_a_sync_callback() -> None:
    received: list[EventJSON] = []
    loop = asyncio.get_running_loop()
    got_one = asyncio.Event()

    def callback(event: EventJSON) -> None:
        received.append(event)
        loop.call_soon_threadsafe(got_one.set)

    subscription = await api.asubscribe("scb", callback=callback)
    try:
        report = await api.apost("scb/a", "1", date=DATE, origin="alice")
        await asyncio.wait_for(got_one.wait(), WAIT)
    finally:
        subscription.close()
    await finish_feed_tasks()
    assert [e["id"] for e in received] == [report["id"]]


# --- async reads ------------------------------------------------------------------------------


@pytest.mark.usefixtures("small_blobs")
async def test_aopen_iterates_a_blob_chunk_by_chunk() -> None:
    data = bytes(range(256)) * 2  # 512 bytes: 8 chunks of 64

    report = await api.apost("ao/blob", data, date=DATE, origin="alice")
    reader = await api.aopen("ao/blob")
    assert reader.event.event_id == report["id"]
    chunks = [chunk async for chunk in reader]
    assert [len(c) for c in chunks] == [64] * 8
    assert b"".join(chunks) == data
    assert reader.done


@pytest.mark.usefixtures("small_blobs")
async def test_aopen_reads_an_async_streamed_upload() -> None:
    data = bytes(range(200)) * 3

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 70):
            yield data[i : i + 70]

    await api.apost("ao/stream", pieces(), date=DATE, origin="alice")
    reader = await api.aopen("ao/stream")
    assert await reader.aread() == data


async def test_aopen_of_an_inline_value() -> None:
    await api.apost("ao/small", b"tiny", date=DATE, origin="alice")
    reader = await api.aopen("ao/small")
    assert [chunk async for chunk in reader] == [b"tiny"]
