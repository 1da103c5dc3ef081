"""``python -m bench --suite small_values``: small writes and reads over HTTP and in-process, as
ratios to baselines measured in the same run: HTTP rates against a minimal raw ASGI app on the same
uvicorn (the stack's limit), in-process posts against a bare ORM insert into the same database.
Loops are bounded in count and time and target only 127.0.0.1."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import peer_clients, peers  # noqa: E402
from bench.load import ClientProcesses, Job  # noqa: E402
from bench.options import add_common_options, add_shared_option, emitter  # noqa: E402

BENCH_SECRET = "spread-bench-secret-key-0123456789-0123456789-0123456789"
VALUE = b"x" * 100
HARNESS_METHODS = {"POST": "put", "GET": "get"}  # PUT is a POST of the value, GET a GET


def http_figures(
    clients: ClientProcesses, system: peers.System, method: str, key_prefix: str, count: int, concurrency: int
) -> dict[str, Any]:
    """``count`` requests (``POST`` of the value or ``GET``) with ``concurrency`` in flight through
    the lean client; rate, latency percentiles and CPU per request (a non-2xx answer is an error)."""
    spec = system.client(peer_clients.LEAN, peers.SERIES_LOOP[peer_clients.LEAN])
    job = Job(spec, HARNESS_METHODS[method], key_prefix, VALUE, range(count), concurrency)
    figures = clients.measure(job, system.server_pid)
    figures["requests"] = figures.pop("operations")
    return figures


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

    with tempfile.TemporaryDirectory() as tmp, ClientProcesses(1) as clients:
        workdir = Path(tmp)
        baseline = peers.RawAsgi(workdir)
        baseline.start()
        try:
            for kind in args.database:
                node = peers.Spread(workdir, kind)
                node.start()
                try:
                    for concurrency in args.concurrency:
                        for method in ("POST", "GET"):
                            base = http_figures(clients, baseline, method, "b/", args.requests, concurrency)
                            prefix = f"bench/c{concurrency}/"
                            spread = http_figures(clients, node, method, prefix, args.requests, concurrency)
                            emit(
                                {
                                    "suite": "small_values",
                                    "system": f"spread-uvicorn-{kind}",
                                    "method": method,
                                    "concurrency": concurrency,
                                    **spread,
                                    "baseline_raw_asgi_per_second": base["per_second"],
                                    "baseline_raw_asgi_server_cpu_us_per_op": base["server_cpu_us_per_op"],
                                    "ratio_to_raw_asgi": round(spread["per_second"] / base["per_second"], 3),
                                },
                                results,
                            )
                finally:
                    node.stop()
                emit(
                    {
                        "suite": "in_process",
                        "system": f"spread-{kind}",
                        **in_process(args.inprocess, database_url(kind, workdir, "inproc")),
                    },
                    results,
                )
        finally:
            baseline.stop()
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
