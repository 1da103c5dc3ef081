"""A real node process answers a write and a read over HTTP."""

from __future__ import annotations

import httpx

from spread_core.testing import LiveNode


def test_node_serves_a_written_value(node: LiveNode, auth: dict[str, str]) -> None:
    response = httpx.post(f"{node.url}/raw/smoke/a", content=b"hello", headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"
    read = httpx.get(f"{node.url}/raw/smoke/a")
    assert read.status_code == 200
    assert read.content == b"hello"
    assert read.headers["from"] == "dev-test"
