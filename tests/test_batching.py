"""Group commit: writes from many threads share transactions, keep dense iterations in commit
order, get their own results and errors, and ring subscribers after the commit; set-based
batches take a fixed number of statements; writes awaited on the event loop are batched too."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from spread_core import api, store
from spread_core.batching import Job, WriteBatcher, batcher
from spread_core.exceptions import TopicExists
from spread_core.merge import Outcome
from spread_core.models import ITERATION_COUNTER, Change, Counter, Event
from spread_core.paths import TopicPath
from spread_core.store import QueuedWrite, WriteRequest
from spread_core.types import EventJSON

WRITERS = 8
WRITES_EACH = 25
DATE = 1_764_130_000_000_000
WAIT = 10.0  # seconds before a missing event fails the test (a hang guard, not a timing check)


@pytest.fixture(params=[True, False], ids=["set-based", "per-write"])
def set_based(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Each test of a batch runs with set-based batches and with each write's own queries."""
    with override_settings(SPREAD={**settings.SPREAD, "GROUP_COMMIT_SET_BASED": request.param}):
        yield request.param


def post_many(index: int) -> list[int]:
    try:
        return [api.post(f"batch/w{index}/t{i}", f"{index}:{i}")["iteration"] for i in range(WRITES_EACH)]
    finally:
        connection.close()  # this thread's connection


@pytest.mark.django_db(transaction=True)
def test_concurrent_writes_are_batched_with_dense_iterations_and_each_gets_its_own_result(
    set_based: bool,
) -> None:
    assert batcher.applies()
    with ThreadPoolExecutor(WRITERS) as pool:
        iterations = [it for its in pool.map(post_many, range(WRITERS)) for it in its]
    total = WRITERS * WRITES_EACH
    assert sorted(iterations) == list(range(1, total + 1))  # dense, each write its own
    assert list(Change.objects.order_by("iteration").values_list("iteration", flat=True)) == list(
        range(1, total + 1)
    )
    stored = {e.topic.path: bytes(e.value) for e in Event.objects.select_related("topic")}
    assert stored == {
        f"batch/w{w}/t{i}": f"{w}:{i}".encode() for w in range(WRITERS) for i in range(WRITES_EACH)
    }


@pytest.mark.django_db(transaction=True)
def test_a_failing_write_in_a_batch_fails_alone(set_based: bool) -> None:
    api.post("batch/taken", b"first")
    barrier = threading.Barrier(WRITERS)
    outcomes: list[str] = []

    def write(index: int) -> None:
        barrier.wait()
        try:
            if index == 0:
                api.maybe_post("batch/taken", b"create-only on a topic that has a value")
            else:
                api.post(f"batch/ok{index}", b"fine")
            outcomes.append("ok")
        except TopicExists:
            outcomes.append("exists")
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["exists"] + ["ok"] * (WRITERS - 1)
    assert Event.objects.count() == WRITERS  # the first write and the 7 others; the 409 stored nothing
    assert list(Change.objects.order_by("iteration").values_list("iteration", flat=True)) == list(
        range(1, WRITERS + 1)
    )


def post_one(index: int) -> dict[str, Any]:
    try:
        return api.post(f"batch/s{index}", b"v")
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_in_process_subscribers_are_rung_after_a_batched_commit(set_based: bool) -> None:
    received: list[str] = []
    subscription = api.subscribe("batch", lambda event: received.append(event["path"]))
    try:
        with ThreadPoolExecutor(4) as pool:
            reports = list(pool.map(post_one, range(12)))
        assert subscription.wait_delivered(max(report["iteration"] for report in reports))
    finally:
        subscription.close()
    assert sorted(received) == sorted(f"batch/s{i}" for i in range(12))


def counter_row() -> None:
    """The counter row of migration 0002; transactional tests flush it away after each test."""
    Counter.objects.get_or_create(name=ITERATION_COUNTER, defaults={"value": 0})


def statements_of_a_batch(paths: list[str], date: int) -> int:
    jobs = [
        Job(
            QueuedWrite(WriteRequest(TopicPath.coerce(path), "x", date=date), b"v", False, ""),
            Future(),
            QueuedWrite.together,
        )
        for path in paths
    ]
    with CaptureQueriesContext(connection) as queries:
        WriteBatcher._commit(jobs)  # the writer thread's step, here in the test's thread
    assert all(job.future.result().outcome is Outcome.OK for job in jobs)
    return len(queries)


@pytest.mark.django_db(transaction=True)
def test_a_set_based_batch_takes_as_many_statements_for_forty_writes_as_for_one() -> None:
    counter_row()
    paths = [f"fixed/t{i}" for i in range(40)]
    statements_of_a_batch(paths, DATE)  # creates the topics
    assert statements_of_a_batch(paths, DATE + 1) == statements_of_a_batch(paths[:1], DATE + 2)


async def bytes_of(value: bytes) -> AsyncIterator[bytes]:
    yield value


@pytest.mark.django_db(transaction=True)
async def test_writes_awaited_on_the_event_loop_are_batched_and_ring_every_kind_of_subscriber(
    set_based: bool,
) -> None:
    await database_sync_to_async(counter_row)()
    loop = asyncio.get_running_loop()
    called: list[EventJSON] = []
    all_called = asyncio.Event()

    def callback(event: EventJSON) -> None:  # rung from a thread: it reads the database
        called.append(event)
        if len(called) == WRITERS:
            loop.call_soon_threadsafe(all_called.set)

    calling = await database_sync_to_async(api.subscribe)("loop", callback)
    iterating = await api.asubscribe("loop")
    try:
        reports = await asyncio.gather(
            *(api.apost(f"loop/t{i}", bytes_of(b"v%d" % i), date=DATE, origin="x") for i in range(WRITERS))
        )
        assert sorted(r["iteration"] for r in reports) == list(range(1, WRITERS + 1))
        assert all(r["status"] == "ok" for r in reports)
        assert all({"path": "loop", "subscribers": 2} in r["propagation"] for r in reports)
        again = await store.arecord(WriteRequest(TopicPath.coerce("loop/t0"), "x", date=DATE), value=b"again")
        assert again.outcome is Outcome.EXISTING
        with pytest.raises(TopicExists):
            await api.apost("loop/t1", bytes_of(b"no"), date=DATE + 1, origin="x", create_only=True)
        await asyncio.wait_for(all_called.wait(), WAIT)
        iterated = [await asyncio.wait_for(anext(iterating), WAIT) for _ in range(WRITERS)]
    finally:
        calling.close()
        iterating.close()
    assert sorted(e["path"] for e in called) == sorted(e["path"] for e in iterated)
    assert len({e["path"] for e in called}) == WRITERS


@pytest.mark.django_db(transaction=True)
async def test_a_write_whose_caller_is_cancelled_is_still_stored_and_announced() -> None:
    await database_sync_to_async(counter_row)()
    iterating = await api.asubscribe("gone")
    try:
        write = WriteRequest(TopicPath.coerce("gone/t"), "x", date=DATE)
        task = asyncio.ensure_future(store.arecord(write, value=b"v"))
        await asyncio.sleep(0)  # queued
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        event = await asyncio.wait_for(anext(iterating), WAIT)
    finally:
        iterating.close()
    assert (event["path"], event["value"]) == ("gone/t", "v")
