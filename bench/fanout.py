"""``python -m bench.fanout``: websocket fan-out and catch-up, as ratios to a raw websocket baseline.

Two suites (also run by ``python -m bench --suite fanout catchup``):

- ``fanout``: N websocket subscribers (default 100, then 1,000) on the prefix ``fan``, all synced,
  then one publisher POSTs values to ``fan/m<i>``: first paced (``--rate`` per second, delay is
  the figure), then back to back (deliveries/s is the figure), with a 2 s pause before each phase.
  Every subscriber records when it receives each value; delay = receive time - the time the
  publisher sent the POST. Also checked: deliveries missing after a 30 s drain, duplicates,
  iterations out of order, error frames, early closes, the server's log, and how many
  subscribers the node still counts (POST propagation report) once every websocket has closed.
- ``catchup``: 20,000 topics under ``cu`` (written with the Python API in a child process), then
  the time a new subscriber takes from connect to ``synced``, and the number of updates it got.

The baseline, measured in the same run next to each figure, is ``bench/baseline_ws.py``: a
minimal ASGI broadcaster on the same uvicorn, fed the same load by the same client. Each suite
starts its own node (``LiveNode``, a temporary SQLite database, the in-memory channel layer).
Loops are bounded in count and time and target only 127.0.0.1. The client (websockets +
httpx, asyncio, one process) runs on the same cores as the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.baseline_ws import ORIGIN  # noqa: E402
from bench.options import add_common_options, add_shared_option, emitter  # noqa: E402
from spread_core.testing import LiveNode, free_port  # noqa: E402

BENCH_SECRET = "spread-bench-secret-key-0123456789-0123456789-0123456789"
SUITES = ("fanout", "catchup")
VALUE = b"x" * 100
PREFIX = "fan"
CATCHUP_PREFIX = "cu"
CONNECT_CONCURRENCY = 50  # websocket handshakes in flight while subscribing
PHASE_TIME_LIMIT = 60.0  # seconds of publishing per phase, whatever the count
DRAIN_TIMEOUT = 30.0  # seconds to wait for the last deliveries (> the node's 15 s heartbeat)
SUBSCRIBE_TIMEOUT = 120.0  # seconds for all subscribers to be synced
CATCHUP_TIMEOUT = 120.0  # seconds for one catch-up
CLOSE_TIMEOUT = 20.0
PHASE_PAUSE = 2.0  # seconds of quiet between phases, so one phase's backlog does not spill into the next
GHOST_WAIT = 5.0  # seconds for the node to forget subscribers that closed their websocket


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def raise_fd_limit(needed: int) -> int:
    """Raise the soft limit on open files (inherited by the servers started after it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[int(fraction * (len(ordered) - 1))]


def ms(seconds: float) -> float:
    return round(1000 * seconds, 2)


def ratio(value: float, base: float) -> float | None:
    return round(value / base, 3) if base else None


# Servers ------------------------------------------------------------------------------------------
class Server:
    """A node (``LiveNode``) or the raw websocket baseline, with the URLs the client needs."""

    def __init__(
        self,
        system: str,
        url: str,
        headers: dict[str, str],
        stop: Callable[[], None],
        log_path: Path,
        database_url: str = "",
    ) -> None:
        self.system = system
        self.url = url
        self.ws_url = "ws" + url[len("http") :]
        self.headers = headers
        self.stop = stop
        self.log_path = log_path
        self.database_url = database_url

    def log_problems(self) -> dict[str, int]:
        """What the server logged: warnings and errors, and the exception that ends each traceback,
        with their counts."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        found: dict[str, int] = {}
        in_traceback = False
        for line in text.splitlines():
            if line.startswith("Traceback"):
                in_traceback = True
            elif in_traceback and line and not line[0].isspace():
                if not line.startswith(("The above exception", "During handling")):
                    found[line[:200]] = found.get(line[:200], 0) + 1
                    in_traceback = False
            elif any(word in line for word in ("WARNING", "ERROR", "CRITICAL", "Dropping")):
                found[line[:200]] = found.get(line[:200], 0) + 1
        return found


def start_node(workdir: Path, name: str, options: dict[str, Any] | None = None, **extra_env: str) -> Server:
    """A node on SQLite in ``workdir``, with ``options`` merged into its ``SPREAD`` (and
    ``extra_env``: ``DATABASE_URL`` to share another node's database, ``REDIS_URL``)."""
    env = {
        "DATABASE_URL": f"sqlite:///{workdir / (name + '.sqlite3')}",
        "SECRET_KEY": BENCH_SECRET,
        "SPREAD_NODE_NAME": "bench",
        "SPREAD_OPTIONS": json.dumps(options or {}),
        **extra_env,
    }
    log_path = workdir / f"{name}.log"
    node = LiveNode(REPO / "manage.py", env, log_path=log_path).start()
    token = httpx.post(f"{node.url}/jwttoken").json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    return Server("spread-uvicorn-sqlite", node.url, headers, node.stop, log_path, env["DATABASE_URL"])


def start_baseline(workdir: Path) -> Server:
    port = free_port()
    log_path = workdir / f"baseline_ws-{port}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.baseline_ws", "--port", str(port)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1.0)
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"baseline did not start: {log_path.read_text()}") from None
            time.sleep(0.05)

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    return Server("raw-ws-uvicorn", url, {}, stop, log_path)


