"""The measured loop of the peer suites: ``count`` operations, ``concurrency`` in flight, from one
client process or several (``ClientProcesses``), with the server's CPU time read from ``/proc``
before and after, so every rate comes with what the server spent on each operation.

Each concurrency slot runs one operation at a time on a client of its own; with N client processes
the slots and the operations are shared out between them, each process's latencies are sent back
and merged, and the rate is the operations over the span from the first process's start to the last
one's end (``time.monotonic`` is one clock for every process on Linux). The client processes start
once per run (``spawn``: no loop, socket or gRPC thread crosses a ``fork``) and are reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from bench.processes import cpu_seconds

TIME_LIMIT = 60.0  # seconds per measured loop, whatever the count
P99 = 0.99
MS, US = 1000, 1_000_000
UVLOOP, ASYNCIO = "uvloop", "asyncio"
GO, ABORT = "go", "abort"  # what the parent tells client processes once all of them are connected
WORKER_JOIN_TIMEOUT = 15.0

Operation = Callable[[int], Awaitable[None]]
T = TypeVar("T")


class PeerClient:
    """The client side of one system under test, built in each client process from its
    ``ClientSpec``: ``open`` connects for ``concurrency`` slots, ``put``/``get`` raise on any
    failure (counted as an error)."""

    label = ""  # which client library or protocol, for the record

    async def open(self, concurrency: int) -> None: ...

    async def close(self) -> None: ...

    async def put(self, key: str, value: bytes) -> None:
        raise NotImplementedError("PeerClient subclasses must implement put()")

    async def get(self, key: str) -> None:
        raise NotImplementedError("PeerClient subclasses must implement get()")


@dataclass(frozen=True)
class ClientSpec:
    """How to build a system's client in any process: a picklable class and its arguments, and the
    event loop it runs on."""

    factory: type[PeerClient]
    options: dict[str, Any] = field(default_factory=dict)
    loop: str = UVLOOP

    def build(self) -> PeerClient:
        return self.factory(**self.options)


@dataclass(frozen=True)
class Job:
    """One process's share of a measured loop."""

    spec: ClientSpec
    method: str  # "put" or "get"
    key_prefix: str  # keys are f"{key_prefix}{i}"
    value: bytes
    indices: range
    concurrency: int


@dataclass
class Share:
    """What one process measured: a latency per operation, errors, its span and its own CPU."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    started: float = 0.0
    finished: float = 0.0
    client_cpu: float = 0.0


def _loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory when ``loop`` asks for it and it is installed; else None (asyncio's)."""
    if loop != UVLOOP:
        return None
    try:
        import uvloop
    except ImportError:
        return None  # asyncio's own loop then: the record says which loop ran (``client_loop``)
    return uvloop.new_event_loop


def loop_name(loop: str) -> str:
    """The loop ``run_loop(loop, ...)`` really runs."""
    return ASYNCIO if _loop_factory(loop) is None else UVLOOP


