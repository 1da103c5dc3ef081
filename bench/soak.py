"""``python -m bench.soak --seconds 300``: a bounded soak of one node under mixed load.

For ``--seconds`` (default 300; CI's test runs 120), all at once against one node:
- writers POST (and sometimes DELETE) 100-byte values to ``--topics`` topics spread over
  ``--groups`` subtrees ``soak/g<k>/``, ``--write-rate`` per second in all;
- readers GET them;
- ``--subscribers`` websockets (default 500), each on one group, keep connecting and
  disconnecting, each resuming from the last iteration it saw;
- a ``--upload-mb`` upload (default 50 MB) is streamed to ``soak/g0/blob`` every
  ``--upload-every`` seconds (default 30).

Then the load stops, every subscriber resumes one last time until ``synced``, and the checks run:
no 5xx answer and no failed request, no error frame, every subscriber saw strictly increasing
iterations across all its connections and ends with the view the store has (the event id, or
nothing, of every topic of its group), and the node's RSS grew by less than ``--max-rss-growth``
(10%) from the end of the warm-up (the first half of the run) to the end of the load. It prints one
JSON report (throughput, error counts, RSS) and appends it to ``bench/results/soak.jsonl``; the
exit status is 1 when a check failed. Everything targets 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.fanout import raise_fd_limit  # noqa: E402
from spread_core.testing import LiveNode  # noqa: E402

BENCH_SECRET = "spread-bench-secret-key-0123456789-0123456789-0123456789"
PREFIX = "soak"
BLOB_PATH = f"{PREFIX}/g0/blob"
RSS_SAMPLE_INTERVAL = 2.0
CONNECT_TIMEOUT = 30.0
FINAL_SYNC_TIMEOUT = 120.0
UPLOAD_CHUNK = 1024 * 1024


@dataclass
class Config:
    seconds: float = 300.0
    subscribers: int = 500
    topics: int = 200
    groups: int = 20
    write_rate: float = 50.0  # writes per second, all writers together
    read_rate: float = 50.0
    upload_mb: int = 50
    upload_every: float = 30.0
    max_rss_growth: float = 0.10
    seed: int = 7

    @property
    def warmup(self) -> float:
        return self.seconds / 2


@dataclass
class Tally:
    """What the load saw: answers by status, failures by kind."""

    answers: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)

    def answer(self, kind: str, status: int) -> None:
        self.answers[f"{kind} {status // 100}xx"] += 1

    def fail(self, what: str) -> None:
        self.failures[what[:160]] += 1


@dataclass
class Subscriber:
    """One websocket client that keeps reconnecting; its view of the store, by path."""

    number: int
    group: str
    last: int = 0
    view: dict[str, str | None] = field(default_factory=dict)
    connections: int = 0
    deliveries: int = 0
    out_of_order: int = 0
    error_frames: list[str] = field(default_factory=list)

    def handle(self, text: str | bytes) -> bool:
        """Apply one frame; True on ``synced``."""
        frame = json.loads(text)
        kind = frame.get("type")
        if kind == "update":
            event = frame["event"]
            if event["iteration"] <= self.last:
                self.out_of_order += 1
            self.last = max(self.last, event["iteration"])
            self.view[event["path"]] = None if event["deleted"] or event.get("aborted") else event["id"]
            self.deliveries += 1
        elif kind in ("synced", "heartbeat"):
            self.last = max(self.last, frame["iteration"])
            return kind == "synced"
        elif kind == "error":
            self.error_frames.append(f"{frame.get('code')}: {frame.get('message')}")
        return False


class Soak:
    def __init__(self, url: str, pid: int, token: str, config: Config) -> None:
        self.url = url
        self.ws_url = "ws" + url[len("http") :]
        self.pid = pid
        self.token = token
        self.config = config
        self.rng = random.Random(config.seed)
        self.tally = Tally()
        self.stop = asyncio.Event()
        self.rss: list[tuple[float, int]] = []
        self.written: set[str] = set()
        self.uploads = 0
        self.started = 0.0

    # Load ---------------------------------------------------------------------------------------
    async def paced(self, rate: float, action: Any) -> None:
        """Call ``action()`` ``rate`` times a second until the stop (each call awaited, so a slow
        node lowers the offered rate instead of piling up requests)."""
        interval = 1.0 / rate
        next_at = time.monotonic()
        while not self.stop.is_set():
            await action()
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def topic(self) -> str:
        number = self.rng.randrange(self.config.topics)
        return f"{PREFIX}/g{number % self.config.groups}/t{number}"

    async def write(self, client: httpx.AsyncClient) -> None:
        path = self.topic()
        try:
            if self.rng.random() < 0.1:
                response = await client.delete(f"/raw/{path}")
            else:
                response = await client.post(f"/raw/{path}", content=os.urandom(50).hex().encode())
            self.tally.answer("write", response.status_code)
            if response.status_code == 200:
                self.written.add(path)
        except httpx.HTTPError as exc:
            self.tally.fail(f"write: {type(exc).__name__}: {exc}")

    async def read(self, client: httpx.AsyncClient) -> None:
        try:
            response = await client.get(f"/raw/{self.topic()}")
            self.tally.answer("read", response.status_code)
        except httpx.HTTPError as exc:
            self.tally.fail(f"read: {type(exc).__name__}: {exc}")

    async def upload_loop(self, client: httpx.AsyncClient) -> None:
        chunk = os.urandom(UPLOAD_CHUNK)

        async def body() -> AsyncIterator[bytes]:
            for _ in range(self.config.upload_mb):
                yield chunk

        next_at = time.monotonic() + 5.0
        while not self.stop.is_set():
            try:
                await asyncio.wait_for(self.stop.wait(), max(0.0, next_at - time.monotonic()))
                return
            except TimeoutError:
                pass
            next_at += self.config.upload_every
            try:
                response = await client.post(f"/raw/{BLOB_PATH}", content=body(), timeout=300)
                self.tally.answer("upload", response.status_code)
                if response.status_code == 200:
                    self.uploads += 1
                    self.written.add(BLOB_PATH)
            except httpx.HTTPError as exc:
                self.tally.fail(f"upload: {type(exc).__name__}: {exc}")

    async def subscribe(self, subscriber: Subscriber, gate: asyncio.Semaphore) -> None:
        rng = random.Random(self.config.seed * 1000 + subscriber.number)
        await asyncio.sleep(rng.uniform(0, 5))
        while not self.stop.is_set():
            try:
                async with gate:
                    ws = await connect(
                        f"{self.ws_url}/ws/{subscriber.group}?since={subscriber.last}",
                        open_timeout=CONNECT_TIMEOUT,
                        ping_interval=None,
                        max_size=None,
                    )
                subscriber.connections += 1
                async with ws:
                    deadline = time.monotonic() + rng.uniform(5, 20)
                    while not self.stop.is_set() and (left := deadline - time.monotonic()) > 0:
                        try:
                            subscriber.handle(await asyncio.wait_for(ws.recv(), left))
                        except TimeoutError:
                            break
            except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError) as exc:
                self.tally.fail(f"websocket: {type(exc).__name__}: {exc}")
            await asyncio.sleep(rng.uniform(0, 1))

    async def final_sync(self, subscriber: Subscriber, gate: asyncio.Semaphore) -> None:
        """Resume once more and read until ``synced``: the subscriber's view is then complete."""
        try:
            async with (
                gate,
                connect(
                    f"{self.ws_url}/ws/{subscriber.group}?since={subscriber.last}",
                    open_timeout=CONNECT_TIMEOUT,
                    ping_interval=None,
                    max_size=None,
                ) as ws,
            ):
                async with asyncio.timeout(FINAL_SYNC_TIMEOUT):
                    while not subscriber.handle(await ws.recv()):
                        pass
        except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError) as exc:
            self.tally.fail(f"final sync: {type(exc).__name__}: {exc}")
            subscriber.view = {"<final sync failed>": None}

    async def sample_rss(self) -> None:
        while not self.stop.is_set():
            self.rss.append((time.monotonic() - self.started, rss_bytes(self.pid)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), RSS_SAMPLE_INTERVAL)

    # The run ------------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        config = self.config
        raise_fd_limit(config.subscribers + 200)
        headers = {"Authorization": f"Bearer {self.token}"}
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        subscribers = [
            Subscriber(number, f"{PREFIX}/g{number % config.groups}") for number in range(config.subscribers)
        ]
        gate = asyncio.Semaphore(50)
        async with httpx.AsyncClient(base_url=self.url, headers=headers, limits=limits, timeout=60) as client:
            self.started = time.monotonic()
            writers, readers = 5, 5
            tasks = [
                asyncio.create_task(self.paced(config.write_rate / writers, lambda: self.write(client)))
                for _ in range(writers)
            ]
            tasks += [
                asyncio.create_task(self.paced(config.read_rate / readers, lambda: self.read(client)))
                for _ in range(readers)
            ]
            tasks.append(asyncio.create_task(self.upload_loop(client)))
            tasks.append(asyncio.create_task(self.sample_rss()))
            tasks += [asyncio.create_task(self.subscribe(s, gate)) for s in subscribers]
            await asyncio.sleep(config.seconds)
            self.stop.set()
            await asyncio.gather(*tasks)
            load_seconds = time.monotonic() - self.started
            rss_end = rss_bytes(self.pid)
            await asyncio.gather(*(self.final_sync(s, gate) for s in subscribers))
            store = await store_view(client, sorted(self.written | seen_paths(subscribers)))
        return self.report(subscribers, store, load_seconds, rss_end)

    def report(
        self, subscribers: list[Subscriber], store: dict[str, str | None], seconds: float, rss_end: int
    ) -> dict[str, Any]:
        warm = [rss for at, rss in self.rss if at >= self.config.warmup]
        rss_warm = warm[0] if warm else rss_end
        growth = (rss_end - rss_warm) / rss_warm if rss_warm else 0.0
        differing = [s.number for s in subscribers if s.view != under(store, s.group)]
        answers = dict(sorted(self.tally.answers.items()))
        server_errors = sum(count for key, count in answers.items() if key.endswith("5xx"))
        checks = {
            "no_5xx": server_errors == 0,
            "no_failed_request": not self.tally.failures,
            "no_error_frame": not any(s.error_frames for s in subscribers),
            "iterations_increase": not any(s.out_of_order for s in subscribers),
            "views_equal_store": not differing,
            "rss_growth_under_limit": growth < self.config.max_rss_growth,
        }
        writes = sum(count for key, count in answers.items() if key.startswith("write 2"))
        reads = sum(count for key, count in answers.items() if key.startswith("read 2"))
        return {
            "suite": "soak",
            "run": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "seconds": round(seconds, 1),
            "subscribers": len(subscribers),
            "writes_per_second": round(writes / seconds, 1),
            "reads_per_second": round(reads / seconds, 1),
            "uploads": self.uploads,
            "upload_mb": self.config.upload_mb,
            "websocket_connections": sum(s.connections for s in subscribers),
            "deliveries": sum(s.deliveries for s in subscribers),
            "answers": answers,
            "failures": dict(self.tally.failures.most_common(10)),
            "error_frames": sum(len(s.error_frames) for s in subscribers),
            "subscribers_differing_from_store": differing[:20],
            "topics_in_store": sum(1 for value in store.values() if value is not None),
            "rss_mb_after_warmup": round(rss_warm / 2**20, 1),
            "rss_mb_end": round(rss_end / 2**20, 1),
            "rss_growth": round(growth, 4),
            "rss_mb_every_10s": [
                round(rss / 2**20, 1) for at, rss in self.rss if at % 10 < RSS_SAMPLE_INTERVAL
            ],
            "checks": checks,
            "passed": all(checks.values()),
        }