# Subscribers --------------------------------------------------------------------------------------
@dataclass
class Tally:
    """Shared by the subscribers of one measurement."""

    expected: int = 0
    received: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def expect(self, count: int) -> None:
        self.expected, self.received = count, 0
        self.done.clear()


@dataclass
class Receipts:
    """When one subscriber received each message index; a second receipt counts as a duplicate."""

    tally: Tally
    received: dict[int, float] = field(default_factory=dict)
    duplicates: int = 0

    def take(self, index: int, received_at: float) -> None:
        if index in self.received:
            self.duplicates += 1
            return
        self.received[index] = received_at
        self.tally.received += 1
        if self.tally.received >= self.tally.expected:
            self.tally.done.set()


@dataclass
class Subscriber(Receipts):
    """One websocket: receive time per message index, and what went wrong."""

    synced: asyncio.Event = field(default_factory=asyncio.Event)
    last_iteration: int = 0
    catchup_updates: int = 0
    out_of_order: int = 0
    errors: list[str] = field(default_factory=list)
    closed: str | None = None
    ws: ClientConnection | None = None

    async def run(self, url: str, headers: dict[str, str], gate: asyncio.Semaphore) -> None:
        try:
            async with gate:
                self.ws = await connect(
                    url, additional_headers=headers, ping_interval=None, open_timeout=30, close_timeout=5
                )
                self.handle(await self.ws.recv())
                while not self.synced.is_set():
                    self.handle(await self.ws.recv())
            async for text in self.ws:
                self.handle(text)
            self.closed = f"closed by server: {self.ws.close_code} {self.ws.close_reason}"
        except ConnectionClosed as exc:
            self.closed = f"closed: {exc}"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # reported in the record, never hidden
            self.closed = f"{type(exc).__name__}: {exc}"
        finally:
            self.synced.set()  # nobody waits for a subscriber that is gone

    def handle(self, text: str | bytes) -> None:
        received_at = time.perf_counter()
        frame = json.loads(text)
        kind = frame.get("type")
        if kind == "update":
            event = frame["event"]
            if event["iteration"] <= self.last_iteration:
                self.out_of_order += 1
            self.last_iteration = max(self.last_iteration, event["iteration"])
            if not self.synced.is_set():
                self.catchup_updates += 1
                return
            self.take(int(event["path"].rpartition("/")[2][1:]), received_at)
        elif kind == "synced":
            self.synced.set()
        elif kind == "error":
            self.errors.append(f"{frame.get('code')}: {frame.get('message')}")


