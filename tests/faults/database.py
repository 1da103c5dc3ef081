"""What a fault left in a node's own database (SQLite file or PostgreSQL), read directly so that
a check never goes through the node it checks; and the JSON error answers the faults must give."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import httpx

from spread_core.testing import LiveNode

SQLITE_PREFIX = "sqlite:///"


def sqlite_file(node: LiveNode) -> str:
    """The path of the node's SQLite database file."""
    url = node.env["DATABASE_URL"]
    assert url.startswith(SQLITE_PREFIX), url
    return url[len(SQLITE_PREFIX) :]


def query(node: LiveNode, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the node's own database."""
    url = node.env["DATABASE_URL"]
    if url.startswith(SQLITE_PREFIX):
        with contextlib.closing(sqlite3.connect(sqlite_file(node), timeout=30)) as connection:
            return connection.execute(sql).fetchall()
    import psycopg

    with psycopg.connect(url) as connection:
        return connection.execute(sql).fetchall()


def assert_log_intact(node: LiveNode) -> int:
    """The node's log after a fault (the node settled: no upload still arriving): iterations
    1..head, each once, the counter at the head; every event has exactly one ``write`` entry, at
    its own iteration; no upload is left neither complete nor aborted, and an aborted upload
    kept no chunk. Returns the head."""
    iterations = [
        row[0] for row in query(node, "SELECT iteration FROM spread_core_change ORDER BY iteration")
    ]
    counter = query(node, "SELECT value FROM spread_core_counter WHERE name = 'iteration'")
    head = int(counter[0][0]) if counter else 0
    assert iterations == list(range(1, head + 1)), (
        f"the log has holes or extra entries: {len(iterations)} entries, counter at {head}"
    )
    unlogged = query(
        node,
        "SELECT e.iteration FROM spread_core_event e WHERE NOT EXISTS (SELECT 1 FROM spread_core_change c"
        " WHERE c.event_id = e.iteration AND c.iteration = e.iteration AND c.kind = 'write')",
    )
    assert not unlogged, f"events without their write entry: {unlogged[:10]}"
    unfinished = query(
        node, "SELECT iteration, size FROM spread_core_event WHERE NOT complete AND NOT aborted"
    )
    assert not unfinished, f"uploads neither complete nor aborted: {unfinished}"
    leftovers = query(
        node,
        "SELECT COUNT(*) FROM spread_core_blobchunk b JOIN spread_core_event e ON b.event_id = e.iteration"
        " WHERE e.aborted",
    )
    assert leftovers[0][0] == 0, f"{leftovers[0][0]} chunks of aborted uploads left"
    _assert_blob_files_intact(node)
    return head


def _assert_blob_files_intact(node: LiveNode) -> None:
    """With the file store: a complete blob's file holds its size, no aborted upload kept a file."""
    root = node.env.get("SPREAD_BLOB_ROOT")
    if not root or query(node, "SELECT COUNT(*) FROM spread_core_blobchunk")[0][0]:
        return  # bytes in chunk rows: the database store
    files = {int(path.name): path.stat().st_size for path in Path(root).glob("*/*") if path.name.isdigit()}
    blobs = query(node, "SELECT iteration, size, complete, aborted FROM spread_core_event WHERE is_blob")
    for iteration, size, complete, aborted in blobs:
        if aborted:
            assert iteration not in files, f"the aborted upload {iteration} kept its file"
        elif complete:
            assert files.get(iteration) == size, f"blob {iteration}: file {files.get(iteration)}, size {size}"


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An error answer as the API promises it: JSON ``{"error", "detail"}`` with this status and
    code, never an HTML page or a traceback. Returns the body."""
    assert response.status_code == status, f"{response.status_code}: {response.text[:500]}"
    assert response.headers["content-type"].startswith("application/json"), response.headers
    assert "Traceback" not in response.text and "<html" not in response.text.lower(), response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == code, body
    assert isinstance(body["detail"], str) and body["detail"], body
    return body


def assert_unavailable(response: httpx.Response) -> None:
    """503 ``unavailable`` with a Retry-After the client can act on."""
    assert_error(response, 503, "unavailable")
    retry_after = response.headers.get("retry-after", "")
    assert retry_after.isdigit() and int(retry_after) >= 1, f"Retry-After: {retry_after!r}"
