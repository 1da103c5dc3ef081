"""Group commit: concurrent writes of one process share a transaction and its durable commit.

A write that is not inside a caller's transaction is queued; one writer thread takes every write
waiting at that moment, runs them in ONE transaction and commits once (one fsync for the whole
batch), then wakes the callers with their results. When a write fails, the batch is rolled back
and each write runs again in a transaction of its own, so that only that one fails. Each caller
then rings its subscribers from its own thread (the server's event-loop context). Iterations
stay dense and in commit order: the batch's writes take consecutive iterations in queue order,
under the same counter lock as before. A lone write is a batch of one, so latency without
concurrency is as before; with N writers waiting, they pay one commit instead of N.

A write may come with a ``together`` function that stores a run of such writes at once (set-based
statements instead of each write's own queries): consecutive jobs with the same ``together`` are
passed to it in queue order. Run alone, after a failed batch, each write is its own callable.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import connection, transaction

from .conf import spread_settings
from .iteration import shared_counter, write_transaction
from .threads import keep_connections

T = TypeVar("T")
#: Stores a run of writes at once; returns, per write and in order, its result or the exception
#: it fails with (having stored nothing for it). An exception it raises fails the whole batch.
Together = Callable[[Sequence[Any]], list[Any]]
#: The writer thread closes its database connection after this many idle seconds.
IDLE_CLOSE = 1.0
_STOP: Any = ("stop", None)


@dataclass(frozen=True, slots=True)
class Job:
    """One queued write: the callable that stores it alone, where its answer goes, and the
    function that can store it together with its neighbours (None: alone, in the batch)."""

    write: Callable[[], Any]
    future: Future[Any]
    together: Together | None = None


class WriteBatcher:
    """The process's writer thread and its queue (started on the first write)."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.start_lock = threading.Lock()

    @staticmethod
    def applies() -> bool:
        """Whether a write made now would be batched: group commit is on, and the caller is not
        inside a transaction of its own (its writes must commit with it)."""
        return bool(spread_settings.GROUP_COMMIT) and not transaction.get_connection().in_atomic_block

    def run(self, write: Callable[[], T], *, together: Together | None = None) -> T:
        """Run ``write`` in a batch transaction and return its result (or raise its error) once
        the batch has committed. Commit hooks of ``write`` would run on the writer thread: the
        caller does its after-commit work itself when this returns."""
        if threading.current_thread() is self.thread:
            raise RuntimeError("A batched write cannot wait for another batched write.")
        return self.submit(write, together=together).result()

    def submit(self, write: Callable[[], T], *, together: Together | None = None) -> Future[T]:
        """Queue ``write`` and return the future of its answer, set by the writer thread once the
        batch has committed (without waiting: an event loop awaits it with ``asyncio.wrap_future``).
        The future must not be cancelled: the write is stored anyway."""
        future: Future[T] = Future()
        self.jobs.put(Job(write, future, together))
        self._ensure_thread()
        return future

    def _ensure_thread(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            return
        with self.start_lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="spread-group-commit", daemon=True)
                self.thread.start()

    def stop(self) -> None:
        """End the writer thread (after the writes already queued) and close its connection."""
        thread = self.thread
        if thread is not None and thread.is_alive():
            self.jobs.put(_STOP)
            thread.join()
        self.thread = None

    def _loop(self) -> None:
        while True:
            try:
                first = self.jobs.get(timeout=IDLE_CLOSE)
            except queue.Empty:
                connection.close()  # idle: give the connection back (a pool takes it back cheaply)
                continue
            batch = [first]
            limit = spread_settings.GROUP_COMMIT_MAX
            while len(batch) < limit:
                try:
                    batch.append(self.jobs.get_nowait())
                except queue.Empty:
                    break
            stopping = _STOP in batch
            jobs = [job for job in batch if job is not _STOP]
            if jobs:
                try:
                    self._commit(jobs)
                except Exception as exc:  # never leave a caller waiting, never lose the thread
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(exc)
            if stopping:
                connection.close()
                return

    @classmethod
    def _commit(cls, batch: Sequence[Job]) -> None:
        """Run the batch in one transaction; if any write fails, roll it all back and run each
        write in a transaction of its own, so that only the failing one fails. A batch that fails
        before its first write (the database is unreachable, or locked past its busy timeout)
        fails all its callers at once: run alone, each write would only wait for the same error
        again, one after the other."""
        keep_connections()  # kept from batch to batch; one the database dropped is replaced
        writing = False
        try:
            with write_transaction(), shared_counter():
                writing = True
                answers = cls._write(batch)
        except Exception:
            if not writing:
                raise
            if len(batch) == 1:
                cls._run_alone(batch[0])
            else:
                for job in batch:
                    cls._run_alone(job)
            return
        for job, answer in zip(batch, answers, strict=True):
            if isinstance(answer, Exception):
                job.future.set_exception(answer)
            else:
                job.future.set_result(answer)

    @staticmethod
    def _write(batch: Sequence[Job]) -> list[Any]:
        """Every write's answer, in queue order: runs of jobs that share a ``together`` function
        are stored by it at once, the others one by one."""
        answers: list[Any] = []
        for together, run in itertools.groupby(batch, key=lambda job: job.together):
            jobs = list(run)
            if together is None:
                answers.extend(job.write() for job in jobs)
            else:
                answers.extend(together([job.write for job in jobs]))
        return answers

    @staticmethod
    def _run_alone(job: Job) -> None:
        try:
            with write_transaction():
                result = job.write()
        except Exception as exc:
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)


batcher = WriteBatcher()
