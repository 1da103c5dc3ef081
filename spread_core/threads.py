"""Running independent database steps of async code (subscriptions, replication sessions) on the
thread pool rather than asgiref's one shared thread, with Channels' connection clean-up."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from channels.db import DatabaseSyncToAsync


def in_thread_pool(function: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
    """``function`` as an awaitable run on the thread pool: hundreds of independent readers
    queueing on one thread would serialise every catch-up and delivery of the process."""
    return DatabaseSyncToAsync(function, thread_sensitive=False)
