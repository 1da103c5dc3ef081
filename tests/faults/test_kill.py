"""kill -9 of a node in the middle of work, then a restart on the same database: every write that
was acknowledged is there with its exact value, the log stays dense, and an upload that the kill
cut off is never served as a complete value.

The nodes run on the pass's database (a SQLite file, or PostgreSQL in the PostgreSQL pass). No
assertion depends on how long something took; waits have generous deadlines.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from spread_core.testing import LiveNode
from tests.nodes import Nodes

from .database import assert_log_intact, query

pytestmark = pytest.mark.e2e

KIB = 1024
MIB = 1024 * KIB
#: How long a test waits for something that should happen promptly before it fails.
DEADLINE = 60.0
TIMEOUT = httpx.Timeout(60.0)


# ----------------------------------------------------------------------------------------------
# 1. kill -9 during bursts of small writes

#: Concurrent writers: enough that group commit batches several writes per transaction.
WRITERS = 8
#: Writes acknowledged before the kill: the burst is well under way when the node dies.
ACKNOWLEDGED_BEFORE_KILL = 200


@dataclass
class Burst:
    """What one writer saw: the writes answered 200 (path → value, report), the one whose answer
    the kill cut off, and any answer that was neither."""

    acknowledged: dict[str, tuple[bytes, dict[str, Any]]] = field(default_factory=dict)
    unanswered: dict[str, bytes] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)


def write_until_killed(node: LiveNode, auth: dict[str, str], index: int, burst: Burst) -> None:
    """POST distinct small values to distinct topics, as fast as the node answers, until it dies."""
    rng = random.Random(index)
    with httpx.Client(base_url=node.url, timeout=TIMEOUT, headers=auth) as client:
        for number in itertools.count():
            path = f"burst/w{index}/{number}"
            value = f"writer {index}, write {number}, {rng.randbytes(8).hex()}".encode()
            try:
                response = client.post(f"/raw/{path}", content=value, headers={"Content-Type": "text/plain"})
            except httpx.TransportError:
                burst.unanswered[path] = value
                return
            if response.status_code != 200:
                burst.refused.append(f"{path}: {response.status_code} {response.text[:200]}")
                return
            burst.acknowledged[path] = (value, response.json())


def test_kill_during_a_burst_of_writes_keeps_every_acknowledged_write(
    nodes: Nodes, auth: dict[str, str]
) -> None:
    node = nodes.start("burst")
    bursts = [Burst() for _ in range(WRITERS)]
    with ThreadPoolExecutor(WRITERS) as pool:
        writers = [pool.submit(write_until_killed, node, auth, n, burst) for n, burst in enumerate(bursts)]
        deadline = time.monotonic() + DEADLINE
        while sum(len(burst.acknowledged) for burst in bursts) < ACKNOWLEDGED_BEFORE_KILL:
            assert not any(writer.done() for writer in writers), [burst.refused for burst in bursts]
            assert time.monotonic() < deadline, "the writers never got going"
            time.sleep(0.01)
        node.kill()
        for writer in writers:
            writer.result(timeout=DEADLINE)
    assert not [refusal for burst in bursts for refusal in burst.refused], "a write was refused"
    acknowledged = {path: write for burst in bursts for path, write in burst.acknowledged.items()}
    unanswered = {path: value for burst in bursts for path, value in burst.unanswered.items()}
    iterations = [report["iteration"] for _, report in acknowledged.values()]
    assert len(set(iterations)) == len(iterations), "two acknowledged writes share an iteration"

    node.start()

    with httpx.Client(base_url=node.url, timeout=TIMEOUT) as client:
        for path, (value, report) in acknowledged.items():
            response = client.get(f"/raw/{path}")
            assert response.status_code == 200, f"acknowledged {path} is gone: {response.status_code}"
            assert response.content == value, path
            assert response.headers["etag"] == f'"{report["id"]}"'
            assert response.headers["x-spread-iteration"] == str(report["iteration"])
        # A write the kill cut off may or may not have been committed; if it was, it is whole.
        for path, value in unanswered.items():
            response = client.get(f"/raw/{path}")
            assert response.status_code in (200, 404), (path, response.status_code)
            if response.status_code == 200:
                assert response.content == value, path

        head = assert_log_intact(node)
        assert head >= max(iterations)
        stored = query(
            node,
            "SELECT t.path, COUNT(*) FROM spread_core_event e JOIN spread_core_topic t ON e.topic_id = t.id"
            " GROUP BY t.path",
        )
        assert all(count == 1 for _, count in stored), "a write was stored twice"
        assert {path for path, _ in stored} <= set(acknowledged) | set(unanswered)
        assert len(stored) == head, "an event without its write, or a write without its event"

        after = client.post("/raw/burst/after-restart", content=b"after", headers=auth)
        assert after.status_code == 200, after.text
        assert after.json()["iteration"] == head + 1, "the log does not continue where it stopped"


# ----------------------------------------------------------------------------------------------
# 2. kill -9 during a 100 MB upload

UPLOAD_SIZE = 100 * MIB
PIECE_SIZE = 1 * MIB
#: The node is killed once the client has sent this much of the upload.
KILL_AT = UPLOAD_SIZE // 2
#: Readers start to follow the upload when the client has sent this much.
READERS_JOIN_AT = (8 * MIB, 24 * MIB, 40 * MIB)
PREVIOUS_VALUE = b"the previous value, small and complete"


class Killed(Exception):
    """Raised inside the upload's body once the node has been killed: the client stops sending."""


