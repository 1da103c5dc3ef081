"""A set-based group commit (``batch_record``) stores exactly what ``store._record`` stores when
the same writes are applied one by one in one transaction: the same topic, event, log, chunk and
counter rows, and the same answer (outcome, or error) for every write, for any batch."""

from __future__ import annotations

import contextlib
from concurrent.futures import Future
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spread_core.batching import Job, WriteBatcher
from spread_core.exceptions import TopicExists
from spread_core.iteration import write_transaction
from spread_core.models import ITERATION_COUNTER, Change, Counter, Event, Topic
from spread_core.paths import TopicPath
from spread_core.store import QueuedWrite, WriteRequest, abort_upload

from .blob_stores import empty_test_blob_root, stored_pieces

DATE = 1_764_130_000_000_000
# Nested paths that share ancestors, some of them written at two levels.
PATHS = ["a", "a/b", "a/b/c", "a/c", "b/a", "c/a/b", "c/a/c"]
ORIGINS = ["x", "y", "é"]  # "é" sorts after both as UTF-8 bytes
KINDS = ["value", "tombstone", "blob", "blob-empty"]  # blob-empty: a replicated upload's start

write_specs = st.tuples(
    st.sampled_from(PATHS),
    st.integers(0, 3),  # small date range: ties, too_late writes and duplicates are frequent
    st.sampled_from(ORIGINS),
    st.sampled_from(KINDS),
    st.booleans(),  # create_only
    st.sampled_from(["", "peer"]),  # source ("peer": replicated, no lease)
)


def queued(spec: tuple[str, int, str, str, bool, str], number: int) -> QueuedWrite:
    path, date, origin, kind, create_only, source = spec
    request = WriteRequest(
        path=TopicPath.from_canonical(path),
        origin=origin,
        date=DATE + date,
        content_type=f"test/{kind}",
        deleted=kind == "tombstone",
        create_only=create_only,
        source=source,
    )
    # Each write has its own bytes, so a duplicate that stored its value would show.
    value = None if kind in ("tombstone", "blob-empty") else f"{kind}-{number}".encode()
    return QueuedWrite(request, value, kind.startswith("blob"), f"sha-{number}" if kind == "value" else "")


def reset() -> None:
    """Empty tables and the counter at 0: each run starts from the same fresh state."""
    Topic.objects.update(current=None)
    empty_test_blob_root()
    Change.objects.all().delete()
    Event.objects.all().delete()
    Topic.objects.all().delete()
    Counter.objects.update_or_create(name=ITERATION_COUNTER, defaults={"value": 0})


def prepare(prior: list[QueuedWrite], aborts: list[bool]) -> None:
    """The state before the batch: earlier writes stored one by one, some blob uploads aborted
    (an aborted event's id does not count as stored)."""
    reset()
    for write in prior:
        with contextlib.suppress(TopicExists), write_transaction():
            write()
    started = Event.objects.filter(is_blob=True, complete=False).order_by("iteration")
    for event, abort in zip(list(started), aborts, strict=False):
        if abort:
            abort_upload(event, "test")


def answer(job: Job) -> tuple[Any, ...]:
    error = job.future.exception()
    if error is not None:
        current = error.event.event_id if isinstance(error, TopicExists) else None
        return (type(error).__name__, current)
    recorded = job.future.result()
    return (recorded.outcome, recorded.event.iteration, recorded.event.event_id, recorded.event.topic.path)


def set_based(batch: list[QueuedWrite]) -> list[tuple[Any, ...]]:
    jobs = [Job(write, Future(), QueuedWrite.together) for write in batch]
    WriteBatcher._commit(jobs)  # the writer thread's step, here in the test's thread
    return [answer(job) for job in jobs]


def one_by_one(batch: list[QueuedWrite]) -> list[tuple[Any, ...]]:
    jobs = [Job(write, Future()) for write in batch]
    with write_transaction():
        for job in jobs:
            try:
                job.future.set_result(job.write())
            except Exception as exc:  # a refused write stores nothing: the others go on
                job.future.set_exception(exc)
    return [answer(job) for job in jobs]


def tables() -> dict[str, Any]:
    topics = Topic.objects.select_related("parent", "current")
    events = Event.objects.select_related("topic")
    return {
        "topics": sorted(
            (
                t.path,
                t.parent.path if t.parent else None,
                t.depth,
                t.name,
                t.current and t.current.event_id,
                t.changed,
            )
            for t in topics
        ),
        "events": [
            (
                e.iteration,
                e.event_id,
                e.topic.path,
                e.origin,
                e.date,
                e.deleted,
                e.too_late,
                e.content_type,
                e.size,
                None if e.value is None else bytes(e.value),
                e.is_blob,
                e.complete,
                e.aborted,
                e.sha256,
                e.lease_until is None,  # a lease is "now + timeout": only whether there is one
                e.source,
            )
            for e in events.order_by("iteration")
        ],
        "changes": list(Change.objects.order_by("iteration").values_list("iteration", "event_id", "kind")),
        "blob_bytes": [(e.pk, b"".join(stored_pieces(e.pk))) for e in events.filter(is_blob=True)],
        "counter": Counter.objects.get(name=ITERATION_COUNTER).value,
    }


@pytest.mark.django_db(transaction=True)
@settings(max_examples=60, deadline=None)
@given(
    prior=st.lists(write_specs, max_size=8),
    aborts=st.lists(st.booleans(), max_size=4),
    fresh=st.lists(write_specs, min_size=1, max_size=16),
    data=st.data(),
)
def test_a_set_based_batch_stores_and_answers_like_the_writes_one_by_one(
    prior: list[Any], aborts: list[bool], fresh: list[Any], data: st.DataObject
) -> None:
    # Repeats of earlier writes (of the prior state or of the batch itself), in any order.
    repeats = data.draw(st.lists(st.sampled_from(prior + fresh), max_size=4), label="repeats")
    specs = data.draw(st.permutations(fresh + repeats), label="batch")
    before = [queued(spec, number) for number, spec in enumerate(prior)]
    batch = [queued(spec, 100 + number) for number, spec in enumerate(specs)]

    prepare(before, aborts)
    answers = set_based(batch)
    stored = tables()
    prepare(before, aborts)
    expected = one_by_one(batch)

    assert answers == expected
    assert stored == tables()
