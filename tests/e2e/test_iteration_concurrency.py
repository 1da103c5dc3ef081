"""Iterations stay dense and become visible in commit order while writer PROCESSES race.

Four OS processes write through ``spread_core.api.post`` into one database of the run's backend
(an SQLite file, or PostgreSQL when DATABASE_URL points there). Meanwhile this process opens raw
connections again and again and checks every snapshot: no hole is ever visible
(``count(*) == max(iteration)``) and the highest iteration never goes back. At the end the
iterations are exactly 1..N, and every stored ``too_late`` flag agrees with the order of iterations.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.nodes import MANAGE_PY, REPO, uses_postgres

from .writer_process import BASE_DATE, origin_of, path_of

WRITERS = 4
WRITES_PER_WRITER = 300
TOTAL = WRITERS * WRITES_PER_WRITER
#: Generous bound on the whole run, so a deadlock fails the test instead of hanging it.
RUN_DEADLINE = 240.0

# The change log is what iterations number; with small values every change is a stored event.
SNAPSHOT_SQL = (
    "SELECT (SELECT count(*) FROM spread_core_change),"
    " (SELECT max(iteration) FROM spread_core_change),"
    " (SELECT value FROM spread_core_counter WHERE name = 'iteration'),"
    " (SELECT count(*) FROM spread_core_event)"
)
EVENTS_SQL = (
    "SELECT e.iteration, t.path, e.date, e.origin, e.too_late, e.iteration, t.current_id"
    " FROM spread_core_event e JOIN spread_core_topic t ON t.id = e.topic_id ORDER BY e.iteration"
)

pytestmark = pytest.mark.slow


def node_env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "tests.node_settings",
        "SECRET_KEY": "x",
    }


@contextlib.contextmanager
def raw_connection(database_url: str) -> Iterator[Any]:
    """A new connection outside Django, in autocommit mode: every query sees the latest commits."""
    if uses_postgres():
        import psycopg

        with psycopg.connect(database_url, autocommit=True) as conn:
            yield conn
    else:
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30, isolation_level=None)
        try:
            yield conn
        finally:
            conn.close()


def query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    with raw_connection(database_url) as conn:
        return list(conn.execute(sql).fetchall())


def start_writers(database_url: str, tmp_path: Path) -> list[tuple[subprocess.Popen[bytes], Path, Path]]:
    sync_dir = tmp_path / "sync"
    sync_dir.mkdir()
    writers = []
    for index in range(WRITERS):
        out, err = tmp_path / f"writer-{index}.out", tmp_path / f"writer-{index}.err"
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.e2e.writer_process",
                    str(index),
                    str(WRITES_PER_WRITER),
                    str(sync_dir),
                ],
                cwd=REPO,
                env=node_env(database_url),
                stdout=stdout,
                stderr=stderr,
            )
        writers.append((process, out, err))
    deadline = time.monotonic() + RUN_DEADLINE
    while not all((sync_dir / f"ready-{index}").exists() for index in range(WRITERS)):
        for process, _, err in writers:
            assert process.poll() is None, f"a writer exited before starting: {err.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "writers did not get ready"
        time.sleep(0.02)
    (sync_dir / "go").touch()
    return writers


def stop(writers: list[tuple[subprocess.Popen[bytes], Path, Path]]) -> None:
    for process, _, _ in writers:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_iterations_are_dense_and_visible_in_commit_order_under_concurrent_processes(
    tmp_path: Path, fresh_database_url: Callable[[str], str]
) -> None:
    database_url = fresh_database_url("iterations")
    migrate = subprocess.run(
        [sys.executable, str(MANAGE_PY), "migrate", "--verbosity", "0"],
        cwd=REPO,
        env=node_env(database_url),
        capture_output=True,
        text=True,
        timeout=RUN_DEADLINE,
    )
    assert migrate.returncode == 0, migrate.stderr
    assert query(database_url, SNAPSHOT_SQL) == [(0, None, 0, 0)]

    writers = start_writers(database_url, tmp_path)
    highest = 0
    deadline = time.monotonic() + RUN_DEADLINE
    try:
        while True:
            running = any(process.poll() is None for process, _, _ in writers)
            [(count, top, counter, events)] = query(database_url, SNAPSHOT_SQL)
            top = top or 0
            assert count == top, f"hole visible: {count} log entries but max iteration {top}"
            assert events == count, f"{events} events but {count} log entries"
            assert counter == top, f"counter {counter} visible with max iteration {top}"
            assert top >= highest, f"max iteration went back from {highest} to {top}"
            highest = top
            if not running:
                break
            assert time.monotonic() < deadline, f"writers still running after {RUN_DEADLINE}s"
    finally:
        stop(writers)

    statuses: dict[str, int] = {}
    for process, out, err in writers:
        errors = err.read_text()
        assert "database is locked" not in errors
        assert process.returncode == 0, errors[-3000:]
        for status, count in json.loads(out.read_text()).items():
            statuses[status] = statuses.get(status, 0) + count
    assert set(statuses) <= {"ok", "too_late"}
    assert sum(statuses.values()) == TOTAL

    assert query(database_url, SNAPSHOT_SQL) == [(TOTAL, TOTAL, TOTAL, TOTAL)]
    rows = query(database_url, EVENTS_SQL)
    assert [row[0] for row in rows] == list(range(1, TOTAL + 1))
    assert_merges_were_serialised(rows)


def assert_merges_were_serialised(rows: list[tuple[Any, ...]]) -> None:
    """Each event was too_late exactly when a greater event of its topic had a lower iteration,
    and each topic's current event is its greatest (date, origin bytes)."""
    expected_paths = {
        "/".join(path_of(index, i)) for index in range(WRITERS) for i in range(WRITES_PER_WRITER)
    }
    best: dict[str, tuple[int, bytes]] = {}
    best_id: dict[str, int] = {}
    current: dict[str, int] = {}
    for _, path, date, origin, too_late, eid, current_id in rows:
        key = (int(date), origin.encode("utf-8"))
        beaten = path in best and key < best[path]
        assert bool(too_late) == beaten, f"event {eid} on {path}: too_late={too_late}"
        if not beaten:
            best[path], best_id[path] = key, eid
        current[path] = current_id
    assert set(best) == expected_paths
    assert current == best_id
    # Every shared topic is won by the greatest origin at the greatest date written to it.
    last_writer = origin_of(WRITERS - 1).encode()
    for path, (date, origin) in best.items():
        if path.startswith("shared/"):
            assert origin == last_writer
            assert date >= BASE_DATE