@dataclass
class Streamed:
    """One GET read to its end (or to a transport error): status, headers, the length and
    SHA-256 of the bytes received, and the error if the body did not end normally."""

    status: int
    headers: httpx.Headers
    size: int = 0
    sha256: str = ""
    body: bytes = b""
    error: httpx.TransportError | None = None

    @property
    def complete(self) -> bool:
        return self.error is None


async def read_streamed(
    response: httpx.Response, first_bytes: asyncio.Event | None = None, keep: int = 0
) -> Streamed:
    """Read a response to its end, keeping a transport error instead of raising it (and the body
    itself when it is at most ``keep`` bytes)."""
    result = Streamed(response.status_code, response.headers)
    digest = hashlib.sha256()
    kept = bytearray()
    try:
        async for piece in response.aiter_raw():
            if piece and first_bytes is not None:
                first_bytes.set()
            digest.update(piece)
            result.size += len(piece)
            if result.size <= keep:
                kept += piece
    except httpx.TransportError as exc:
        result.error = exc
    result.sha256 = digest.hexdigest()
    result.body = bytes(kept) if result.size <= keep else b""
    return result


async def get_streamed(client: httpx.AsyncClient, url: str) -> Streamed:
    async with client.stream("GET", url) as response:
        return await read_streamed(response, keep=len(PREVIOUS_VALUE))


def assert_prefix_of(read: Streamed, sent: bytes | bytearray) -> None:
    """The bytes a reader of the upload got are the first bytes the client sent, in order."""
    assert read.size <= len(sent), f"read {read.size} bytes, more than the {len(sent)} sent"
    assert read.sha256 == hashlib.sha256(sent[: read.size]).hexdigest(), "the reader got other bytes"


def assert_previous(read: Streamed, previous: Streamed) -> None:
    """A GET that ended normally: exactly the previous complete value, with its ETag."""
    assert read.status == 200 and read.complete, read
    assert read.body == PREVIOUS_VALUE, f"served {read.size} bytes as a complete value"
    assert read.headers["etag"] == previous.headers["etag"]
    assert read.headers["content-length"] == str(len(PREVIOUS_VALUE))


