"""``python -m bench.replication``: replication between two real nodes on loopback.

- ``lag``: B links A; a writer POSTs to A at ``--rate`` writes/s; a websocket subscriber on B
  records when each event arrives. Delay = arrival on B - POST acknowledged by A, p50/p99/max.
  Baseline in the same run: the same subscriber on A itself (local delivery delay).
- ``resync``: B is stopped, ``--resync-events`` are written on A, B restarts; rate = events / time
  until B's log holds them all. Baseline: the rate at which A accepted those writes.
- ``blob``: a ``--blob-mb`` MB upload to A; time until B's copy is complete. Baseline: the upload
  itself (MB/s into A), and time to first byte on B.

Every loop is bounded (count and time) and targets only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.options import add_common_options, add_shared_option, emitter  # noqa: E402
from spread_core.testing import LiveNode  # noqa: E402

BENCH_SECRET = "spread-bench-secret-key-0123456789-0123456789-0123456789"
TIME_LIMIT = 120.0
MIB = 1024 * 1024


def start(workdir: Path, name: str) -> LiveNode:
    env = {
        "DATABASE_URL": f"sqlite:///{workdir / (name + '.sqlite3')}",
        "SECRET_KEY": BENCH_SECRET,
        "SPREAD_NODE_NAME": name,
    }
    return LiveNode(REPO / "manage.py", env, log_path=workdir / f"{name}.log").start()


def link(node: LiveNode, peer: LiveNode, prefix: str) -> None:
    token = peer.manage("spread_token", "--node", node.env["SPREAD_NODE_NAME"], "--prefix", prefix).strip()
    node.manage("spread_peer", "add", f"{peer.url}/", "--token", token, "--prefix", prefix)


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 2),
        "max_ms": round(1000 * ordered[-1], 2),
    }


async def delays(
    writer: LiveNode, reader: LiveNode, prefix: str, count: int, rate: float, token: str
) -> list[float]:
    """POST ``count`` values to ``writer`` at ``rate``/s; delay from ack to arrival on ``reader``."""
    acked: dict[str, float] = {}
    arrived: dict[str, float] = {}
    async with connect(f"ws://127.0.0.1:{reader.port}/ws/{prefix}") as websocket:
        while json.loads(await websocket.recv())["type"] != "synced":
            pass

        async def listen() -> None:
            async for message in websocket:
                frame = json.loads(message)
                if frame["type"] == "update":
                    arrived.setdefault(frame["event"]["id"], time.perf_counter())
                    if len(arrived) >= count:
                        return

        listener = asyncio.create_task(listen())
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
        async with httpx.AsyncClient(timeout=30) as client:
            start = time.perf_counter()
            for i in range(count):
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
                response = await client.post(
                    f"{writer.url}/raw/{prefix}/t{i % 50}", content=f"{i}", headers=headers
                )
                acked[response.json()["id"]] = time.perf_counter()
        await asyncio.wait_for(listener, TIME_LIMIT)
    return [arrived[i] - acked[i] for i in acked if i in arrived]


def lag(a: LiveNode, b: LiveNode, token: str, args: argparse.Namespace) -> dict[str, Any]:
    local = asyncio.run(delays(a, a, "lag-local", args.replication_writes, args.replication_rate, token))
    remote = asyncio.run(delays(a, b, "lag", args.replication_writes, args.replication_rate, token))
    result = {
        "suite": "replication_lag",
        "writes": args.replication_writes,
        "rate": args.replication_rate,
        "a_to_b": percentiles(remote),
        "baseline_local_delivery": percentiles(local),
    }
    result["p99_ratio_to_local"] = round(
        result["a_to_b"]["p99_ms"] / result["baseline_local_delivery"]["p99_ms"], 2
    )
    return result


def log_size(node: LiveNode) -> int:
    status = httpx.get(f"{node.url}/api/replication/", headers=node_headers(node), timeout=10).json()
    return int(status["iteration"])


def node_headers(node: LiveNode) -> dict[str, str]:
    return {"Authorization": f"Bearer {node.bench_token}"}  # type: ignore[attr-defined]


async def post_many(node: LiveNode, prefix: str, count: int, token: str) -> float:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
    indices = iter(range(count))
    async with httpx.AsyncClient(timeout=30) as client:

        async def worker() -> None:
            for i in indices:
                await client.post(f"{node.url}/raw/{prefix}/r{i}", content=b"x" * 100, headers=headers)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(16)))
        return time.perf_counter() - start


def resync(a: LiveNode, b: LiveNode, token: str, args: argparse.Namespace) -> dict[str, Any]:
    before = log_size(b)
    b.stop()
    write_seconds = asyncio.run(post_many(a, "lag", args.resync_events, token))
    start = time.perf_counter()
    b.start()
    while log_size(b) < before + args.resync_events and time.perf_counter() - start < TIME_LIMIT:
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    return {
        "suite": "replication_resync",
        "events": args.resync_events,
        "resync_events_per_second": round(args.resync_events / seconds, 1),
        "baseline_http_writes_per_second_on_a": round(args.resync_events / write_seconds, 1),
        "ratio_to_write_rate": round(
            (args.resync_events / seconds) / (args.resync_events / write_seconds), 2
        ),
        "includes_node_restart": True,
    }


def blob(a: LiveNode, b: LiveNode, token: str, args: argparse.Namespace) -> dict[str, Any]:
    size = args.blob_mb * MIB
    piece = hashlib.sha256(b"bench").digest() * (MIB // 32)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
    start = time.perf_counter()
    response = httpx.post(
        f"{a.url}/raw/lag/blob", content=(piece for _ in range(args.blob_mb)), headers=headers, timeout=600
    )
    upload_seconds = time.perf_counter() - start
    event_id = response.json()["id"]
    while time.perf_counter() - start < TIME_LIMIT:
        head = httpx.head(f"{b.url}/raw/lag/blob", timeout=10)
        if (
            head.status_code == 200
            and head.headers.get("etag") == f'"{event_id}"'
            and "content-length" in head.headers
        ):
            break
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    return {
        "suite": "replication_blob",
        "megabytes": args.blob_mb,
        "upload_to_a_mb_per_second": round(size / MIB / upload_seconds, 1),
        "complete_on_b_mb_per_second": round(size / MIB / seconds, 1),
        "b_complete_after_upload_s": round(seconds - upload_seconds, 2),
        "ratio_to_upload": round(upload_seconds / seconds, 2),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("replication suite (two nodes)")
    add_shared_option(
        group, "--replication-writes", type=int, default=600, help="writes of the lag measurement"
    )
    add_shared_option(
        group,
        "--replication-rate",
        type=float,
        default=200.0,
        help="writes per second during the lag measurement",
    )
    add_shared_option(group, "--resync-events", type=int, default=3000)
    add_shared_option(group, "--blob-mb", type=int, default=100)
    add_common_options(group)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Lag, resync and a big value between two nodes; return the records (also printed and
    appended to ``replication.jsonl``)."""
    emit = emitter(Path(args.results_dir), "replication")
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        a, b = start(workdir, "bench-a"), start(workdir, "bench-b")
        try:
            token = httpx.post(f"{a.url}/jwttoken").json()["token"]
            a.bench_token = b.bench_token = token  # type: ignore[attr-defined]
            link(b, a, "lag")
            time.sleep(2)
            for measure in (lag, resync, blob):
                records.append(measure(a, b, token, args))
                emit(records[-1])
        finally:
            a.stop()
            b.stop()
    return records


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
