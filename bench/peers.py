"""``python -m bench.peers``: small writes and reads (100 B values, a distinct key per operation)
side by side on Spread and on the systems people compare it with, each started here on a free
loopback port with a temporary data directory and stopped afterwards: a raw ASGI app on the same
uvicorn as the node (``raw-asgi``: the HTTP stack's own limit), etcd over its HTTP JSON gateway
(``etcd``) and over its native gRPC API (``etcd-grpc``), Redis and NATS JetStream KV. A system
whose server is not installed is skipped with a message.

What is measured is the server, not the client: every record carries the server's CPU time per
operation (``server_cpu_us_per_op``: utime + stime from ``/proc/<pid>/stat`` of the server process
and its live descendants, before and after the loop; clock ticks of 10 ms, so a short loop's figure
is coarse), the client's (``client_cpu_us_per_op``), and its rate as a ratio to etcd's gateway,
etcd's gRPC API and the raw ASGI app at the same method and concurrency.

Why this client. httpx costs 0.5-1.3 ms of client CPU per request and stops near 750 requests/s
here, so the old figures of every HTTP system were httpx's. Every HTTP system is now driven by one
lean asyncio HTTP/1.1 client (``bench.lean_http``: keep-alive, one connection per concurrency
slot, the constant part of each request built once, only the status line and the body's length
parsed) on uvloop; one such process drives the raw ASGI baseline past 3,000 GETs/s at 32
connections on these 2 cores (~70-90 µs of client CPU per request, about what uvicorn spends).
``wrk`` would cost less, but it cannot drive Redis, NATS or gRPC, counts by duration rather than
by operation, needs Lua for distinct keys and bodies, and would check no answer; one harness for
every system (same concurrency model, same count, every answer checked, the same latency
accounting) gives figures that compare, and the server CPU per operation does not depend on the
client. Where one process is short of CPU (more cores, faster servers), ``--client-processes N``
shares the slots and the operations among N processes and merges their latencies (``bench.load``).
Redis (redis-py asyncio), NATS KV (nats-py) and etcd gRPC (grpcio) keep their native clients
under the same harness. ``--http-client httpx`` (or ``lean httpx``, both in one run) keeps the
older httpx series, on asyncio's own loop as before.

Spread's speed settings are measured on and off in the same run: ``spread-<database>-off`` runs
the node with every one of them off (``LEAN_PATH``, ``CACHE_MAX_BYTES``, ``GROUP_COMMIT_SET_BASED``,
``GC_FREEZE``, ``CACHE_SHARED_VALIDATION``, through ``SPREAD_OPTIONS``), and ``-no-lean``,
``-no-cache``, ``-per-write`` and ``-no-shared`` turn one off alone (``SPREAD_VARIANTS``).

Every figure comes from the same run: compare ratios, not absolute numbers. Each line says the
durability the system ran with.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import peer_clients  # noqa: E402
from bench.baseline_asgi import uvicorn_command, uvicorn_stack  # noqa: E402
from bench.load import ASYNCIO, UVLOOP, ClientProcesses, ClientSpec, Job  # noqa: E402
from bench.options import add_common_options, add_named_option, add_shared_option  # noqa: E402
from spread_core.testing import LiveNode, free_port  # noqa: E402

SUITE = "peers_small"
BENCH_SECRET = "spread-bench-secret-key-0123456789-0123456789-0123456789"
VALUE = b"x" * 100
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
ASGI_APPLICATION = "spread_project.asgi:application"
RAW_ASGI_APP = "bench.baseline_asgi:app"
LEAN, HTTPX = peer_clients.LEAN, peer_clients.HTTPX
#: The event loop of each HTTP client series: the lean client on uvloop, httpx as it always ran.
SERIES_LOOP = {LEAN: UVLOOP, HTTPX: ASYNCIO}
#: Ratio field -> the system whose rate at the same method and concurrency is the reference.
REFERENCES = {"ratio_to_etcd": "etcd", "ratio_to_etcd_grpc": "etcd-grpc", "ratio_to_raw_asgi": "raw-asgi"}
SERVER_CPU_SCOPE = "the server process and its live descendants"
#: Spread's speed settings, each on by default: a variant ``spread-<database>-<variant>`` runs the
#: node with ``SPREAD_OPTIONS`` set to its options, so one run measures each on and off.
SPREAD_VARIANTS: dict[str, dict[str, Any]] = {
    "off": {
        "LEAN_PATH": False,
        "CACHE_MAX_BYTES": 0,
        "GROUP_COMMIT_SET_BASED": False,
        "GC_FREEZE": False,
        "CACHE_SHARED_VALIDATION": False,
    },
    "no-lean": {"LEAN_PATH": False},
    "no-cache": {"CACHE_MAX_BYTES": 0},
    "per-write": {"GROUP_COMMIT_SET_BASED": False},
    "no-shared": {"CACHE_SHARED_VALIDATION": False},
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
    """One system under test: a server started and stopped here, and the ``ClientSpec`` its
    client processes build their client from."""

    name = "system"
    binary = ""
    durability = ""
    speaks_http = False  # driven by the chosen HTTP client, once per HTTP client series
    cpu_scope = SERVER_CPU_SCOPE

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @classmethod
    def available(cls) -> bool:
        return not cls.binary or shutil.which(cls.binary) is not None

    def spawn(self, command: list[str], port: int) -> None:
        log = self.workdir / f"{self.name}.log"
        with open(log, "ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir)
        wait_port(port, self.process, log)

    def start(self) -> None:
        raise NotImplementedError("System subclasses must implement start()")

    @property
    def server_pid(self) -> int:
        """The server's process id, whose CPU time (with its descendants') is measured."""
        if self.process is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.process.pid

    def client(self, http_client: str, loop: str) -> ClientSpec:
        """How a client process builds this system's client (``http_client`` for HTTP systems)."""
        raise NotImplementedError("System subclasses must implement client()")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class RawAsgi(System):
    """``bench/baseline_asgi.py`` on uvicorn configured as ``spread_node`` (uvloop, httptools),
    sent the very requests Spread is sent: the HTTP stack's limit on this machine."""

    name = "raw-asgi"
    durability = "none (answers without storing anything)"
    speaks_http = True

    def start(self) -> None:
        self.port = free_port()
        self.spawn(uvicorn_command(RAW_ASGI_APP, self.port), self.port)
        self.durability = f"{RawAsgi.durability}; {uvicorn_stack()}"

    def client(self, http_client: str, loop: str) -> ClientSpec:
        return ClientSpec(peer_clients.RawApiClient, {"port": self.port, "http_client": http_client}, loop)


