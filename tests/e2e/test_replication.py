"""Node-to-node replication between real node processes, each with its own database: links made
with the management commands, writes over HTTP, state read from each node's database."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from spread_core.testing import LiveNode

from .cluster import link, node_name, start_node, state, status, wait_converged, wait_until, write
from .realtime import unique_prefix

pytestmark = pytest.mark.e2e


def test_one_link_carries_writes_both_ways_and_reports_its_state(make_node: Callable[..., LiveNode]) -> None:
    a, b = start_node(make_node, "rep-a"), start_node(make_node, "rep-b")
    p = unique_prefix("both")
    link(a, b, p)
    on_a = write(a, f"{p}/from-a", "written on A")
    on_b = write(b, f"{p}/from-b", "written on B")
    converged = wait_converged([a, b], p)
    assert converged == {on_a["path"]: on_a["id"], on_b["path"]: on_b["id"]}
    peer = status(a)["peers"][0]
    assert peer["connected"] is True
    assert peer["remote_node"] == node_name(b)
    assert peer["prefixes"] == [p]
    assert peer["last_error"] == ""
    wait_until(lambda: status(a)["peers"][0]["cursor"] >= on_b["iteration"], 5, lambda: str(status(a)))
    assert state(a, p) == state(b, p)
