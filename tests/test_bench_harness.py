"""Smoke test of the benchmark harness (no timing is asserted): it starts the peer systems on free
loopback ports, drives them with tiny counts, parses their answers, and stops them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import peers
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
