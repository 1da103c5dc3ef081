"""A real node process answers a write and a read over HTTP."""

from __future__ import annotations

import socket
import time

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


def request_on(connection: socket.socket, node: LiveNode) -> bytes:
    connection.sendall(f"GET /raw/smoke/kept HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n\r\n".encode())
    answer = b""
    while not answer.endswith(b"kept"):
        piece = connection.recv(65536)
        assert piece, f"the node closed the connection; it had sent {answer!r}"
        answer += piece
    return answer


def test_an_idle_keep_alive_connection_outlives_client_pool_expiry(
    node: LiveNode, auth: dict[str, str]
) -> None:
    """A connection idle for longer than httpx's pool expiry (5 s) is still open: were the server's
    keep-alive timeout the same 5 s, a client reusing the connection at that moment would send
    its request into a closing socket and get a reset instead of an answer."""
    assert httpx.post(f"{node.url}/raw/smoke/kept", content=b"kept", headers=auth).status_code == 200
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as connection:
        assert request_on(connection, node).startswith(b"HTTP/1.1 200")
        time.sleep(6.0)
        assert request_on(connection, node).startswith(b"HTTP/1.1 200")
