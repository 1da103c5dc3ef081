"""A lean asyncio HTTP/1.1 keep-alive client for the load loops: one connection per concurrency
slot, request bytes built by the caller, and only what it takes to find the end of each answer
parsed (the status line, ``Content-Length`` or a chunked body). httpx costs 0.5-1.3 ms of client
CPU per request and tops out near 750 requests/s on these machines; this costs a few µs."""

from __future__ import annotations

import asyncio
from typing import cast

LOOPBACK = "127.0.0.1"
HEAD_END = b"\r\n\r\n"
CRLF = b"\r\n"
CONTENT_LENGTH = b"\r\ncontent-length:"
CHUNKED = b"\r\ntransfer-encoding: chunked"
STATUS_CODE = slice(9, 12)  # b"HTTP/1.1 200 OK": the three digits of the status
NO_BODY_STATUSES = {204, 304}

Answer = tuple[int, bytes]


def _chunked_end(buffer: bytearray, start: int) -> tuple[int, bytes] | None:
    """Where the chunked body starting at ``start`` ends and its bytes, or None while incomplete."""
    position, body = start, bytearray()
    while True:
        line_end = buffer.find(CRLF, position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        chunk_start = line_end + len(CRLF)
        if size == 0:  # no trailers are sent by the servers measured here: the last CRLF ends it
            end = chunk_start + len(CRLF)
            return (end, bytes(body)) if len(buffer) >= end else None
        if len(buffer) < chunk_start + size + len(CRLF):
            return None
        body += buffer[chunk_start : chunk_start + size]
        position = chunk_start + size + len(CRLF)


def parse_answer(buffer: bytearray) -> tuple[int, Answer] | None:
    """``(bytes used, (status, body))`` of the complete answer at the start of ``buffer``, or None
    while more bytes are needed."""
    head_end = buffer.find(HEAD_END)
    if head_end < 0:
        return None
    head = bytes(buffer[:head_end]).lower()
    status = int(head[STATUS_CODE])
    body_start = head_end + len(HEAD_END)
    length_at = head.find(CONTENT_LENGTH)
    if length_at >= 0:
        value_start = length_at + len(CONTENT_LENGTH)
        value_end = head.find(CRLF, value_start)
        length = int(head[value_start : value_end if value_end >= 0 else None])
        end = body_start + length
        return (end, (status, bytes(buffer[body_start:end]))) if len(buffer) >= end else None
    if CHUNKED in head:
        chunked = _chunked_end(buffer, body_start)
        return None if chunked is None else (chunked[0], (status, chunked[1]))
    if status in NO_BODY_STATUSES or 100 <= status < 200:
        return body_start, (status, b"")
    raise ConnectionError(f"HTTP {status} without Content-Length or chunking (body to the close)")


class Connection(asyncio.Protocol):
    """One keep-alive connection; ``request(data)`` sends the whole request and returns the
    answer's ``(status, body)``. One request at a time (no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Answer] | None = None
        self.lost: Exception | None = None

    @classmethod
    async def open(cls, port: int, host: str = LOOPBACK) -> Connection:
        _, protocol = await asyncio.get_running_loop().create_connection(cls, host, port)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # create_connection gives a stream

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        try:
            parsed = parse_answer(self.buffer)
        except (ValueError, ConnectionError) as exc:
            self.waiter.set_exception(ConnectionError(f"unparsable answer: {exc}"))
            return
        if parsed is not None:
            used, answer = parsed
            del self.buffer[:used]
            self.waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionError("the server closed the connection")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    async def request(self, data: bytes) -> Answer:
        if self.lost is not None or self.transport is None:
            raise ConnectionError(f"connection unusable: {self.lost}")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Client:
    """``size`` keep-alive connections to one port, lent one per request so that each concurrency
    slot has a connection of its own; every request carries ``headers``. The constant part of the
    request head is built once per body length; a request adds its method, path and body."""

    def __init__(self, port: int, headers: dict[str, str], size: int) -> None:
        self.port, self.size = port, size
        self.header_lines = f"Host: {LOOPBACK}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers.items())
        self.tails: dict[int | None, bytes] = {}
        self.idle: list[Connection] = []

    async def open(self) -> Client:
        self.idle = [await Connection.open(self.port) for _ in range(self.size)]
        return self

    def _tail(self, body_length: int | None) -> bytes:
        """The headers after the request line, up to and with the blank line."""
        tail = self.tails.get(body_length)
        if tail is None:
            length = "" if body_length is None else f"Content-Length: {body_length}\r\n"
            tail = self.tails[body_length] = f"{self.header_lines}{length}\r\n".encode("latin-1")
        return tail

    async def request(self, method: str, path: str, body: bytes | None = None) -> Answer:
        """Send one request on an idle connection; its answer ``(status, body)``. A connection
        that failed is closed and replaced by a new one on the next request."""
        data = f"{method} {path} HTTP/1.1\r\n".encode() + self._tail(None if body is None else len(body))
        if body:
            data += body
        connection = self.idle.pop() if self.idle else await Connection.open(self.port)
        try:
            answer = await connection.request(data)
        except BaseException:
            connection.close()
            raise
        self.idle.append(connection)
        return answer

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle = []
