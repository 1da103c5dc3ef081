"""``python -m bench.local_reads``: an in-process read, the local lookup the seed promises, against
a Redis GET over loopback, in one process and one run.

In a fresh process configured like the demo node (SQLite, and PostgreSQL when it answers), 100
topics of 100 bytes are written; then ``--reads`` ``api.get`` calls go round them (served by the
value cache, validated against the counter first) and the same number of redis-py GETs of 100-byte
keys on the machine's Redis (``BENCH_REDIS_URL``, default ``redis://127.0.0.1:6379/15``). A
second series reads through ``api.get`` with the cache off (``CACHE_MAX_BYTES`` 0: a query per
read), so the cache's effect is in the same run. Records: reads/s and CPU µs per read of each, and
the ratio ``api.get`` / Redis GET.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.large_values import POSTGRES, SQLITE, new_database, postgres_answers  # noqa: E402
from bench.options import add_common_options, add_shared_option, emitter  # noqa: E402

SUITE = "local_reads"
TOPICS = 100
VALUE = b"x" * 100
BENCH_SECRET = "spread-bench-secret-key-0123456789-0123456789-0123456789"


def _timed(function: Any, count: int) -> dict[str, float]:
    started, cpu = time.perf_counter(), time.process_time()
    for index in range(count):
        function(index)
    wall, used = time.perf_counter() - started, time.process_time() - cpu
    return {"per_second": round(count / wall, 1), "cpu_us_per_op": round(used / count * 1e6, 2)}


def measure_here(reads: int) -> list[dict[str, Any]]:
    """In this process (Django configured by the environment): the three series."""
    import django

    django.setup()
    import redis
    from django.core.management import call_command
    from django.test import override_settings

    from spread_core import api

    call_command("migrate", verbosity=0)
    paths = [f"bench/local/k{index}" for index in range(TOPICS)]
    for path in paths:
        api.post(path, VALUE)
    client = redis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"))
    for index in range(TOPICS):
        client.set(f"bench:local:k{index}", VALUE)

    def spread_get(index: int) -> None:
        value = api.get(paths[index % TOPICS])
        assert value is not None and value.value == VALUE

    def redis_get(index: int) -> None:
        assert client.get(f"bench:local:k{index % TOPICS}") == VALUE

    spread_get(0), redis_get(0)  # connections opened, cache filled
    for path in paths:
        api.get(path)
    cached = _timed(spread_get, reads)
    remote = _timed(redis_get, reads)
    with override_settings(SPREAD={**_spread_options(), "CACHE_MAX_BYTES": 0}):
        uncached = _timed(spread_get, reads)
    client.delete(*[f"bench:local:k{index}" for index in range(TOPICS)])
    return [
        {"series": "api.get (value cache)", **cached, "ratio_to_redis_get": _ratio(cached, remote)},
        {"series": "api.get (CACHE_MAX_BYTES=0)", **uncached, "ratio_to_redis_get": _ratio(uncached, remote)},
        {"series": "redis-py GET, loopback", **remote, "ratio_to_redis_get": 1.0},
    ]


def _spread_options() -> dict[str, Any]:
    from django.conf import settings

    return dict(getattr(settings, "SPREAD", {}))


def _ratio(figures: dict[str, float], baseline: dict[str, float]) -> float:
    return round(figures["per_second"] / baseline["per_second"], 2)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    emit = emitter(Path(args.results_dir), SUITE)
    records: list[dict[str, Any]] = []
    databases = [SQLITE] + ([POSTGRES] if postgres_answers() else [])
    with tempfile.TemporaryDirectory() as tmp:
        for database in databases:
            url, drop = new_database(database, Path(tmp), "local")
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "SECRET_KEY": BENCH_SECRET,
                "DJANGO_SETTINGS_MODULE": "spread_project.settings",
            }
            command = [sys.executable, "-m", "bench.local_reads", "--here", str(args.local_reads)]
            try:
                out = subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True, text=True)
            finally:
                drop()
            for line in out.stdout.splitlines():
                record = {"suite": SUITE, "database": database, "reads": args.local_reads, **json.loads(line)}
                emit(record)
                records.append(record)
    return records


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("local_reads suite (in-process api.get vs a Redis GET)")
    add_shared_option(group, "--local-reads", type=int, default=20000, help="reads per series")
    add_common_options(group)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--here":
        for record in measure_here(int(sys.argv[2])):
            print(json.dumps(record), flush=True)
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
