"""Helpers of the replication tests: nodes, links made with the management commands, and each
node's state read straight from its own database (so a check never goes through replication)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

import httpx

from spread_core.testing import LiveNode

from .realtime import bearer, writer_token

REPLICATION_SETTINGS = "tests.node_settings_replication"
#: The issue's bound: every node holding a prefix agrees within 5 s after writes stop.
CONVERGENCE_DEADLINE = 5.0
STATE_QUERY = (
    "SELECT t.path, e.event_id FROM spread_core_topic t "
    "JOIN spread_core_event e ON t.current_id = e.iteration"
)


def start_node(make_node: Callable[..., LiveNode], name: str, **env: str) -> LiveNode:
    return make_node(name, **{"DJANGO_SETTINGS_MODULE": REPLICATION_SETTINGS, **env})


def node_name(node: LiveNode) -> str:
    return node.env["SPREAD_NODE_NAME"]


def link(node: LiveNode, peer: LiveNode, *prefixes: str, credential: list[str] | None = None) -> None:
    """``node`` gets a link to ``peer`` for ``prefixes`` (none: everything), with a credential the
    peer issues for it (for ``credential`` prefixes, default the same): ``spread_token --node`` on
    the peer, ``spread_peer add`` on the node."""
    prefix_args = ["--prefix", *prefixes] if prefixes else []
    credential_args = prefix_args if credential is None else ["--prefix", *credential]
    token = peer.manage("spread_token", "--node", node_name(node), *credential_args).strip()
    node.manage("spread_peer", "add", f"{peer.url}/", "--token", token, *prefix_args)


def query(node: LiveNode, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the node's own database (SQLite file or PostgreSQL)."""
    url = node.env["DATABASE_URL"]
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///") :], timeout=30) as connection:
            return connection.execute(sql).fetchall()
    import psycopg

    with psycopg.connect(url) as connection:
        return connection.execute(sql).fetchall()  # type: ignore[arg-type]


def state(node: LiveNode, prefix: str = "") -> dict[str, str]:
    """path → current event id of every topic at or under ``prefix`` on the node."""
    rows = query(node, STATE_QUERY)
    return {path: eid for path, eid in rows if not prefix or path == prefix or path.startswith(prefix + "/")}


def event_count(node: LiveNode) -> int:
    return int(query(node, "SELECT COUNT(*) FROM spread_core_event")[0][0])


def head(node: LiveNode) -> int:
    rows = query(node, "SELECT value FROM spread_core_counter WHERE name = 'iteration'")
    return int(rows[0][0]) if rows else 0


def wait_until(condition: Callable[[], bool], deadline: float, message: Callable[[], str]) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(message())
        time.sleep(0.05)


def wait_converged(
    nodes: list[LiveNode], prefix: str, deadline: float = CONVERGENCE_DEADLINE
) -> dict[str, str]:
    """Wait until every node has the same current event per topic under ``prefix``."""
    states: list[dict[str, str]] = []

    def same() -> bool:
        states[:] = [state(node, prefix) for node in nodes]
        return all(s == states[0] for s in states)

    def differences() -> str:
        keys = set().union(*states)
        diff = {k: [s.get(k) for s in states] for k in keys if len({s.get(k) for s in states}) > 1}
        return f"not converged after {deadline} s; {len(diff)} topics differ, e.g. {list(diff.items())[:5]}"

    wait_until(same, deadline, differences)
    return states[0]


def status(node: LiveNode) -> dict[str, Any]:
    response = httpx.get(
        f"{node.url}/api/replication/", headers=bearer(writer_token("status-reader")), timeout=10
    )
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def write(
    node: LiveNode, path: str, value: str, *, uid: str = "writer", date: int | None = None
) -> dict[str, Any]:
    headers = {**bearer(writer_token(uid)), "Content-Type": "text/plain"}
    if date is not None:
        headers["X-Spread-Etag"] = str(date)
    response = httpx.post(f"{node.url}/raw/{path}", content=value.encode(), headers=headers, timeout=30)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def delete(node: LiveNode, path: str, *, uid: str = "writer", date: int | None = None) -> dict[str, Any]:
    headers = bearer(writer_token(uid))
    if date is not None:
        headers["X-Spread-Etag"] = str(date)
    response = httpx.delete(f"{node.url}/raw/{path}", headers=headers, timeout=30)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result