async def close_all(subscribers: list[Subscriber], tasks: list[asyncio.Task[None]]) -> dict[str, Any]:
    """Close every websocket with a close handshake (bounded in time; the rest are aborted)."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    started = time.perf_counter()
    closed = 0

    async def close(subscriber: Subscriber) -> None:
        nonlocal closed
        if subscriber.ws is not None:
            async with gate:
                await subscriber.ws.close()
                closed += 1

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(close(s) for s in subscribers), return_exceptions=True), CLOSE_TIMEOUT
        )
    seconds = round(time.perf_counter() - started, 3)
    for subscriber in subscribers:
        if subscriber.ws is not None and subscriber.ws.state.name != "CLOSED":
            subscriber.ws.transport.abort()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"close_seconds": seconds, "closed_with_handshake": closed}


# Fan-out ------------------------------------------------------------------------------------------
class Receiver(Protocol):
    """What the phase figures read from one subscriber, whatever the system: receive time per
    message index, and how many messages came twice."""

    received: dict[int, float]
    duplicates: int


# Publishes message <index> and waits for the system's answer; False when the system refused it.
Send = Callable[[int], Awaitable[bool]]


async def publish(
    send: Send, indices: range, rate: float | None, sent: dict[int, float]
) -> tuple[int, float]:
    """Send one value per index, paced at ``rate`` per second (None: back to back); return errors
    and the publishing time."""
    errors = 0
    start = time.perf_counter()
    for number, index in enumerate(indices):
        if rate:
            delay = start + number / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        if time.perf_counter() - start > PHASE_TIME_LIMIT:
            break
        sent[index] = time.perf_counter()
        if not await send(index):
            errors += 1
    return errors, round(time.perf_counter() - start, 3)


def phase_figures(subscribers: Sequence[Receiver], indices: range, sent: dict[int, float]) -> dict[str, Any]:
    delays: list[float] = []
    last = 0.0
    for subscriber in subscribers:
        for index in indices:
            received_at = subscriber.received.get(index)
            if received_at is not None and index in sent:
                delays.append(received_at - sent[index])
                last = max(last, received_at)
    expected = len(subscribers) * len(sent)
    delays.sort()
    figures: dict[str, Any] = {
        "messages": len(sent),
        "deliveries": len(delays),
        "missing": expected - len(delays),
    }
    if delays:
        figures.update(
            p50_ms=ms(statistics.median(delays)),
            p99_ms=ms(percentile(delays, 0.99)),
            max_ms=ms(delays[-1]),
            deliveries_per_second=round(len(delays) / (last - min(sent.values())), 1),
        )
    return figures


async def run_phases(
    subscribers: Sequence[Receiver], tally: Tally, send: Send, messages: int, rate: float, burst: int
) -> dict[str, dict[str, Any]]:
    """The paced phase (``messages`` at ``rate`` per second), then the burst phase (``burst`` back to
    back), each after PHASE_PAUSE of quiet; each waits up to DRAIN_TIMEOUT for every delivery.
    Return the figures per phase, with the duplicates that came during it and the publish errors."""
    result: dict[str, dict[str, Any]] = {}
    first = 0
    for phase, size, phase_rate in (("paced", messages, rate), ("burst", burst, None)):
        if size <= 0:
            continue
        await asyncio.sleep(PHASE_PAUSE)
        indices = range(first, first + size)
        first += size
        sent: dict[int, float] = {}
        duplicates_before = sum(s.duplicates for s in subscribers)
        tally.expect(len(subscribers) * size)
        publish_errors, publish_seconds = await publish(send, indices, phase_rate, sent)
        tally.expected = len(subscribers) * len(sent)  # a phase cut short by its time limit
        if tally.received < tally.expected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tally.done.wait(), DRAIN_TIMEOUT)
        result[phase] = {
            **phase_figures(subscribers, indices, sent),
            "duplicates": sum(s.duplicates for s in subscribers) - duplicates_before,
            "publish_seconds": publish_seconds,
            "publish_errors": publish_errors,
        }
    return result


async def fanout_run(
    server: Server,
    count: int,
    messages: int,
    rate: float,
    burst: int,
    subscribe_to: list[Server] | None = None,
) -> dict[str, Any]:
    """Subscribe ``count`` websockets (to the ``subscribe_to`` servers in turn, default
    ``server``), then a paced phase and a burst phase of POSTs to ``server``; figures per phase."""
    tally = Tally()
    subscribers = [Subscriber(tally) for _ in range(count)]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    targets = subscribe_to or [server]
    started = time.perf_counter()
    tasks = [
        asyncio.create_task(
            s.run(f"{targets[i % len(targets)].ws_url}/ws/{PREFIX}?since=0", server.headers, gate)
        )
        for i, s in enumerate(subscribers)
    ]
    result: dict[str, Any] = {}
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(s.synced.wait() for s in subscribers)), SUBSCRIBE_TIMEOUT)
        result["subscribe"] = {
            "seconds": round(time.perf_counter() - started, 3),
            "synced": sum(s.synced.is_set() and s.closed is None for s in subscribers),
        }
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:

            async def send(index: int) -> bool:
                response = await client.post(
                    f"{server.url}/raw/{PREFIX}/m{index}", content=VALUE, headers=server.headers
                )
                return response.status_code == 200

            for phase, figures in (await run_phases(subscribers, tally, send, messages, rate, burst)).items():
                figures["post_errors"] = figures.pop("publish_errors")  # this suite's historical name
                result[phase] = figures
    finally:
        result["problems"] = {
            "duplicates": sum(s.duplicates for s in subscribers),
            "out_of_order": sum(s.out_of_order for s in subscribers),
            "unexpected_catchup_updates": sum(s.catchup_updates for s in subscribers),
            "error_frames": sorted({e for s in subscribers for e in s.errors})[:5],
            "closed_early": sorted({s.closed for s in subscribers if s.closed})[:5],
            "closed_early_count": sum(1 for s in subscribers if s.closed),
        }
        result["problems"].update(await close_all(subscribers, tasks))
    result["problems"]["subscribers_counted_after_close"] = await ghost_subscribers(server)
    return result


async def ghost_subscribers(server: Server) -> int | None:
    """After every subscriber left: how many the node still counts under the prefix (should be 0),
    read from the propagation report of one more POST, retried for up to GHOST_WAIT seconds."""
    deadline = time.monotonic() + GHOST_WAIT
    async with httpx.AsyncClient(timeout=30.0) as client:
        for attempt in range(100):
            response = await client.post(
                f"{server.url}/raw/{PREFIX}/after-close-{attempt}", content=VALUE, headers=server.headers
            )
            report = response.json().get("propagation")
            if report is None:
                return None  # the baseline keeps no count
            count = sum(entry["subscribers"] for entry in report if entry["path"] == PREFIX)
            if count == 0 or time.monotonic() > deadline:
                return int(count)
            await asyncio.sleep(0.5)
    return None


def run_fanout(args: argparse.Namespace, workdir: Path, emit: Callable[[dict[str, Any]], None]) -> None:
    raise_fd_limit(2 * max(args.subscribers) + 512)
    run = now_iso()
    for count in args.subscribers:
        figures: dict[str, dict[str, Any]] = {}
        for kind in ("baseline", "spread"):
            server = start_baseline(workdir) if kind == "baseline" else start_node(workdir, f"fanout-{count}")
            try:
                figures[kind] = asyncio.run(fanout_run(server, count, args.messages, args.rate, args.burst))
            finally:
                server.stop()
            figures[kind]["problems"]["server_log"] = server.log_problems()
        base, spread = figures["baseline"], figures["spread"]
        common = {"suite": "fanout", "run": run, "system": "spread-uvicorn-sqlite", "subscribers": count}
        emit(
            {
                **common,
                "measurement": "subscribe",
                **spread["subscribe"],
                "baseline_raw_ws_seconds": base["subscribe"]["seconds"],
                "ratio_to_raw_ws": ratio(spread["subscribe"]["seconds"], base["subscribe"]["seconds"]),
            }
        )
        for phase in ("paced", "burst"):
            if phase not in spread or phase not in base:
                continue
            s, b = spread[phase], base[phase]
            record = {**common, "measurement": phase}
            if phase == "paced":
                record["rate_per_second"] = args.rate
            record.update(s)
            record["baseline_raw_ws"] = b
            for key in ("p50_ms", "p99_ms", "deliveries_per_second"):
                if key in s and key in b:
                    record[f"ratio_{key.removesuffix('_ms')}_to_raw_ws"] = ratio(s[key], b[key])
            emit(record)
        emit({**common, "measurement": "problems", **spread["problems"], "baseline_raw_ws": base["problems"]})


# Catch-up -----------------------------------------------------------------------------------------
LOADER = """
import json, time, django
django.setup()
from django.db import transaction
from spread_core import api
from spread_core.iteration import current_iteration
topics, batch = {topics}, {batch}
started = time.perf_counter()
for first in range(0, topics, batch):
    with transaction.atomic():  # one commit (one fsync) per batch, not per topic
        for index in range(first, min(first + batch, topics)):
            # the origin and content type of an HTTP write, so frames match the baseline's
            api.post(f"{prefix}/{{index:05d}}", b"x" * 100, origin="{origin}", content_type="{content_type}")
