"""A writer OS process for test_resume_under_load: ``python -m tests.e2e.http_writer_process CONFIG``
where CONFIG is a JSON object (see ``main``).

It touches ``SYNC_DIR/ready-INDEX``, waits for ``SYNC_DIR/go`` (so every writer starts at once),
then writes COUNT times over HTTP to random topics of the prefix, on a random node each time:
mostly POSTs, some DELETEs, and some writes to the "tie" topics whose date is the same for every
writer at the same step, so that concurrent writers collide on equal dates and the origin breaks
the tie. Dates come from a logical clock shared by all writers (``BASE_DATE + step * STEP``), so
writers that fall behind produce ``too_late`` writes. It prints a JSON summary: the count of each
status and the highest iteration it was given.
"""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.writer_process import wait_for_go

BASE_DATE = 1_764_130_000_000_000
STEP = 1000
DELETE_SHARE = 0.12
TIE_SHARE = 0.15


def topics(prefix: str, count: int) -> list[str]:
    """The topics the writers use: nested at different depths under ``prefix``."""
    return [f"{prefix}/g{k % 3}/t{k}" if k % 2 else f"{prefix}/t{k}" for k in range(count)]


def tie_topics(prefix: str) -> list[str]:
    return [f"{prefix}/tie/0", f"{prefix}/tie/1"]


def main(config: dict[str, Any]) -> None:
    index: int = config["index"]
    rng = random.Random(config["seed"])
    sync_dir = Path(config["sync_dir"])
    plain, ties = topics(config["prefix"], config["topics"]), tie_topics(config["prefix"])
    headers = {"Authorization": f"Bearer {config['token']}", "Content-Type": "text/plain"}
    clients = [httpx.Client(base_url=url, timeout=60.0, headers=headers) for url in config["urls"]]
    statuses: Counter[str] = Counter()
    max_iteration = 0
    (sync_dir / f"ready-{index}").touch()
    wait_for_go(sync_dir)
    for step in range(config["count"]):
        client = rng.choice(clients)
        roll = rng.random()
        date = BASE_DATE + step * STEP
        if roll < TIE_SHARE:
            response = client.post(
                f"/raw/{rng.choice(ties)}",
                content=f"tie {index}:{step}",
                headers={"X-Spread-Etag": str(date)},
            )
        elif roll < TIE_SHARE + DELETE_SHARE:
            date += rng.randrange(1, STEP)
            response = client.delete(f"/raw/{rng.choice(plain)}", headers={"X-Spread-Etag": str(date)})
        else:
            date += rng.randrange(1, STEP)
            response = client.post(
                f"/raw/{rng.choice(plain)}", content=f"{index}:{step}", headers={"X-Spread-Etag": str(date)}
            )
        if response.status_code != 200:
            raise SystemExit(f"write {step} failed: {response.status_code} {response.text}")
        report = response.json()
        statuses[report["status"]] += 1
        max_iteration = max(max_iteration, report["iteration"])
    for client in clients:
        client.close()
    print(json.dumps({"statuses": dict(statuses), "max_iteration": max_iteration}))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
