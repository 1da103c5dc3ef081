"""``python -m bench.group_commit``: in-process group commit, set-based batches against per-write
batches (``SPREAD["GROUP_COMMIT_SET_BASED"]`` on and off) in the same run and database.

``--threads`` threads each ``api.post`` 100-byte values to paths of their own (a new topic per
write) for ``--seconds``, once per mode and ``--rounds`` times, alternating. Prints one JSON line
per measurement: writes/s and process CPU per write (``time.process_time``, every thread), then
the ratios of set-based to per-write. ``--database postgres`` uses a new PostgreSQL database on
``BENCH_POSTGRES_URL`` (default ``postgres://postgres@127.0.0.1:5432``), dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.small_values import BENCH_SECRET, VALUE, database_url  # noqa: E402

MODES = {"set-based": True, "per-write": False}


def measure(mode: str, round_number: int, threads: int, seconds: float) -> dict[str, Any]:
    """One mode for ``seconds``: how many writes, and the process CPU they took."""
    from django.conf import settings
    from django.db import connection
    from django.test import override_settings

    from spread_core import api

    counts = [0] * threads
    start = threading.Barrier(threads + 1)
    deadline = [0.0]

    def writer(index: int) -> None:
        start.wait()
        try:
            while time.monotonic() < deadline[0]:
                api.post(f"bench/{mode}{round_number}/w{index}/t{counts[index]}", VALUE)
                counts[index] += 1
        finally:
            connection.close()  # this thread's

    with override_settings(SPREAD={**settings.SPREAD, "GROUP_COMMIT_SET_BASED": MODES[mode]}):
        workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        cpu, wall = time.process_time(), time.monotonic()
        deadline[0] = wall + seconds
        start.wait()
        for worker in workers:
            worker.join()
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    writes = sum(counts)
    return {
        "mode": mode,
        "round": round_number,
        "threads": threads,
        "writes": writes,
        "writes_per_second": round(writes / wall, 1),
        "cpu_ms_per_write": round(1000 * cpu / writes, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        url = database_url(args.database, Path(workdir), "group_commit")
        os.environ.update(
            DATABASE_URL=url, SECRET_KEY=BENCH_SECRET, DJANGO_SETTINGS_MODULE="spread_project.settings"
        )
        import django

        django.setup()
        from django.core.management import call_command

        from spread_core.batching import batcher

        call_command("migrate", verbosity=0)
        records = []
        try:
            for round_number in range(args.rounds):
                for mode in MODES:
                    record = {
                        "database": args.database,
                        **measure(mode, round_number, args.threads, args.seconds),
                    }
                    print(json.dumps(record), flush=True)
                    records.append(record)
        finally:
            batcher.stop()
            if args.database == "postgres":
                _drop(url)

    def total(mode: str, key: str) -> float:
        return sum(r[key] for r in records if r["mode"] == mode) / args.rounds

    print(
        json.dumps(
            {
                "database": args.database,
                "writes_per_second_ratio": round(
                    total("set-based", "writes_per_second") / total("per-write", "writes_per_second"), 2
                ),
                "cpu_per_write_ratio": round(
                    total("set-based", "cpu_ms_per_write") / total("per-write", "cpu_ms_per_write"), 2
                ),
            }
        )
    )


def _drop(url: str) -> None:
    import psycopg

    server, _, name = url.rpartition("/")
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
