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
from typing import Any

from django.db import transaction

from . import statements
from .models import ITERATION_COUNTER, Change, Counter, Event

_sqlite_writers = threading.Lock()
SQLITE_SYNCHRONOUS_NORMAL = 1


@contextmanager
def write_transaction(*, durable: bool = True) -> Iterator[None]:
    """``transaction.atomic()`` for a write. On SQLite, this process's threads first queue on a
    lock: SQLite's busy handler sleeps with a growing back-off, so threads competing for the
    database write lock would wait up to seconds each; the lock hands it over at once. (Not inside
    an outer transaction, which may already hold the database lock.)

    ``durable=False`` commits without waiting for the disk (SQLite ``synchronous=NORMAL`` in WAL
    mode, PostgreSQL ``synchronous_commit=off``): for the chunks of an unfinished upload, which a
    crash aborts anyway. The upload's completion is a durable commit, and it makes every earlier
    commit durable with it (both databases sync their log in order).
    """
    connection = transaction.get_connection()
    outermost = not connection.in_atomic_block
    sqlite = connection.vendor == "sqlite"
    guard: AbstractContextManager[object] = _sqlite_writers if sqlite and outermost else nullcontext()
    relaxed = (
        _sqlite_synchronous_normal(connection) if sqlite and outermost and not durable else nullcontext()
    )
    with guard, relaxed, transaction.atomic():
        if not durable and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield


@contextmanager
def _sqlite_synchronous_normal(connection: Any) -> Iterator[None]:
    """SQLite commits of this block do not fsync (WAL mode: the log is synced at the next
    ``synchronous=FULL`` commit or checkpoint); the connection's own setting is restored after."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA synchronous")
        previous = cursor.fetchone()[0]
        if previous > SQLITE_SYNCHRONOUS_NORMAL:
            cursor.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS_NORMAL}")
    try:
        yield
    finally:
        if previous > SQLITE_SYNCHRONOUS_NORMAL:
            with connection.cursor() as cursor:
                cursor.execute(f"PRAGMA synchronous={int(previous)}")


_shared = threading.local()


def lock_counter() -> Counter:
    """Lock the iteration counter for the current transaction and return it (inside
    ``shared_counter``: the counter that block locked once for all its writes)."""
    shared: Counter | None = getattr(_shared, "counter", None)
    if shared is not None:
        return shared
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("lock_counter() must run inside transaction.atomic().")
    counter = statements.lock_counter(ITERATION_COUNTER)
    if counter is None:  # a new database: the first write creates the row
        counter, _ = Counter.objects.select_for_update().get_or_create(pk=ITERATION_COUNTER)
    return counter


def take_next(counter: Counter) -> int:
    """Advance a counter locked by ``lock_counter`` and return the new iteration (inside
    ``shared_counter`` the row is written once, when the block ends)."""
    counter.value += 1
    if counter is not getattr(_shared, "counter", None):
        statements.store_counter(counter)
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
    statements.store_counter(counter)


def log(counter: Counter, event: Event, kind: str) -> int:
    """Append an entry about ``event`` to the log; return its iteration."""
    iteration = take_next(counter)
    Change.objects.create(iteration=iteration, event=event, kind=kind)
    return iteration


def current_iteration() -> int:
    """The highest iteration committed so far."""
    counter = Counter.objects.filter(pk=ITERATION_COUNTER).first()
    return counter.value if counter else 0
