"""One run of an async step for many concurrent callers, without ever answering a caller with a
run that started before it called.

``SharedRuns(work)`` is awaited by callers who each need *a* run of ``work`` that began after they
called (a cache validation: the store's state read after the read began). A caller that arrives
while no run is in flight starts one; one that arrives before the current run began its work (the
run's task has not been scheduled yet) shares it; one that arrives after joins the next run, which
starts when the current one ends. So however many callers wait, at most one run is
in flight and one is queued, and a caller waits at most for the end of the current run plus one
whole run. An exception of a run is raised to every caller of that run; a cancelled caller does
not cancel the run the others wait for.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable


class _LoopState:
    """The runs of one event loop (each thread with a loop gets its own)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.current: asyncio.Future[None] | None = None  # the run in flight
        self.began = False  # whether the run in flight has begun its work
        self.next: asyncio.Future[None] | None = None  # the queued run's callers wait on this


class SharedRuns:
    def __init__(self, work: Callable[[], Awaitable[None]]) -> None:
        self._work = work
        self._local = threading.local()
        self.runs = 0  # how many runs started (for tests and the bench)

    async def __call__(self) -> None:
        state = self._state()
        if state.current is None:
            state.current = self._start(state, state.loop.create_future())
            waiter = state.current
        elif not state.began:
            waiter = state.current
        else:
            if state.next is None:
                state.next = state.loop.create_future()
            waiter = state.next
        await asyncio.shield(waiter)

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state: _LoopState | None = getattr(self._local, "state", None)
        if state is None or state.loop is not loop:
            state = self._local.state = _LoopState(loop)
        return state

    def _start(self, state: _LoopState, done: asyncio.Future[None]) -> asyncio.Future[None]:
        self.runs += 1
        state.began = False
        task = state.loop.create_task(self._run(state))
        task.add_done_callback(lambda finished: self._finished(state, finished, done))
        return done

    async def _run(self, state: _LoopState) -> None:
        state.began = True
        await self._work()

    def _finished(self, state: _LoopState, task: asyncio.Task[None], done: asyncio.Future[None]) -> None:
        if task.cancelled():
            done.cancel()
        elif task.exception() is not None:
            done.set_exception(task.exception())  # type: ignore[arg-type]
        else:
            done.set_result(None)
        state.current = None
        if state.next is not None:
            queued, state.next = state.next, None
            state.current = self._start(state, queued)
