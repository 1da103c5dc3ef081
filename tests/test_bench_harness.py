"""Smoke test of the benchmark harness (no timing is asserted): it starts the peer systems on free
loopback ports, drives them with tiny counts, parses their answers, and stops them."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from bench import fanout, peers, peers_realtime
from tests.services import service_missing

PEER_BINARIES = {"etcd": "etcd", "redis": "redis-server", "nats": "nats-server"}


@pytest.mark.parametrize("name", sorted(PEER_BINARIES))
def test_the_harness_starts_drives_and_stops_a_peer(name: str, tmp_path: Path) -> None:
    if shutil.which(PEER_BINARIES[name]) is None:
        service_missing(f"{PEER_BINARIES[name]} is not installed")
    output = tmp_path / "results.jsonl"
    records = peers.run([name], count=5, concurrencies=[1, 2], output=output)
    assert [(r["method"], r["concurrency"]) for r in records] == [
        ("put", 1),
        ("get", 1),
        ("put", 2),
        ("get", 2),
    ]
    assert all(r["operations"] == 5 and r["errors"] == 0 and r["per_second"] > 0 for r in records)
    assert all(r["durability"] for r in records)
    assert [json.loads(line) for line in output.read_text().splitlines()] == records
    # Stopped: nothing of the peer is left listening on the port it used.
    assert not any(p.name == PEER_BINARIES[name] for p in _children())


def _children() -> list[Path]:
    import os

    names = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().split()[3]) == os.getpid():
                    names.append(Path((entry / "comm").read_text().strip()))
            except (OSError, ValueError, IndexError):
                continue
    return names


# Suites 3 and 4 (bench.peers_realtime): fan-out and catch-up on Spread and the peers ---------------
REALTIME_BINARIES = {
    "spread": None,
    "spread-no-push": None,
    "etcd": "etcd",
    "redis": "redis-server",
    "nats": "nats-server",
}


def _realtime_args(system: str, results_dir: Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    peers_realtime.add_arguments(parser)
    return parser.parse_args(
        [
            *("--realtime-systems", system),
            *("--subscribers", "3", "--messages", "3", "--rate", "100", "--burst", "3"),
            *("--topics", "20", "--catchup-repeats", "1", "--results-dir", str(results_dir)),
        ]
    )


@pytest.mark.parametrize("system", sorted(REALTIME_BINARIES))
def test_the_realtime_suites_deliver_every_message_and_key_then_stop_the_system(
    system: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = REALTIME_BINARIES[system]
    if binary is not None and shutil.which(binary) is None:
        service_missing(f"{binary} is not installed")
    monkeypatch.setattr(fanout, "PHASE_PAUSE", 0.1)  # no figure is asserted; keep the smoke test short
    args = _realtime_args(system, tmp_path)

    fan = peers_realtime.run_fanout(args)
    assert [(r["system"], r["measurement"]) for r in fan] == [(system, "paced"), (system, "burst")]
    for record in fan:
        assert (record["messages"], record["deliveries"], record["missing"]) == (3, 9, 0), record
        assert record["duplicates"] == 0 and record["publish_errors"] == 0
        assert record["subscribed"] == 3 and record["problems"]["closed_early_count"] == 0
        assert record["p99_ms"] >= record["p50_ms"] > 0 and record["deliveries_per_second"] > 0
    lines = (tmp_path / "peers_fanout.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == fan

    catch = peers_realtime.run_catchup(args)
    expected = {
        "spread": ["spread"],
        "spread-no-push": ["spread-no-push"],
        "nats": ["nats-kv"],
        "etcd": ["etcd-watch", "etcd-range"],
        "redis": [],
    }
    assert [r["system"] for r in catch] == expected[system]
    for record in catch:
        assert record["complete"] and record["items"] == 20 and record["errors"] == [], record
        assert record["seconds_median"] > 0
    if catch:
        lines = (tmp_path / "peers_catchup.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in lines] == catch

    charts = peers_realtime.plot(fan + catch, tmp_path / "charts")
    assert {p.name for p in charts} >= {"peers_fanout_p99_n3.png", "peers_fanout_rate_n3.png"}
    assert all(p.stat().st_size > 0 for p in charts)
    # Stopped: no peer server and no Spread node is left running.
    assert not any(p.name in PEER_BINARIES.values() for p in _children())
    assert not any("spread_node" in command for command in _child_commands())


def test_the_two_process_redis_variant_delivers_every_message_to_subscribers_on_both(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        service_missing("redis-server is not installed")
    args = _realtime_args("spread-redis-2", tmp_path)
    fan = peers_realtime.run_fanout(args)
    assert [(r["system"], r["processes"]) for r in fan] == [("spread-redis-2", 2)] * 2
    for record in fan:
        assert (record["messages"], record["deliveries"], record["missing"]) == (3, 9, 0), record
        assert record["duplicates"] == 0 and record["subscribed"] == 3
    assert peers_realtime.run_catchup(args) == []
    assert not any("spread_node" in command for command in _child_commands())


def test_the_batched_catch_up_variant_gets_every_key_and_has_no_fanout(tmp_path: Path) -> None:
    args = _realtime_args("spread-batch", tmp_path)
    assert peers_realtime.run_fanout(args) == []  # batching is measured on catch-ups only
    [record] = peers_realtime.run_catchup(args)
    assert (record["system"], record["complete"], record["items"]) == ("spread-batch", True, 20), record
    assert record["method"].endswith("&batch=1")


def test_the_fanout_ratios_compare_each_system_with_etcd_at_the_same_size_and_phase() -> None:
    def record(system: str, subscribers: int, p99_ms: float, per_second: float) -> dict[str, object]:
        return {
            "system": system,
            "subscribers": subscribers,
            "measurement": "paced",
            "p99_ms": p99_ms,
            "deliveries_per_second": per_second,
        }

    records = [record("etcd", 10, 4.0, 100), record("spread", 10, 6.0, 50), record("spread", 20, 6.0, 5)]
    peers_realtime.add_fanout_ratios(records)
    assert (records[1]["ratio_p99_to_etcd"], records[1]["ratio_deliveries_to_etcd"]) == (1.5, 0.5)
    assert "ratio_p99_to_etcd" not in records[2]  # etcd did not run with 20 subscribers


def _child_commands() -> list[str]:
    import os

    commands = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().split()[3]) == os.getpid():
                    commands.append((entry / "cmdline").read_text().replace("\0", " "))
            except (OSError, ValueError, IndexError):
                continue
    return commands


def test_python_m_bench_runs_the_chosen_suites_and_prints_the_side_by_side_table(tmp_path: Path) -> None:
    import subprocess
    import sys

    if shutil.which("redis-server") is None:
        service_missing("redis-server is not installed")
    command = [sys.executable, "-m", "bench", "--suite", "peers_small", "--peer-systems", "redis"]
    command += [
        "--count",
        "3",
        "--concurrency",
        "1",
        "--results-dir",
        str(tmp_path),
        "--plot-dir",
        str(tmp_path),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent
    )
    assert done.returncode == 0, done.stderr
    table = done.stdout.split("Side by side (same run, same machine):", 1)[1]
    assert [line.split()[:3] for line in table.strip().splitlines()[:2]] == [
        ["redis", "put", "c=1"],
        ["redis", "get", "c=1"],
    ]
    records = [json.loads(line) for line in (tmp_path / "peers_small.jsonl").read_text().splitlines()]
    assert [r["operations"] for r in records] == [3, 3]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "peers_small_get_c1.png",
        "peers_small_put_c1.png",
    ]
