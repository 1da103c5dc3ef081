"""Threads for sync work of async code: independent database steps (subscriptions, replication
sessions) on the thread pool rather than asgiref's one shared thread, with Channels' connection
clean-up; and reusable per-request threads for HTTP requests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from asgiref.sync import ThreadSensitiveContext
from channels.db import DatabaseSyncToAsync
from django.db import connections

T = TypeVar("T")


def in_thread_pool(function: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
    """``function`` as an awaitable run on the thread pool: hundreds of independent readers
    queueing on one thread would serialise every catch-up and delivery of the process."""
    return DatabaseSyncToAsync(function, thread_sensitive=False)


class RequestThreads:
    """Threads for the sync steps of HTTP requests, kept from one request to the next.

    Django's ASGI handler gives each request a new thread (a ``ThreadSensitiveContext`` with its
    own executor), started for the request and joined at its end. Here a request borrows an idle
    single-thread executor (or a new one when none is idle) and gives it back when it ends, so the
    thread serves the next request (and its database connection too, if ``CONN_MAX_AGE`` keeps
    it). Requests still never share a thread at the same time, as with Django's handler. At most
    ``keep`` idle threads are kept.
    """

    def __init__(self, keep: int = 64) -> None:
        self.keep = keep
        self.idle: list[ThreadPoolExecutor] = []

    @asynccontextmanager
    async def context(self) -> AsyncIterator[None]:
        executor = (
            self.idle.pop() if self.idle else ThreadPoolExecutor(1, thread_name_prefix="spread-request")
        )
        try:
            async with ThreadSensitiveContext(executor=executor):
                yield
        finally:
            if len(self.idle) < self.keep:
                self.idle.append(executor)
            else:
                executor.shutdown(wait=False)


request_threads = RequestThreads()


class KeptConnectionThreads:
    """A small pool of threads that keep their database connections from one call to the next
    (a connection is closed only when an error made it unusable), for the hot paths that would
    otherwise open a connection per request (``CONN_MAX_AGE`` = 0 closes it at each request's
    end). ``run`` awaits ``function(*args)`` on one of them."""

    def __init__(self, size: int = 8, name: str = "spread-kept") -> None:
        self.size = size
        self.executor = ThreadPoolExecutor(size, thread_name_prefix=name)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, _kept, function, args)

    def submit(self, function: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``function(*args)`` on one of the threads, from sync code (no waiting)."""
        return self.executor.submit(_kept, function, args)

    def close_connections(self) -> None:
        """Close the connections every thread of the pool keeps (before a database is dropped, or
        a connection pool closed: kept connections are never returned by themselves)."""
        everyone = threading.Barrier(self.size)  # one call per thread: each waits for all the others

        def close_mine() -> None:
            everyone.wait(timeout=30)
            connections.close_all()

        for done in [self.executor.submit(close_mine) for _ in range(self.size)]:
            done.result()


def _kept(function: Callable[..., T], args: tuple[Any, ...]) -> T:
    try:
        return function(*args)
    finally:
        keep_connections()


def keep_connections() -> None:
    """Keep this thread's database connections for its next call, whatever ``CONN_MAX_AGE`` says:
    only one that an error made unusable is closed (and replaced on next use)."""
    for connection in connections.all(initialized_only=True):
        connection.close_at = None  # no maximum age here: only an error ends it
        connection.close_if_unusable_or_obsolete()


kept_threads = KeptConnectionThreads()
#: Where in-process subscriptions (``api.subscribe``) call their callbacks: never the writer's thread.
delivery_threads = KeptConnectionThreads(size=4, name="spread-deliver")