class Etcd(System):
    """etcd over its HTTP JSON gateway (grpc-gateway in the etcd process)."""

    name, binary = "etcd", "etcd"
    durability = "fsync of the raft WAL per batch of writes"
    speaks_http = True

    def start(self) -> None:
        self.port, peer_port = free_port(), free_port()
        self.spawn(
            [
                "etcd",
                "--data-dir",
                str(self.workdir / f"{self.name}-data"),
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

    def client(self, http_client: str, loop: str) -> ClientSpec:
        return ClientSpec(
            peer_clients.EtcdGatewayClient, {"port": self.port, "http_client": http_client}, loop
        )


class EtcdGrpc(Etcd):
    """etcd over its native gRPC KV API (the same server as ``etcd``, its own data directory)."""

    name = "etcd-grpc"
    speaks_http = False

    def client(self, http_client: str, loop: str) -> ClientSpec:
        return ClientSpec(peer_clients.EtcdGrpcClient, {"port": self.port}, loop)


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

    def client(self, http_client: str, loop: str) -> ClientSpec:
        return ClientSpec(peer_clients.RedisClient, {"port": self.port}, loop)


class NatsKV(System):
    name, binary = "nats-jetstream-kv", "nats-server"
    durability = "JetStream file store (fsync on its sync interval)"

    def start(self) -> None:
        self.port = free_port()
        self.spawn(
            ["nats-server", "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.workdir / "js")],
            self.port,
        )

    def client(self, http_client: str, loop: str) -> ClientSpec:
        return ClientSpec(peer_clients.NatsKVClient, {"port": self.port}, loop)


class Spread(System):
    """A Spread node (``spread_node``: uvicorn) on SQLite or PostgreSQL, over its raw HTTP API."""

    binary = ""
    speaks_http = True

    def __init__(self, workdir: Path, database: str, server: str = "uvicorn", variant: str = "") -> None:
        super().__init__(workdir)
        self.database = database
        self.server = server
        self.options = SPREAD_VARIANTS[variant] if variant else {}
        suffix = "".join(f"-{part}" for part in (server if server != "uvicorn" else "", variant) if part)
        self.name = f"spread-{database}{suffix}"
        self.durability = (
            "SQLite WAL, synchronous=FULL (fsync per commit)"
            if database == "sqlite"
            else "PostgreSQL defaults (fsync per commit)"
        )
        if database != "sqlite":
            self.cpu_scope = "the node process only: PostgreSQL's own processes are not counted"
        self.token = ""

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
        env = {
            "DATABASE_URL": url,
            "SECRET_KEY": BENCH_SECRET,
            "SPREAD_NODE_NAME": "bench",
            "SPREAD_OPTIONS": json.dumps(self.options),
        }
        self.node = LiveNode(REPO / "manage.py", env, log_path=self.workdir / f"{self.name}.log")
        self.port = self.node.port
        if self.server == "uvicorn":  # spread_node: uvicorn, as the node runs in production
            self.node.start()
        else:  # daphne (``runserver``'s server): the same ASGI application, migrated beforehand
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
                cwd=REPO,
                env=self.node.env,
                check=True,
            )
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
                        str(self.port),
                        ASGI_APPLICATION,
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=REPO,
                    env=self.node.env,
                )
            wait_port(self.port, self.process, log)
        self.token = httpx.post(f"{self.node.url}/jwttoken").json()["token"]

    @property
    def server_pid(self) -> int:
        if self.server == "uvicorn":
            if self.node.process is None:
                raise RuntimeError(f"{self.name} is not running")
            return self.node.process.pid
        return super().server_pid

    def client(self, http_client: str, loop: str) -> ClientSpec:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/octet-stream"}
        options = {"port": self.port, "http_client": http_client, "headers": headers}
        return ClientSpec(peer_clients.RawApiClient, options, loop)

    def stop(self) -> None:
        if self.server == "uvicorn":
            self.node.stop()
        else:
            super().stop()


def series(system: System, http_clients: list[str]) -> list[tuple[str, str]]:
    """The ``(http client, loop)`` runs of a system: one per HTTP client for an HTTP system; one
    for any other, on the loop of the first HTTP client."""
    chosen = http_clients if system.speaks_http else http_clients[:1]
    return [(http_client, SERIES_LOOP[http_client]) for http_client in chosen]


def measure(
    system: System, clients: ClientProcesses, count: int, concurrencies: list[int], http_clients: list[str]
) -> list[dict[str, Any]]:
    """Puts then gets at each concurrency, for each client series of the system; its records."""
    records = []
    for http_client, loop in series(system, http_clients):
        spec = system.client(http_client, loop)
        label = spec.build().label
        for concurrency in concurrencies:
            for method in ("put", "get"):
                job = Job(spec, method, f"bench/c{concurrency}/k", VALUE, range(count), concurrency)
                figures = clients.measure(job, system.server_pid)
                records.append(
                    {
                        "suite": SUITE,
                        "system": system.name,
                        "method": method,
                        "concurrency": concurrency,
                        "client": label,
                        "durability": system.durability,
                        **figures,
                        "server_cpu_scope": system.cpu_scope,
                    }
                )
    return records


def systems(workdir: Path, names: list[str]) -> list[System]:
    every: dict[str, Callable[[], System]] = {
        "raw-asgi": lambda: RawAsgi(workdir),
        "spread-sqlite": lambda: Spread(workdir, "sqlite"),
        "spread-postgres": lambda: Spread(workdir, "postgres"),
        "spread-sqlite-daphne": lambda: Spread(workdir, "sqlite", server="daphne"),
        **{
            f"spread-{database}-{variant}": (
                lambda database=database, variant=variant: Spread(workdir, database, variant=variant)
            )
            for database in ("sqlite", "postgres")
            for variant in SPREAD_VARIANTS
        },
        "etcd": lambda: Etcd(workdir),
        "etcd-grpc": lambda: EtcdGrpc(workdir),
        "redis": lambda: Redis(workdir),
        "nats": lambda: NatsKV(workdir),
    }
    return [every[name]() for name in names]


def series_name(record: dict[str, Any]) -> str:
    """A record's system, with its HTTP client when that is not the lean one (``etcd [httpx]``)."""
    client = record.get("client", "")
    return f"{record['system']} [{client}]" if client == peer_clients.LABELS[HTTPX] else str(record["system"])


def add_ratios(records: list[dict[str, Any]]) -> None:
    """Each record's rate as a ratio of each reference system's (``REFERENCES``) at the same method
    and concurrency, when it ran: measured with the same HTTP client where the reference ran with
    it, else with the first series (an HTTP reference for Redis is the lean client's figure)."""
    for field, reference in REFERENCES.items():
        candidates: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for record in records:
            if record["system"] == reference:
                candidates.setdefault((record["method"], record["concurrency"]), []).append(record)
        for record in records:
            found = candidates.get((record["method"], record["concurrency"]), [])
            same_client = [r for r in found if r.get("client") == record.get("client")]
            base = (same_client or found or [{}])[0].get("per_second")
            if base:
                record[field] = round(record["per_second"] / base, 3)


def run(
    names: list[str],
    count: int,
    concurrencies: list[int],
    output: Path,
    http_clients: list[str] | None = None,
    client_processes: int = 1,
) -> list[dict[str, Any]]:
    """Measure each named system in turn (started, measured, stopped); return the records, also
    printed and appended to ``output``."""
    records: list[dict[str, Any]] = []
    chosen = http_clients or [LEAN]
    with tempfile.TemporaryDirectory() as tmp, ClientProcesses(client_processes) as clients:
        for system in systems(Path(tmp), names):
            if not system.available():
                skipped = {
                    "suite": SUITE,
                    "system": system.name,
                    "skipped": f"{system.binary} is not installed",
                }
                print(json.dumps(skipped))
                continue
            system.start()
            try:
                records += measure(system, clients, count, concurrencies, chosen)
            finally:
                system.stop()
    add_ratios(records)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("a") as results:
        for record in records:
            print(json.dumps(record), flush=True)
            results.write(json.dumps(record) + "\n")
    return records


SYSTEMS = [
    "raw-asgi",
    "etcd",
    "etcd-grpc",
    "redis",
    "nats",
    "spread-sqlite",
    "spread-sqlite-off",
    "spread-postgres",
    "spread-postgres-off",
    "spread-sqlite-daphne",
]
#: Every system that can be named: the default ones and each setting off alone.
CHOICES = SYSTEMS + [
    f"spread-{database}-{variant}"
    for database in ("sqlite", "postgres")
    for variant in SPREAD_VARIANTS
    if f"spread-{database}-{variant}" not in SYSTEMS
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("peers_small suite (small writes and reads side by side)")
    add_named_option(
        group,
        ["--peer-systems", "--systems"],
        dest="peer_systems",
        nargs="+",
        default=SYSTEMS,
        choices=CHOICES,
    )
    add_shared_option(group, "--count", type=int, default=1000, help="operations per measurement")
    add_shared_option(group, "--concurrency", type=int, nargs="+", default=[1, 32])
    group.add_argument(
        "--http-client",
        nargs="+",
        choices=peer_clients.HTTP_CLIENTS,
        default=[LEAN],
        help="HTTP client(s) of the HTTP systems, each a series of its own (default: lean; httpx is "
        "the older series, limited by httpx itself); the other systems run once, on the first's loop",
    )
    group.add_argument(
        "--client-processes",
        type=int,
        default=1,
        help="client processes sharing each loop's connections and operations (default 1: one is "
        "enough for a 2-core machine, where more would take CPU from the server)",
    )
    add_common_options(group)


def run_args(args: argparse.Namespace) -> list[dict[str, Any]]:
    return run(
        args.peer_systems,
        args.count,
        args.concurrency,
        Path(args.results_dir) / f"{SUITE}.jsonl",
        http_clients=args.http_client,
        client_processes=args.client_processes,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    run_args(parser.parse_args())


if __name__ == "__main__":
    main()
