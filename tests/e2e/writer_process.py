"""A writer OS process for test_iteration_concurrency: ``python -m tests.e2e.writer_process INDEX COUNT
SYNC_DIR``, with DATABASE_URL and DJANGO_SETTINGS_MODULE in the environment.

It sets Django up, touches ``SYNC_DIR/ready-INDEX``, waits for ``SYNC_DIR/go`` (so every writer
starts at once), then calls ``spread_core.api.post`` COUNT times, alternating between topics of its
own and topics every writer shares, and prints the count of each status as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

#: Event dates are fixed: write ``i`` of every writer has date ``BASE_DATE + i``, so writes to the
#: shared topics collide on equal dates and the origin breaks the tie.
BASE_DATE = 1_764_130_000_000_000
SHARED_TOPICS = 3
OWN_TOPICS = 7
GO_TIMEOUT = 120.0


def origin_of(index: int) -> str:
    return f"writer-{index}"


def path_of(index: int, i: int) -> list[str]:
    """Odd writes go to the writer's own topics, even writes to the shared ones."""
    if i % 2:
        return ["own", origin_of(index), str(i % OWN_TOPICS)]
    return ["shared", str(i % SHARED_TOPICS)]


def wait_for_go(sync_dir: Path) -> None:
    deadline = time.monotonic() + GO_TIMEOUT
    while not (sync_dir / "go").exists():
        if time.monotonic() > deadline:
            raise SystemExit("no go signal")
        time.sleep(0.01)


def main(index: int, count: int, sync_dir: Path) -> None:
    import django

    django.setup()
    from spread_core import api

    (sync_dir / f"ready-{index}").touch()
    wait_for_go(sync_dir)
    statuses: Counter[str] = Counter()
    origin = origin_of(index)
    for i in range(count):
        report = api.post(path_of(index, i), f"{origin}:{i}", origin=origin, date=BASE_DATE + i)
        statuses[report["status"]] += 1
    print(json.dumps(dict(statuses)))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
