"""``python -m bench.peers``: small writes and reads (100 B values, distinct keys) side by side on
Spread and on the peer systems people compare it with, each started here on a free loopback port
with a temporary data directory and stopped afterwards: etcd (its HTTP JSON gateway), Redis and
NATS JetStream KV. A peer whose server is not installed is skipped with a message.

Every figure comes from the same run, so compare ratios, not absolute numbers. Each line says the
durability the system ran with.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.options import add_common_options, add_named_option, add_shared_option  # noqa: E402
from spread_core.testing import LiveNode, free_port  # noqa: E402

BENCH_SECRET = "spread-bench-secret-key-0123456789-0123456789-0123456789"
VALUE = b"x" * 100
TIME_LIMIT = 60.0  # seconds per measured loop, whatever the count
READY_TIMEOUT = 30.0
ASGI_APPLICATION = "spread_project.asgi:application"

Operation = Callable[[int], Awaitable[None]]


async def load(operation: Operation, count: int, concurrency: int) -> dict[str, Any]:
    """Run ``operation(i)`` for i < count, ``concurrency`` at a time; rate and latency percentiles."""
    latencies: list[float] = []
    errors = 0
    next_index = 0
    deadline = time.monotonic() + TIME_LIMIT

    async def worker() -> None:
        nonlocal next_index, errors
        while next_index < count and time.monotonic() < deadline:
            index = next_index
            next_index += 1
            started = time.perf_counter()
            try:
                await operation(index)
            except Exception:
                errors += 1
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "operations": len(latencies),
        "errors": errors,
        "per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2),
    }


def wait_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    import socket

    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text(errors='replace')[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} never opened: {log.read_text(errors='replace')[-2000:]}")


class System:
    """One system under test: started, driven by ``put``/``get`` coroutines, stopped."""

    name = "system"
    binary = ""
    durability = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def available(cls) -> bool:
        return not cls.binary or shutil.which(cls.binary) is not None

    def spawn(self, command: list[str], port: int) -> None:
        log = self.workdir / f"{self.name}.log"
        with open(log, "ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir)
        wait_port(port, self.process, log)

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, key: str, value: bytes) -> None:
        raise NotImplementedError("System subclasses must implement put()")

    async def get(self, key: str) -> None:
        raise NotImplementedError("System subclasses must implement get()")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Etcd(System):
    name, binary = "etcd", "etcd"
    durability = "fsync of the raft WAL per batch of writes"

    def start(self) -> None:
        self.port, peer_port = free_port(), free_port()
        self.spawn(
            [
                "etcd",
                "--data-dir",
                str(self.workdir / "etcd-data"),
                "--listen-client-urls",
                f"http://127.0.0.1:{self.port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{self.port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer_port}",
                "--log-level",
                "error",
            ],
            self.port,
        )

    async def open(self) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", limits=limits, timeout=30)

    async def close(self) -> None:
        await self.client.aclose()

    @staticmethod
    def _b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    async def put(self, key: str, value: bytes) -> None:
        response = await self.client.post(
            "/v3/kv/put", json={"key": self._b64(key.encode()), "value": self._b64(value)}
        )
        response.raise_for_status()

    async def get(self, key: str) -> None:
        response = await self.client.post("/v3/kv/range", json={"key": self._b64(key.encode())})
        response.raise_for_status()
        assert response.json().get("kvs"), "missing key"


class Redis(System):
    name, binary = "redis", "redis-server"
    durability = "AOF, fsync every second (appendfsync everysec)"

    def start(self) -> None:
        self.port = free_port()
        self.spawn(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--dir",
                str(self.workdir),
            ],
            self.port,
        )

    async def open(self) -> None:
        import redis.asyncio

        self.client = redis.asyncio.Redis(host="127.0.0.1", port=self.port, max_connections=64)

    async def close(self) -> None:
        await self.client.aclose()

    async def put(self, key: str, value: bytes) -> None:
        await self.client.set(key, value)

    async def get(self, key: str) -> None:
        assert await self.client.get(key) is not None, "missing key"


class NatsKV(System):
    name, binary = "nats-jetstream-kv", "nats-server"
    durability = "JetStream file store (fsync on its sync interval)"

    def start(self) -> None:
        self.port = free_port()
        self.spawn(
            ["nats-server", "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.workdir / "js")],
            self.port,
        )

    async def open(self) -> None:
        import nats

        self.connection = await nats.connect(f"nats://127.0.0.1:{self.port}")
        self.kv = await self.connection.jetstream().create_key_value(bucket="bench")

    async def close(self) -> None:
        await self.connection.close()

    async def put(self, key: str, value: bytes) -> None:
        await self.kv.put(key.replace("/", "."), value)

    async def get(self, key: str) -> None:
        await self.kv.get(key.replace("/", "."))


class Spread(System):
    """A Spread node (``spread_node``: uvicorn) on SQLite or PostgreSQL, over its raw HTTP API."""

    binary = ""

    def __init__(self, workdir: Path, database: str, server: str = "uvicorn") -> None:
        super().__init__(workdir)
        self.database = database
        self.server = server
        self.name = f"spread-{database}" if server == "uvicorn" else f"spread-{database}-{server}"
        self.durability = (
            "SQLite WAL, synchronous=FULL (fsync per commit)"
            if database == "sqlite"
            else "PostgreSQL defaults (fsync per commit)"
        )

    def start(self) -> None:
        if self.database == "sqlite":
            url = f"sqlite:///{self.workdir / 'spread.sqlite3'}"
        else:
            import psycopg

            server = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
            name = f"spread_bench_peers_{os.getpid()}"
            with psycopg.connect(server + "/postgres", autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                connection.execute(f'CREATE DATABASE "{name}"')
            url = f"{server}/{name}"
        env = {"DATABASE_URL": url, "SECRET_KEY": BENCH_SECRET, "SPREAD_NODE_NAME": "bench"}
        self.node = LiveNode(REPO / "manage.py", env, log_path=self.workdir / f"{self.name}.log")
        if self.server == "uvicorn":  # spread_node: uvicorn, as the node runs in production
            self.node.start()
            return
        # daphne (``runserver``'s server): the same ASGI application, migrated beforehand
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
            cwd=REPO,
            env=self.node.env,
            check=True,
        )
        self.process = None
        log = self.workdir / f"{self.name}.log"
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(self.node.port),
                    ASGI_APPLICATION,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=self.node.env,
            )
        wait_port(self.node.port, self.process, log)

    async def open(self) -> None:
        async with httpx.AsyncClient() as client:
            token = (await client.post(f"{self.node.url}/jwttoken")).json()["token"]
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        self.client = httpx.AsyncClient(
            base_url=self.node.url,
            limits=limits,
            timeout=30,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"},
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def put(self, key: str, value: bytes) -> None:
        (await self.client.post(f"/raw/{key}", content=value)).raise_for_status()

    async def get(self, key: str) -> None:
        (await self.client.get(f"/raw/{key}")).raise_for_status()

    def stop(self) -> None:
        if self.server == "uvicorn":
            self.node.stop()
        else:
            super().stop()


async def measure(system: System, count: int, concurrencies: list[int]) -> list[dict[str, Any]]:
    await system.open()
    records = []
    try:
        for concurrency in concurrencies:
            for method in ("put", "get"):
                call = system.put if method == "put" else system.get

                async def operation(i: int, c: int = concurrency, call: Any = call) -> None:
                    await (
                        call(f"bench/c{c}/k{i}", VALUE) if call == system.put else call(f"bench/c{c}/k{i}")
                    )

                figures = await load(operation, count, concurrency)
                records.append(
                    {
                        "suite": "peers_small",
                        "system": system.name,
                        "method": method,
                        "concurrency": concurrency,
                        "durability": system.durability,
                        **figures,
                    }
                )
    finally:
        await system.close()
    return records


def systems(workdir: Path, names: list[str]) -> list[System]:
    every: dict[str, Callable[[], System]] = {
        "spread-sqlite": lambda: Spread(workdir, "sqlite"),
        "spread-postgres": lambda: Spread(workdir, "postgres"),
        "spread-sqlite-daphne": lambda: Spread(workdir, "sqlite", server="daphne"),
        "etcd": lambda: Etcd(workdir),
        "redis": lambda: Redis(workdir),
        "nats": lambda: NatsKV(workdir),
    }
    return [every[name]() for name in names]


def add_ratios(records: list[dict[str, Any]]) -> None:
    """Each record's rate as a ratio of etcd's for the same method and concurrency (the issue's
    reference peer), when etcd ran."""
    reference = {(r["method"], r["concurrency"]): r["per_second"] for r in records if r["system"] == "etcd"}
    for record in records:
        base = reference.get((record["method"], record["concurrency"]))
        if base:
            record["ratio_to_etcd"] = round(record["per_second"] / base, 3)


def run(names: list[str], count: int, concurrencies: list[int], output: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for system in systems(Path(tmp), names):
            if not system.available():
                print(
                    json.dumps(
                        {
                            "suite": "peers_small",
                            "system": system.name,
                            "skipped": f"{system.binary} is not installed",
                        }
                    )
                )
                continue
            system.start()
            try:
                records += asyncio.run(measure(system, count, concurrencies))
            finally:
                system.stop()
    add_ratios(records)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("a") as results:
        for record in records:
            print(json.dumps(record), flush=True)
            results.write(json.dumps(record) + "\n")
    return records


SYSTEMS = ["etcd", "redis", "nats", "spread-sqlite", "spread-postgres", "spread-sqlite-daphne"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("peers_small suite (small writes and reads side by side)")
    add_named_option(group, ["--peer-systems", "--systems"], dest="peer_systems", nargs="+", default=SYSTEMS)
    add_shared_option(group, "--count", type=int, default=1000, help="operations per measurement")
    add_shared_option(group, "--concurrency", type=int, nargs="+", default=[1, 32])
    add_common_options(group)


def run_args(args: argparse.Namespace) -> list[dict[str, Any]]:
    return run(args.peer_systems, args.count, args.concurrency, Path(args.results_dir) / "peers_small.jsonl")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    run_args(parser.parse_args())


if __name__ == "__main__":
    main()
