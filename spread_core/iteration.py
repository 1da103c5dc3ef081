"""Dense, commit-ordered iterations: the node's change log.

Every entry of the log (an event stored, an upload completed or aborted) takes the next value of
one counter row, incremented inside the writing transaction. The row stays locked until that
transaction commits (PostgreSQL row lock; SQLite's ``BEGIN IMMEDIATE`` write lock), so the next
writer can only read the counter after the previous one committed: iterations become visible in
increasing order, a rolled-back write releases its number (no holes) and the value is persisted
with the data it numbers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from django.db import transaction

from .models import ITERATION_COUNTER, Change, Counter, Event

_sqlite_writers = threading.Lock()


@contextmanager
def write_transaction() -> Iterator[None]:
    """``transaction.atomic()`` for a write. On SQLite, this process's threads first queue on a
    lock: SQLite's busy handler sleeps with a growing back-off, so threads competing for the
    database write lock would wait up to seconds each; the lock hands it over at once. (Not inside
    an outer transaction, which may already hold the database lock.)"""
    connection = transaction.get_connection()
    guard: AbstractContextManager[object] = (
        _sqlite_writers if connection.vendor == "sqlite" and not connection.in_atomic_block else nullcontext()
    )
    with guard, transaction.atomic():
        yield


_shared = threading.local()


def lock_counter() -> Counter:
    """Lock the iteration counter for the current transaction and return it (inside
    ``shared_counter``: the counter that block locked once for all its writes)."""
    shared: Counter | None = getattr(_shared, "counter", None)
    if shared is not None:
        return shared
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("lock_counter() must run inside transaction.atomic().")
    counter, _ = Counter.objects.select_for_update().get_or_create(pk=ITERATION_COUNTER)
    return counter


def take_next(counter: Counter) -> int:
    """Advance a counter locked by ``lock_counter`` and return the new iteration (inside
    ``shared_counter`` the row is written once, when the block ends)."""
    counter.value += 1
    if counter is not getattr(_shared, "counter", None):
        counter.save(update_fields=["value"])
    return counter.value


@contextmanager
def shared_counter() -> Iterator[None]:
    """Inside a write transaction: lock the counter once for several writes (a group commit),
    and store its final value once at the end; nothing is stored if the block raises."""
    counter = lock_counter()
    _shared.counter = counter
    try:
        yield
    finally:
        _shared.counter = None
    counter.save(update_fields=["value"])


def log(counter: Counter, event: Event, kind: str) -> int:
    """Append an entry about ``event`` to the log; return its iteration."""
    iteration = take_next(counter)
    Change.objects.create(iteration=iteration, event=event, kind=kind)
    return iteration


def current_iteration() -> int:
    """The highest iteration committed so far."""
    counter = Counter.objects.filter(pk=ITERATION_COUNTER).first()
    return counter.value if counter else 0
