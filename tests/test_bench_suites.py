"""Smoke tests of the large-values, local-reads and memory benchmark suites (no timing is
asserted): tiny sizes, real servers on loopback; every record is parsed, every check holds, every
server is stopped."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from bench import large_values, local_reads, memory
from tests.services import service_missing

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

UPLOAD_MIB = 2
SUBSCRIBERS = 20


def parse(suite: ModuleType, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    suite.add_arguments(parser)
    return parser.parse_args(argv)


def saved(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def no_server_left() -> Callable[[], None]:
    """A check that every process the suite started is gone (reaped, not left running)."""
    before = set(memory.children(os.getpid()))

    def check() -> None:
        assert set(memory.children(os.getpid())) <= before

    return check


SPREAD_MEASUREMENTS = ("upload", "upload_with_reader", "range_read_middle_mib")


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_large_values_reader_gets_the_uploaded_bytes_and_every_server_stops(
    database: str, tmp_path: Path, no_server_left: Callable[[], None]
) -> None:
    if database == "postgres" and not large_values.postgres_answers():
        service_missing(f"PostgreSQL does not answer at {large_values.POSTGRES_URL}")
    args = parse(
        large_values,
        ["--mb", str(UPLOAD_MIB), "--databases", database, "--results-dir", str(tmp_path)],
    )

    records = large_values.run(args)

    assert saved(tmp_path / "large_values.jsonl") == records
    systems = [f"spread-uvicorn-{database}", f"spread-uvicorn-{database}-database-store"]  # both stores
    by_measurement = {(r["system"], r["measurement"]): r for r in records}
    assert set(by_measurement) == {
        ("cp", "copy"),
        ("cp+sync", "copy"),
        ("raw-asgi-uvicorn", "upload"),
        *((spread, measurement) for spread in systems for measurement in SPREAD_MEASUREMENTS),
    }
    raw = by_measurement[("raw-asgi-uvicorn", "upload")]
    assert raw["status"] == 200 and raw["received_all_bytes"]
    for spread in systems:
        ranged = by_measurement[(spread, "range_read_middle_mib")]
        assert ranged["bytes_ok"] and ranged["median_seconds"] > 0 and ranged["value_mib"] == UPLOAD_MIB
        alone, read = by_measurement[(spread, "upload")], by_measurement[(spread, "upload_with_reader")]
        assert all(r["mb_per_second"] > 0 and r["megabytes"] == UPLOAD_MIB for r in (alone, read))
        assert alone["status"] == read["status"] == 200
        assert alone["stored_sha256_ok"] and read["stored_sha256_ok"]
        assert read["reader_status"] == 200 and read["reader_bytes"] == UPLOAD_MIB * large_values.MIB
        assert read["reader_sha256_ok"] and read["reader_read_this_upload"]
        assert read["ttfb_seconds"] > 0 and read["ttfb_fraction"] > 0
        assert read["ratio_to_raw_asgi"] > 0 and read["server_peak_rss_mib"] > 0
        assert ranged["server_log"] == {}
    no_server_left()


def test_memory_counts_idle_subscribers_and_their_rss_and_every_server_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_server_left: Callable[[], None]
) -> None:
    monkeypatch.setattr(memory, "SETTLE_SECONDS", 0.2)
    monkeypatch.setattr(memory, "IDLE_WINDOW", 0.3)
    monkeypatch.setattr(memory, "FORGET_POLL", 0.2)
    args = parse(memory, ["--subscribers", str(SUBSCRIBERS), "--results-dir", str(tmp_path)])

    records = memory.run(args)

    assert saved(tmp_path / "memory.jsonl") == records
    steps = {r["system"]: r for r in records if r["measurement"] == "idle_subscribers"}
    closed = {r["system"]: r for r in records if r["measurement"] == "after_close"}
    assert set(steps) == set(closed) == {memory.BASELINE, memory.SPREAD}
    for step in steps.values():
        assert step["subscribers"] == step["synced"] == SUBSCRIBERS
        assert step["closed_early_count"] == 0 and step["error_frames"] == []
        assert step["rss_mib"] > 0 and step["rss_before_mib"] > 0
        assert step["server_cpu_percent_idle"] >= 0
    spread = steps[memory.SPREAD]
    assert spread["counted_by_server"] == SUBSCRIBERS and spread["count_error"] is None
    assert spread["baseline_raw_ws_rss_mib"] == steps[memory.BASELINE]["rss_mib"]
    assert spread["ratio_rss_to_raw_ws"] > 0
    assert closed[memory.SPREAD]["subscribers_counted_at_end"] == 0
    assert closed[memory.SPREAD]["closed_with_handshake"] == SUBSCRIBERS
    assert all(r["rss_after_close_mib"] > 0 and r["server_log"] == {} for r in closed.values())
    no_server_left()


def test_local_reads_compares_cached_and_uncached_api_get_with_a_redis_get(tmp_path: Path) -> None:
    if not large_values.postgres_answers():
        service_missing("PostgreSQL does not answer")
    args = parse(local_reads, ["--local-reads", "200", "--results-dir", str(tmp_path)])

    records = local_reads.run(args)

    assert saved(tmp_path / "local_reads.jsonl") == records
    series = {(r["database"], r["series"]) for r in records}
    assert {database for database, _ in series} == {"sqlite", "postgres"}
    assert len(series) == 6 and all(r["reads"] == 200 for r in records)
    assert all(
        r["per_second"] > 0 and r["cpu_us_per_op"] > 0 and r["ratio_to_redis_get"] > 0 for r in records
    )
