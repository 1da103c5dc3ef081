"""``python -m bench --suite small_values``: small writes and reads over HTTP and in-process, as
ratios to baselines measured in the same run: HTTP rates against a minimal raw ASGI app on the same
uvicorn (the stack's limit), in-process posts against a bare ORM insert into the same database.
Loops are bounded in count and time and target only 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import peers  # noqa: E402
from bench.options import add_common_options, add_shared_option, emitter  # noqa: E402
from spread_core.testing import LiveNode, free_port  # noqa: E402

BENCH_SECRET = "spread-bench-secret-key-0123456789-0123456789-0123456789"
VALUE = b"x" * 100


async def http_load(
    url_of: Any, method: str, count: int, concurrency: int, headers: dict[str, str]
) -> dict[str, Any]:
    """Send ``count`` requests with ``concurrency`` in flight; return rate and latency percentiles
    (a non-200 answer counts as an error)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:

        async def request(index: int) -> None:
            if method == "POST":
                response = await client.post(url_of(index), content=VALUE, headers=headers)
            else:
                response = await client.get(url_of(index))
            response.raise_for_status()

        figures = await peers.load(request, count, concurrency)
    figures["requests"] = figures.pop("operations")
    return figures


def start_baseline(log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with open(log_dir / "baseline.log", "ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.baseline_asgi:app",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(url, timeout=1.0)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    return process, url


def in_process(count: int, database_url: str) -> dict[str, Any]:
    """Python API posts/s against bare ORM inserts/s into the same database (child process)."""
    code = f"""
import json, time, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth.models import Group
from spread_core import api
n = {count}
t = time.perf_counter()
for i in range(n):
    Group.objects.create(name=f"bench-{{i}}")
orm = n / (time.perf_counter() - t)
t = time.perf_counter()
for i in range(n):
    api.post(f"bench/inproc/{{i}}", b"x" * 100)
spread = n / (time.perf_counter() - t)
print(json.dumps({{"orm_inserts_per_second": round(orm, 1), "posts_per_second": round(spread, 1)}}))
"""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": BENCH_SECRET,
        "DJANGO_SETTINGS_MODULE": "spread_project.settings",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["ratio_to_orm_insert"] = round(result["posts_per_second"] / result["orm_inserts_per_second"], 3)
    return result


def database_url(kind: str, workdir: Path, name: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / (name + '.sqlite3')}"
    import psycopg

    server = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
    dbname = f"spread_bench_{name}_{os.getpid()}"
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{dbname}"')
    return f"{server}/{dbname}"


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run the suite; return its records (also printed and appended to ``small_values.jsonl``)."""
    results: list[dict[str, Any]] = []
    print_and_append = emitter(Path(args.results_dir), "small_values")

    def emit(record: dict[str, Any], results: list[dict[str, Any]]) -> None:
        results.append(record)
        print_and_append(record)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        baseline, baseline_url = start_baseline(workdir)
        try:
            for kind in args.database:
                env = {
                    "DATABASE_URL": database_url(kind, workdir, "node"),
                    "SECRET_KEY": BENCH_SECRET,
                    "SPREAD_NODE_NAME": "bench",
                }
                with LiveNode(REPO / "manage.py", env, log_path=workdir / f"node-{kind}.log") as node:
                    token = httpx.post(f"{node.url}/jwttoken").json()["token"]
                    headers = {"Authorization": f"Bearer {token}"}
                    for concurrency in args.concurrency:
                        for method in ("POST", "GET"):
                            base = asyncio.run(
                                http_load(
                                    lambda i: f"{baseline_url}/raw/b/{i}",
                                    method,
                                    args.requests,
                                    concurrency,
                                    headers,
                                )
                            )
                            spread = asyncio.run(
                                http_load(
                                    lambda i, c=concurrency: f"{node.url}/raw/bench/c{c}/{i}",
                                    method,
                                    args.requests,
                                    concurrency,
                                    headers,
                                )
                            )
                            emit(
                                {
                                    "suite": "small_values",
                                    "system": f"spread-uvicorn-{kind}",
                                    "method": method,
                                    "concurrency": concurrency,
                                    **spread,
                                    "baseline_raw_asgi_per_second": base["per_second"],
                                    "ratio_to_raw_asgi": round(spread["per_second"] / base["per_second"], 3),
                                },
                                results,
                            )
                emit(
                    {
                        "suite": "in_process",
                        "system": f"spread-{kind}",
                        **in_process(args.inprocess, database_url(kind, workdir, "inproc")),
                    },
                    results,
                )
        finally:
            baseline.terminate()
            baseline.wait()
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("small-values suite (raw ASGI baseline)")
    add_shared_option(group, "--requests", type=int, default=2000, help="requests per HTTP measurement")
    add_shared_option(group, "--concurrency", type=int, nargs="+", default=[1, 32])
    add_shared_option(
        group, "--database", choices=["sqlite", "postgres"], nargs="+", default=["sqlite", "postgres"]
    )
    add_shared_option(group, "--inprocess", type=int, default=2000, help="in-process posts")
    add_common_options(group)