async def follow_upload(
    client: httpx.AsyncClient, url: str, previous: Streamed, first_bytes: asyncio.Event
) -> Streamed:
    """GET until the answer is the upload in progress (not ``previous``), then read it to its end."""
    deadline = time.monotonic() + DEADLINE
    while True:
        async with client.stream("GET", url) as response:
            if response.headers.get("etag") != previous.headers["etag"]:
                return await read_streamed(response, first_bytes)
            assert_previous(await read_streamed(response, keep=len(PREVIOUS_VALUE)), previous)
        assert time.monotonic() < deadline, "the upload never became the topic's current value"
        await asyncio.sleep(0.02)


async def test_kill_during_a_100_mb_upload_never_serves_it_as_complete(
    nodes: Nodes, auth: dict[str, str]
) -> None:
    node = nodes.start("upload-kill")
    path = "/raw/big/upload"
    url = node.url + path
    sent = bytearray()
    followers: list[tuple[asyncio.Task[Streamed], asyncio.Event]] = []

    async with (
        httpx.AsyncClient(timeout=TIMEOUT) as client,
        httpx.AsyncClient(timeout=TIMEOUT) as uploader,
    ):
        written = await client.post(url, content=PREVIOUS_VALUE, headers=auth)
        assert written.status_code == 200, written.text
        previous = await get_streamed(client, url)
        assert_previous(previous, previous)
        assert previous.headers["etag"] == f'"{written.json()["id"]}"'

        async def body() -> AsyncIterator[bytes]:
            rng = random.Random(100)
            while len(sent) < KILL_AT:
                piece = rng.randbytes(PIECE_SIZE)
                yield piece
                sent.extend(piece)
                if len(sent) in READERS_JOIN_AT:
                    first_bytes = asyncio.Event()
                    task = asyncio.create_task(follow_upload(client, url, previous, first_bytes))
                    followers.append((task, first_bytes))
            # Every reader is following the upload in progress before the node dies.
            for _, first_bytes in followers:
                await asyncio.wait_for(first_bytes.wait(), DEADLINE)
            await asyncio.to_thread(node.kill)
            raise Killed()

        with pytest.raises((Killed, httpx.TransportError)):
            await uploader.post(url, content=body(), headers=auth)
        assert len(sent) == KILL_AT
        assert len(followers) == len(READERS_JOIN_AT)

        for task, _ in followers:
            cut = await asyncio.wait_for(task, DEADLINE)
            assert cut.status == 200
            assert "content-length" not in cut.headers, "an unfinished upload announced its length"
            assert cut.error is not None, (
                f"a reader of the killed upload got a complete 200 of {cut.size} bytes"
            )
            assert cut.size > 0
            assert_prefix_of(cut, sent)

    await asyncio.to_thread(node.start)

    # Until the dead upload's lease runs out a GET may follow it (and fail); a GET that ends
    # normally is the previous value, never a part of the upload.
    async with httpx.AsyncClient(timeout=httpx.Timeout(DEADLINE)) as client:
        deadline = time.monotonic() + DEADLINE
        while True:
            read = await get_streamed(client, url)
            assert read.status == 200, read
            if read.complete:
                assert_previous(read, previous)
                break
            assert "content-length" not in read.headers
            assert_prefix_of(read, sent)
            assert time.monotonic() < deadline, "GET never fell back to the previous value"
            await asyncio.sleep(0.1)

        head = await client.head(url)
        assert head.headers["etag"] == previous.headers["etag"]
        assert head.headers["content-length"] == str(len(PREVIOUS_VALUE))

        history = (await client.get(f"{node.url}/history/big/upload")).json()
        assert history["current"] == previous.headers["etag"].strip('"')
        statuses = [event["status"] for event in history["events"]]
        assert statuses == ["current", "aborted"], statuses
        upload = history["events"][1]
        assert not upload["complete"]
        # As of the upload's own iteration, the value was (and stays) the previous one.
        as_of = await get_streamed(client, f"{url}?at={upload['iteration']}")
        assert_previous(as_of, previous)

    assert_log_intact(node)
