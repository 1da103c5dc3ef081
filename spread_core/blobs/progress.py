"""Wake-ups for readers of an upload in progress: the writer's process rings an event's key when
bytes are stored, the upload completes or aborts, and its readers there stop waiting. A reader
of an upload written by another process is not rung: it waits its poll interval instead."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Watch:
    """One reader's wait for a ring of one key, registered before the reader looks for bytes
    so that a ring between its look and its wait is not missed."""

    def __init__(self) -> None:
        self._rung = threading.Event()
        self._wakers: list[Callable[[], None]] = [self._rung.set]

    def ring(self) -> None:
        for wake in self._wakers:
            wake()

    def wait(self, timeout: float) -> bool:
        """Block until rung or ``timeout`` seconds passed; whether it was rung."""
        return self._rung.wait(timeout)

    async def await_ring(self, timeout: float) -> bool:
        """``wait`` for a coroutine: its event loop is not blocked."""
        if self._rung.is_set():
            return True
        loop = asyncio.get_running_loop()
        rung = loop.create_future()

        def settle() -> None:
            if not rung.done():
                rung.set_result(None)

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the reader's loop closed since: nobody waits
                loop.call_soon_threadsafe(settle)

        self._wakers.append(wake)
        if self._rung.is_set():  # rung while the waker was being added
            return True
        try:
            await asyncio.wait_for(rung, timeout)
        except TimeoutError:
            return self._rung.is_set()
        return True


class UploadProgress:
    """The watches of this process, by event key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: dict[int, set[Watch]] = {}

    @contextmanager
    def watch(self, key: int) -> Iterator[Watch]:
        watch = Watch()
        with self._lock:
            self._watches.setdefault(key, set()).add(watch)
        try:
            yield watch
        finally:
            with self._lock:
                watches = self._watches.get(key)
                if watches is not None:
                    watches.discard(watch)
                    if not watches:
                        del self._watches[key]

    def ring(self, key: int) -> None:
        """Wake every reader watching ``key`` (any thread)."""
        with self._lock:
            watches = list(self._watches.get(key, ()))
        for watch in watches:
            watch.ring()

    def watched(self, key: int) -> int:
        """How many readers watch ``key`` now."""
        with self._lock:
            return len(self._watches.get(key, ()))


upload_progress = UploadProgress()