def under(view: dict[str, str | None], prefix: str) -> dict[str, str | None]:
    return {path: value for path, value in view.items() if path.startswith(prefix + "/")}


def seen_paths(subscribers: list[Subscriber]) -> set[str]:
    return {path for subscriber in subscribers for path in subscriber.view}


async def store_view(client: httpx.AsyncClient, paths: list[str]) -> dict[str, str | None]:
    """The current event id of each path (None: no value), as a subscriber's view holds it."""
    view: dict[str, str | None] = {}
    for path in paths:
        response = await client.head(f"/raw/{path}")
        view[path] = response.headers["etag"].strip('"') if response.status_code == 200 else None
    return view


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its children (bytes)."""
    total = 0
    for candidate in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{candidate}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(child) for child in found]


def run(url: str, pid: int, token: str, config: Config) -> dict[str, Any]:
    return asyncio.run(Soak(url, pid, token, config).run())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = Config()
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--subscribers", type=int, default=defaults.subscribers)
    parser.add_argument("--topics", type=int, default=defaults.topics)
    parser.add_argument("--groups", type=int, default=defaults.groups)
    parser.add_argument("--write-rate", type=float, default=defaults.write_rate)
    parser.add_argument("--read-rate", type=float, default=defaults.read_rate)
    parser.add_argument("--upload-mb", type=int, default=defaults.upload_mb)
    parser.add_argument("--upload-every", type=float, default=defaults.upload_every)
    parser.add_argument("--max-rss-growth", type=float, default=defaults.max_rss_growth)
    parser.add_argument("--database-url", help="the node's database (default: a temporary SQLite file)")
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "soak.jsonl"))
    args = parser.parse_args()
    config = Config(
        seconds=args.seconds,
        subscribers=args.subscribers,
        topics=args.topics,
        groups=args.groups,
        write_rate=args.write_rate,
        read_rate=args.read_rate,
        upload_mb=args.upload_mb,
        upload_every=args.upload_every,
        max_rss_growth=args.max_rss_growth,
    )
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "DATABASE_URL": args.database_url or f"sqlite:///{Path(tmp) / 'soak.sqlite3'}",
            "SECRET_KEY": BENCH_SECRET,
            "SPREAD_NODE_NAME": "soak",
        }
        raise_fd_limit(config.subscribers + 200)  # the node inherits the limit
        node = LiveNode(REPO / "manage.py", env, log_path=Path(tmp) / "node.log").start()
        try:
            token = httpx.post(f"{node.url}/jwttoken").json()["token"]
            assert node.process is not None
            report = run(node.url, node.process.pid, token, config)
        finally:
            node.stop()
    print(json.dumps(report, indent=2))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("a") as results:
        results.write(json.dumps(report) + "\n")
    sys.exit(0 if report["passed"] else 1)


if __name__ == "__main__":
    main()
