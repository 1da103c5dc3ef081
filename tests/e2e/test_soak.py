"""The bounded soak (``bench/soak.py``) as a test: one node under mixed load for
``SPREAD_SOAK_SECONDS`` (default 60; ``make soak`` runs 5 minutes): writes, reads, 500 websocket
subscribers connecting and disconnecting, a 50 MB upload every 30 s. It must end with no 5xx and
no failed request, every subscriber's view equal to the store, and RSS growth under 10% after the
warm-up. Throughput is reported, never asserted."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest

from bench import soak
from bench.fanout import raise_fd_limit
from spread_core.testing import LiveNode

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SECONDS = float(os.environ.get("SPREAD_SOAK_SECONDS", "60"))
SUBSCRIBERS = 500


def test_a_bounded_soak_ends_with_no_errors_views_equal_to_the_store_and_flat_memory(
    make_node: Callable[..., LiveNode], token: str
) -> None:
    raise_fd_limit(SUBSCRIBERS + 200)  # before the node starts: it inherits the limit
    node = make_node("soak")
    assert node.process is not None
    report = soak.run(
        node.url, node.process.pid, token, soak.Config(seconds=SECONDS, subscribers=SUBSCRIBERS)
    )
    print(json.dumps(report, indent=2))  # the figures, in the test log
    assert report["answers"].get("write 2xx", 0) > 0 and report["uploads"] >= 1, report
    assert report["websocket_connections"] > SUBSCRIBERS, report  # they did reconnect
    assert report["checks"] == {name: True for name in report["checks"]}, report
    assert "Traceback" not in node.log_path.read_text()  # type: ignore[union-attr]
