"""Clients of the realtime API for the end-to-end tests: websocket frames, SSE messages, HTTP writes,
and the view a subscriber builds from the events it received.

Every wait has a deadline so that a missing frame fails the test instead of hanging it; the
deadlines are far above what a delivery takes and below the default heartbeat interval (15 s), so
a test on a node with default settings proves that the doorbell, not a heartbeat, delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
from websockets.asyncio.client import ClientConnection, connect

from spread_api.tokens import device_token
from spread_core.testing import LiveNode
from tests.services import redis_answers, service_missing

#: How long a test waits for a frame that should come promptly before it fails.
DEADLINE = 10.0
#: A dedicated Redis database for the tests that run nodes on the channels-redis layer.
REDIS_TEST_URL = "redis://127.0.0.1:6379/7"
HTTP_TIMEOUT = httpx.Timeout(30.0)
#: A fixed event date (µs, late 2025): tests that need equal or older dates count from it.
BASE_DATE = 1_764_130_000_000_000


def unique_prefix(name: str) -> str:
    """A top-level path of its own, so tests sharing a node never see each other's topics."""
    return f"{name}-{uuid.uuid4().hex[:10]}"


def bearer(token: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def writer_token(uid: str = "rt-writer", **claims: list[str]) -> str:
    return str(device_token(uid, **claims))


def require_redis() -> str:
    """The URL of the tests' Redis database (the test is skipped without Redis, or fails in CI)."""
    if not redis_answers(REDIS_TEST_URL):
        service_missing(f"Redis does not answer at {REDIS_TEST_URL}")
    return REDIS_TEST_URL


# ----------------------------------------------------------------------------------------------
# HTTP


async def post(
    client: httpx.AsyncClient,
    node: LiveNode,
    path: str,
    value: bytes | str,
    *,
    token: str,
    date: int | None = None,
    content_type: str = "text/plain",
) -> dict[str, Any]:
    """POST a value; return the JSON report (the request must succeed)."""
    headers = {**bearer(token), "Content-Type": content_type}
    if date is not None:
        headers["X-Spread-Etag"] = str(date)
    body = value.encode() if isinstance(value, str) else value
    response = await client.post(f"{node.url}/raw/{path}", content=body, headers=headers)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


async def delete(
    client: httpx.AsyncClient, node: LiveNode, path: str, *, token: str, date: int | None = None
) -> dict[str, Any]:
    headers = bearer(token)
    if date is not None:
        headers["X-Spread-Etag"] = str(date)
    response = await client.delete(f"{node.url}/raw/{path}", headers=headers)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


async def current_ids(client: httpx.AsyncClient, node: LiveNode, paths: Iterable[str]) -> dict[str, str]:
    """The node's current state of ``paths``: path → event id, deleted or unknown topics left out."""
    state: dict[str, str] = {}
    for path in sorted(set(paths)):
        response = await client.head(f"{node.url}/raw/{path}")
        if response.status_code == 404:
            continue
        assert response.status_code == 200, (path, response.status_code)
        state[path] = response.headers["etag"].strip('"')
    return state


# ----------------------------------------------------------------------------------------------
# What a subscriber saw


@dataclass
class View:
    """A subscriber's picture of the tree, built from the events it received, with the checks
    every subscription must pass: update iterations strictly increase, and no update is at or
    below an iteration that a ``synced`` or ``heartbeat`` said was complete."""

    ids: dict[str, str] = field(default_factory=dict)
    last_update: int = 0
    #: Highest iteration up to which the server said everything was sent (synced / heartbeat).
    complete_up_to: int = 0
    #: The frame that said so.
    complete_by: str = ""
    updates: int = 0

    @property
    def cursor(self) -> int:
        """Where to resume: everything up to here has been received."""
        return max(self.last_update, self.complete_up_to)

    def apply(self, event: dict[str, Any]) -> None:
        iteration = event["iteration"]
        assert iteration > self.last_update, f"update {iteration} after update {self.last_update}: {event}"
        assert iteration > self.complete_up_to, (
            f"update {iteration} arrived after a {self.complete_by!r} said that everything up to"
            f" {self.complete_up_to} had been sent"
        )
        self.last_update = iteration
        self.updates += 1
        if event["deleted"] or event.get("aborted"):
            self.ids.pop(event["path"], None)
        else:
            self.ids[event["path"]] = event["id"]

    def mark(self, iteration: int, kind: str) -> None:
        """A ``synced`` or ``heartbeat``: everything up to ``iteration`` has been sent."""
        if iteration > self.complete_up_to:
            self.complete_up_to, self.complete_by = iteration, kind


# ----------------------------------------------------------------------------------------------
# WebSocket


def ws_url(node: LiveNode, path: str = "", **params: object) -> str:
    query = urlencode({name: value for name, value in params.items() if value is not None})
    return f"ws://127.0.0.1:{node.port}/ws/{path}" + (f"?{query}" if query else "")


class WebSocket:
    """A websocket to a node with frame-level helpers; heartbeats are skipped unless asked for
    (and kept in ``heartbeats``)."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.heartbeats: list[int] = []

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        await self.connection.send(json.dumps(frame) if isinstance(frame, dict) else frame)

    async def frame(self, timeout: float = DEADLINE) -> dict[str, Any]:
        """The next frame of any type."""
        raw = await asyncio.wait_for(self.connection.recv(), timeout)
        assert isinstance(raw, str), f"the server sent a binary frame: {raw!r}"
        frame: dict[str, Any] = json.loads(raw)
        assert isinstance(frame, dict) and isinstance(frame.get("type"), str), frame
        return frame

    async def next(self, timeout: float = DEADLINE) -> dict[str, Any]:
        """The next frame that is not a heartbeat (within ``timeout`` in all)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.frame(timeout)
                if frame["type"] != "heartbeat":
                    return frame
                self.heartbeats.append(frame["iteration"])

    async def expect(self, frame_type: str) -> dict[str, Any]:
        frame = await self.next()
        assert frame["type"] == frame_type, f"expected a {frame_type!r} frame, got {frame}"
        return frame

    async def update(self) -> dict[str, Any]:
        event: dict[str, Any] = (await self.expect("update"))["event"]
        return event

    async def updates(self, count: int) -> list[dict[str, Any]]:
        return [await self.update() for _ in range(count)]

    async def catch_up(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The updates before the next ``synced``, and that ``synced`` frame."""
        events = []
        while True:
            frame = await self.next()
            if frame["type"] == "synced":
                return events, frame
            assert frame["type"] == "update", f"unexpected frame during a catch-up: {frame}"
            events.append(frame["event"])

    async def error(self, code: str) -> dict[str, Any]:
        frame = await self.expect("error")
        assert frame["code"] == code, frame
        assert isinstance(frame["message"], str) and frame["message"], frame
        return frame

    async def ping(self) -> None:
        """Round trip: the server has handled every frame sent before this one."""
        await self.send({"type": "ping"})
        await self.expect("pong")

    async def closed(self) -> int | None:
        """Read until the server closes the connection; its close code."""
        with contextlib.suppress(Exception):
            while True:
                await asyncio.wait_for(self.connection.recv(), DEADLINE)
        return self.connection.close_code


@contextlib.asynccontextmanager
async def open_ws(node: LiveNode, path: str = "", **params: object) -> AsyncIterator[WebSocket]:
    async with connect(ws_url(node, path, **params), open_timeout=DEADLINE, close_timeout=2) as connection:
        yield WebSocket(connection)


# ----------------------------------------------------------------------------------------------
# SSE


@dataclass
class SSEMessage:
    event: str
    id: str | None
    data: Any


class SSEStream:
    """The messages of a ``text/event-stream`` response (comments skipped)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.heartbeats: list[int] = []

    async def _message(self) -> SSEMessage:
        event, message_id, data = "message", None, []
        async for line in self._lines:
            if line == "":
                if data:
                    return SSEMessage(event, message_id, json.loads("\n".join(data)))
                event, message_id = "message", None
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "id":
                message_id = value
            elif name == "data":
                data.append(value)
        raise EOFError("the event stream ended")

    async def message(self, timeout: float = DEADLINE) -> SSEMessage:
        """The next message of any event type."""
        return await asyncio.wait_for(self._message(), timeout)

    async def next(self, timeout: float = DEADLINE) -> SSEMessage:
        """The next message that is not a heartbeat (within ``timeout`` in all)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.message(timeout)
                if message.event != "heartbeat":
                    return message
                self.heartbeats.append(message.data["iteration"])

    async def update(self) -> dict[str, Any]:
        message = await self.next()
        assert message.event == "update", message
        assert message.id == str(message.data["iteration"]), message
        event: dict[str, Any] = message.data
        return event

    async def catch_up(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        events = []
        while True:
            message = await self.next()
            if message.event == "synced":
                assert message.id == str(message.data["iteration"]), message
                synced: dict[str, Any] = message.data
                return events, synced
            assert message.event == "update", f"unexpected message during a catch-up: {message}"
            assert message.id == str(message.data["iteration"]), message
            events.append(message.data)


def sse_url(node: LiveNode, path: str = "", **params: object) -> str:
    query = urlencode({name: value for name, value in params.items() if value is not None})
    return f"{node.url}/sse/{path}" + (f"?{query}" if query else "")


@contextlib.asynccontextmanager
async def open_sse(
    client: httpx.AsyncClient,
    node: LiveNode,
    path: str = "",
    *,
    headers: dict[str, str] | None = None,
    **params: object,
) -> AsyncIterator[SSEStream]:
    """An event stream that must have started (200); see ``SSEStream``."""
    async with client.stream("GET", sse_url(node, path, **params), headers=headers) as response:
        if response.status_code != 200:
            await response.aread()
            raise AssertionError(f"SSE answered {response.status_code}: {response.text}")
        yield SSEStream(response)