def run_loop(loop: str, main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new event loop of the named kind."""
    with asyncio.Runner(loop_factory=_loop_factory(loop)) as runner:
        return runner.run(main)


async def load_share(operation: Operation, indices: Iterable[int], concurrency: int) -> Share:
    """Run ``operation(i)`` for each index, ``concurrency`` at a time, within ``TIME_LIMIT``."""
    share = Share()
    pending = iter(indices)
    deadline = time.monotonic() + TIME_LIMIT

    async def slot() -> None:
        for index in pending:
            if time.monotonic() > deadline:
                return
            started = time.perf_counter()
            try:
                await operation(index)
            except Exception as exc:  # counted and reported in the record, never hidden
                share.errors += 1
                share.first_error = share.first_error or f"{type(exc).__name__}: {exc}"[:300]
            share.latencies.append(time.perf_counter() - started)

    cpu = time.process_time()
    share.started = time.monotonic()
    await asyncio.gather(*(slot() for _ in range(concurrency)))
    share.finished = time.monotonic()
    share.client_cpu = time.process_time() - cpu
    return share


def figures(shares: list[Share]) -> dict[str, Any]:
    """Operations, errors, rate and latency percentiles of the merged shares."""
    latencies = sorted(latency for share in shares for latency in share.latencies)
    busy = [share for share in shares if share.latencies]
    elapsed = max(s.finished for s in busy) - min(s.started for s in busy) if busy else 0.0
    result: dict[str, Any] = {
        "operations": len(latencies),
        "errors": sum(share.errors for share in shares),
        "per_second": round(len(latencies) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(MS * statistics.median(latencies), 2) if latencies else None,
        "p99_ms": round(MS * latencies[int(P99 * (len(latencies) - 1))], 2) if latencies else None,
    }
    first_error = next((share.first_error for share in shares if share.first_error), "")
    if first_error:
        result["first_error"] = first_error
    return result


async def load(operation: Operation, count: int, concurrency: int) -> dict[str, Any]:
    """Run ``operation(i)`` for i < count, ``concurrency`` at a time, in this process; rate and
    latency percentiles."""
    return figures([await load_share(operation, range(count), concurrency)])


async def _run_job(job: Job, ready: Callable[[], bool]) -> Share:
    """Open the job's client, call ``ready()`` (which says whether to go on), run the share."""
    client = job.spec.build()
    await client.open(job.concurrency)
    try:
        if not ready():
            return Share()
        if job.method == "put":

            async def operation(index: int) -> None:
                await client.put(f"{job.key_prefix}{index}", job.value)
        else:

            async def operation(index: int) -> None:
                await client.get(f"{job.key_prefix}{index}")

        return await load_share(operation, job.indices, job.concurrency)
    finally:
        await client.close()


def _worker(connection: Connection) -> None:
    """A client process: run each job it is sent, saying ``ready`` once connected and waiting for
    the word to go; ``None`` ends it."""
    while (job := connection.recv()) is not None:

        def ready() -> bool:
            connection.send("ready")
            return bool(connection.recv() == GO)

        try:
            share = run_loop(job.spec.loop, _run_job(job, ready))
        except Exception as exc:  # sent back to the parent, which reports it
            connection.send(f"{type(exc).__name__}: {exc}"[:300])
        else:
            connection.send(share)


def _split(total: int, parts: int) -> list[int]:
    """``total`` shared as evenly as can be between ``parts`` (the first ones get the rest)."""
    return [total // parts + (1 if part < total % parts else 0) for part in range(parts)]


class ClientProcesses:
    """``count`` client processes, started once and reused for every measured loop (with a count of
    1 the loop runs in this process instead). Use as a context manager."""

    def __init__(self, count: int) -> None:
        self.count = max(1, count)
        self.workers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []

    def __enter__(self) -> ClientProcesses:
        if self.count > 1:
            context = multiprocessing.get_context("spawn")
            for _ in range(self.count):
                parent, child = context.Pipe()
                process = context.Process(target=_worker, args=(child,), daemon=True)
                process.start()
                child.close()
                self.workers.append((process, parent))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for process, connection in self.workers:
            with contextlib.suppress(OSError):  # already gone: joined or killed below
                connection.send(None)
            process.join(WORKER_JOIN_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join()
        self.workers = []

    def measure(self, job: Job, server_pid: int) -> dict[str, Any]:
        """One measured loop (``job``: all its operations and slots) against the server
        ``server_pid``: the merged figures, with the server's and the clients' CPU time per
        operation."""
        if not self.workers:
            server_cpu: list[float] = []

            def ready() -> bool:
                server_cpu.append(cpu_seconds(server_pid))
                return True

            shares = [run_loop(job.spec.loop, _run_job(job, ready))]
            server_cpu.append(cpu_seconds(server_pid))
            used = 1
        else:
            shares, server_cpu, used = self._measure_apart(job, server_pid)
        result = figures(shares)
        operations = max(result["operations"], 1)
        result["server_cpu_us_per_op"] = round(US * (server_cpu[1] - server_cpu[0]) / operations, 1)
        result["client_cpu_us_per_op"] = round(US * sum(s.client_cpu for s in shares) / operations, 1)
        result["client_processes"] = used
        result["client_loop"] = loop_name(job.spec.loop)
        return result

    def _measure_apart(self, job: Job, server_pid: int) -> tuple[list[Share], list[float], int]:
        # Never more processes than slots: at concurrency 1, one process runs the loop.
        workers = self.workers[: min(len(self.workers), job.concurrency)]
        slots = _split(job.concurrency, len(workers))
        counts = _split(len(job.indices), len(workers))
        start = job.indices.start
        for (_, connection), slot_count, share_count in zip(workers, slots, counts, strict=True):
            indices = range(start, start + share_count)
            connection.send(dataclasses.replace(job, indices=indices, concurrency=slot_count))
            start += share_count
        answers = [connection.recv() for _, connection in workers]
        failed = [answer for answer in answers if answer != "ready"]
        before = cpu_seconds(server_pid)
        for (_, connection), answer in zip(workers, answers, strict=True):
            if answer == "ready":
                connection.send(ABORT if failed else GO)
        shares = [
            connection.recv()
            for (_, connection), answer in zip(workers, answers, strict=True)
            if answer == "ready"
        ]
        after = cpu_seconds(server_pid)
        if failed:
            raise RuntimeError(f"a client process could not connect: {failed[0]}")
        errors = [share for share in shares if not isinstance(share, Share)]
        if errors:
            raise RuntimeError(f"a client process failed: {errors[0]}")
        return shares, [before, after], len(workers)