seconds = time.perf_counter() - started
print(json.dumps({{"seconds": round(seconds, 2), "head": current_iteration()}}))
"""


def load_topics(database_url: str, topics: int) -> dict[str, Any]:
    """Write ``topics`` topics under ``cu`` with the Python API, in a child process."""
    code = LOADER.format(
        topics=topics,
        batch=1000,
        prefix=CATCHUP_PREFIX,
        origin=ORIGIN,
        content_type="application/octet-stream",
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": BENCH_SECRET,
        "SPREAD_NODE_NAME": "bench-loader",
        "DJANGO_SETTINGS_MODULE": "spread_project.settings",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )
    if out.returncode != 0:
        raise RuntimeError(f"loading topics failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def catch_up(url: str, headers: dict[str, str]) -> dict[str, Any]:
    """Connect, read until ``synced``; time and check what came."""
    paths: set[str] = set()
    updates = out_of_order = frame_bytes = 0
    last = 0
    synced_at: int | None = None
    synced_seconds: float | None = None
    started = time.perf_counter()

    async def read() -> None:
        nonlocal updates, out_of_order, frame_bytes, last, synced_at, synced_seconds
        async with connect(url, additional_headers=headers, ping_interval=None, max_size=None) as ws:
            async for text in ws:
                frame = json.loads(text)
                if frame["type"] in ("update", "updates"):  # one event, or a batch (?batch=1)
                    frame_bytes += len(text)
                    for event in frame["events"] if frame["type"] == "updates" else [frame["event"]]:
                        updates += 1
                        paths.add(event["path"])
                        if event["iteration"] <= last:
                            out_of_order += 1
                        last = event["iteration"]
                elif frame["type"] == "synced":
                    synced_at = frame["iteration"]
                    synced_seconds = round(time.perf_counter() - started, 3)
                    return
                elif frame["type"] == "error":
                    raise RuntimeError(f"error frame: {frame}")

    error = None
    try:
        await asyncio.wait_for(read(), CATCHUP_TIMEOUT)
    except (TimeoutError, ConnectionClosed, RuntimeError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "seconds_to_synced": synced_seconds,
        "updates": updates,
        "distinct_topics": len(paths),
        "out_of_order": out_of_order,
        "mean_frame_bytes": round(frame_bytes / updates) if updates else 0,
        "synced_iteration": synced_at,
        "error": error,
    }


def run_catchup(args: argparse.Namespace, workdir: Path, emit: Callable[[dict[str, Any]], None]) -> None:
    run = now_iso()
    node = start_node(workdir, "catchup")
    baseline = start_baseline(workdir)
    try:
        load = load_topics(node.database_url, args.topics)
        base_url = f"{baseline.ws_url}/ws/{CATCHUP_PREFIX}?catchup={args.topics}&size={len(VALUE)}"
        node_url = f"{node.ws_url}/ws/{CATCHUP_PREFIX}?since=0"
        base_runs, node_runs = [], []
        for _ in range(args.catchup_repeats):  # interleaved, so both see the same machine
            base_runs.append(asyncio.run(catch_up(base_url, baseline.headers)))
            node_runs.append(asyncio.run(catch_up(node_url, node.headers)))
    finally:
        node.stop()
        baseline.stop()
    log_problems = node.log_problems()
    node_median = round(statistics.median(r["seconds"] for r in node_runs), 3)
    base_median = round(statistics.median(r["seconds"] for r in base_runs), 3)
    last = node_runs[-1]
    emit(
        {
            "suite": "catchup",
            "run": run,
            "system": "spread-uvicorn-sqlite",
            "topics": args.topics,
            "repeats": args.catchup_repeats,
            "seconds_median": node_median,
            "seconds_each": [r["seconds"] for r in node_runs],
            "updates_each": [r["updates"] for r in node_runs],
            "missing_max": max(args.topics - r["distinct_topics"] for r in node_runs),
            "out_of_order_max": max(r["out_of_order"] for r in node_runs),
            "errors": [r["error"] for r in node_runs if r["error"]],
            "mean_frame_bytes": last["mean_frame_bytes"],
            "synced_iteration": last["synced_iteration"],
            "head_iteration": load["head"],
            "updates_per_second": round(args.topics / node_median, 1),
            "baseline_raw_ws_seconds_median": base_median,
            "baseline_raw_ws_seconds_each": [r["seconds"] for r in base_runs],
            "baseline_raw_ws_mean_frame_bytes": base_runs[-1]["mean_frame_bytes"],
            "baseline_errors": [r["error"] for r in base_runs if r["error"]],
            "ratio_to_raw_ws": ratio(node_median, base_median),
            "load_seconds": load["seconds"],
            "server_log": log_problems,
        }
    )


# Command line -------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The fan-out and catch-up options (``bench.peers_realtime`` shares them); may be called again
    on the same parser."""
    group = parser.add_argument_group("fan-out and catch-up suites")
    add_shared_option(group, "--subscribers", type=int, nargs="+", default=[100, 1000], help="fan-out sizes")
    add_shared_option(group, "--messages", type=int, default=100, help="paced publishes per fan-out size")
    add_shared_option(group, "--rate", type=float, default=10.0, help="paced publishes per second")
    add_shared_option(group, "--burst", type=int, default=100, help="back-to-back publishes per fan-out size")
    add_shared_option(group, "--topics", type=int, default=20000, help="topics before the catch-up")
    add_shared_option(group, "--catchup-repeats", type=int, default=3, help="catch-ups measured (median)")
    add_common_options(group)


def run_suites(suites: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run the named suites (of ``fanout`` and ``catchup``); return their records."""
    runners = {"fanout": run_fanout, "catchup": run_catchup}
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.log_dir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for suite in suites:
            if suite not in runners:
                continue
            emit = emitter(Path(args.results_dir), suite)

            def keep(record: dict[str, Any], emit: Callable[[dict[str, Any]], None] = emit) -> None:
                records.append(record)
                emit(record)

            runners[suite](args, workdir, keep)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suite", choices=SUITES, nargs="+", default=list(SUITES))
    add_arguments(parser)
    args = parser.parse_args()
    run_suites(args.suite, args)


if __name__ == "__main__":
    main()
