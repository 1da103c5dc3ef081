"""A subscriber that stops reading never holds up writers or other subscribers; the node drops it
with a reason, and it resumes by iteration without losing anything.

The node stores values up to 64 KiB inline, so each update frame carries ~60 KB: a few hundred of
them are far more than the socket buffers between the node and a client can hold. The slow client
connects through a socket with a tiny receive buffer and never reads while a writer posts; the node
has a short SEND_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
from collections.abc import Callable

import httpx
import pytest

from spread_core.testing import LiveNode

from .realtime import (
    DEADLINE,
    HTTP_TIMEOUT,
    View,
    current_ids,
    open_ws,
    post,
    unique_prefix,
    writer_token,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WRITES = 200
VALUE_SIZE = 60_000
CLOSE_TOO_SLOW = 4008
TINY_RECEIVE_BUFFER = 4096
STREAM_LIMIT = 16 * 1024
OPCODE_TEXT = 0x1
OPCODE_CLOSE = 0x8


@pytest.fixture(scope="module")
def slow_node(module_nodes: Callable[..., LiveNode]) -> LiveNode:
    return module_nodes("slow-node", DJANGO_SETTINGS_MODULE="tests.node_settings_slow_subscriber")


class RawWebSocket:
    """A websocket client on a bare stream, so that not reading really means not reading: the
    stream buffers at most ``STREAM_LIMIT`` bytes, then the kernel's small receive buffer fills
    and the node's sends back up. Server frames are parsed by hand (they are never masked)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, node: LiveNode, path: str) -> RawWebSocket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TINY_RECEIVE_BUFFER)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", node.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=STREAM_LIMIT)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /ws/{path} HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def frame(self) -> tuple[int, bytes]:
        """The next frame: (opcode, payload); the node never fragments its JSON frames."""
        first, second = await asyncio.wait_for(self.reader.readexactly(2), DEADLINE)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        payload = await asyncio.wait_for(self.reader.readexactly(length), DEADLINE)
        return first & 0x0F, payload

    def close(self) -> None:
        self.writer.close()


async def test_a_subscriber_that_does_not_read_blocks_nobody_and_is_dropped_then_resumes(
    slow_node: LiveNode,
) -> None:
    p = unique_prefix("slow")
    token = writer_token("slow-writer")
    value = "v" * VALUE_SIZE
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
        slow = await RawWebSocket.open(slow_node, p)
        try:
            async with open_ws(slow_node, p) as fast:
                await fast.catch_up()
                fast_view = View()

                async def follow() -> None:
                    for _ in range(WRITES):
                        fast_view.apply(await fast.update())

                following = asyncio.create_task(follow())
                # Writers go on while the slow subscriber reads nothing: every write is answered...
                reports = [
                    await post(client, slow_node, f"{p}/{i}", value, token=token) for i in range(WRITES)
                ]
                assert {r["status"] for r in reports} == {"ok"}
                # ...and the other subscriber receives every one of them, in order.
                await following
                assert fast_view.ids == {r["path"]: r["id"] for r in reports}

            # The node drops the slow subscriber (its sends have been blocked for longer than
            # SEND_TIMEOUT) even though it still reads nothing: it stops counting it.
            probe = await post(client, slow_node, f"{p}/probe", "anyone?", token=token)
            async with asyncio.timeout(DEADLINE):
                while {e["path"]: e["subscribers"] for e in probe["propagation"]}[p] != 0:
                    await asyncio.sleep(0.2)
                    probe = await post(client, slow_node, f"{p}/probe", "anyone?", token=token)

            # Reading again, the client gets the frames the node had sent, then the end of the
            # connection: a 4008 close frame with a reason, unless the node could not send it.
            slow_view = View()
            close: tuple[int, str] | None = None
            with contextlib.suppress(asyncio.IncompleteReadError):
                while True:
                    opcode, payload = await slow.frame()
                    if opcode == OPCODE_CLOSE:
                        close = struct.unpack("!H", payload[:2])[0], payload[2:].decode()
                        break
                    assert opcode == OPCODE_TEXT, (opcode, payload)
                    frame = json.loads(payload)
                    if frame["type"] == "update":
                        slow_view.apply(frame["event"])
            if close is not None:
                assert close[0] == CLOSE_TOO_SLOW, close
                assert "resume" in close[1], close
            assert slow_view.updates < WRITES
        finally:
            slow.close()

        # It resumes from the last iteration it received and misses nothing.
        async with open_ws(slow_node, p, since=slow_view.last_update) as resumed:
            events, synced = await resumed.catch_up()
            for event in events:
                slow_view.apply(event)
            assert synced["iteration"] == probe["iteration"]
        assert slow_view.ids == {**fast_view.ids, probe["path"]: probe["id"]}
        assert slow_view.ids == await current_ids(client, slow_node, slow_view.ids)
