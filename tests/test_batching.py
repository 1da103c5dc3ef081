"""Group commit: writes from many threads share transactions, keep dense iterations in commit
order, get their own results and errors, and ring subscribers after the commit."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from spread_core import api
from spread_core.batching import batcher
from spread_core.exceptions import TopicExists
from spread_core.models import Change, Event

WRITERS = 8
WRITES_EACH = 25


def post_many(index: int) -> list[int]:
    try:
        return [api.post(f"batch/w{index}/t{i}", f"{index}:{i}")["iteration"] for i in range(WRITES_EACH)]
    finally:
        connection.close()  # this thread's connection


@pytest.mark.django_db(transaction=True)
def test_concurrent_writes_are_batched_with_dense_iterations_and_each_gets_its_own_result() -> None:
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
def test_a_failing_write_in_a_batch_fails_alone() -> None:
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


def post_one(index: int) -> None:
    try:
        api.post(f"batch/s{index}", b"v")
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_in_process_subscribers_are_rung_after_a_batched_commit() -> None:
    received: list[str] = []
    subscription = api.subscribe("batch", lambda event: received.append(event["path"]))
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(post_one, range(12)))
    finally:
        subscription.close()
    assert sorted(received) == sorted(f"batch/s{i}" for i in range(12))
