"""Large values (blobs) through a real node process: streaming while uploading, broken uploads,
kill -9 during an upload, the X-Spread-Sha256 check, and readers that never see mixed values.

Every test talks HTTP over loopback to a ``spread_node`` process (uvicorn + the streaming upload
middleware). No assertion depends on how long something took; where concurrency matters the tests
assert the order of events (first byte read before the upload ended) or wait for an explicit signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx

from spread_core.testing import LiveNode

KIB = 1024
MIB = 1024 * KIB
TIMEOUT = httpx.Timeout(60.0)
#: How long a test waits for something that should happen promptly before it fails.
DEADLINE = 15.0
#: Clients that GET the topic in a loop while blobs are written to it (test 5).
LOOP_READERS = 3


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(size: int, seed: int) -> bytes:
    """Deterministic random bytes: a shifted or mixed copy of another payload never matches."""
    return random.Random(seed).randbytes(size)


@dataclass
class Read:
    """What one GET returned: status, headers, the bytes read, and the transport error if any."""

    status: int
    headers: httpx.Headers
    body: bytes = b""
    error: httpx.TransportError | None = None
    first_byte_at: float | None = None

    @property
    def complete(self) -> bool:
        return self.error is None

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")


async def read_response(response: httpx.Response, first_bytes: asyncio.Event | None = None) -> Read:
    """Read a streamed response to its end, keeping a transport error instead of raising it."""
    result = Read(response.status_code, response.headers)
    body = bytearray()
    try:
        async for piece in response.aiter_raw():
            if piece and result.first_byte_at is None:
                result.first_byte_at = time.monotonic()
                if first_bytes is not None:
                    first_bytes.set()
            body += piece
    except httpx.TransportError as exc:
        result.error = exc
    result.body = bytes(body)
    return result


async def get_value(client: httpx.AsyncClient, url: str) -> Read:
    async with client.stream("GET", url) as response:
        return await read_response(response)


def assert_consistent(read: Read) -> None:
    """A 200 that ended normally is a whole value: its length and digest match its headers."""
    if read.status != 200 or not read.complete:
        return
    if "content-length" in read.headers:
        assert len(read.body) == int(read.headers["content-length"]), read.headers
    if "x-spread-sha256" in read.headers:
        assert sha256(read.body) == read.headers["x-spread-sha256"], read.headers


async def slow_pieces(
    data: bytes,
    piece_size: int,
    pause: float,
    on_piece: Callable[[int], object] | None = None,
) -> AsyncIterator[bytes]:
    """``data`` in pieces with a pause between them; ``on_piece(n)`` runs after piece n was taken."""
    for number, start in enumerate(range(0, len(data), piece_size), start=1):
        yield data[start : start + piece_size]
        if on_piece is not None:
            result = on_piece(number)
            if asyncio.iscoroutine(result):
                await result
        await asyncio.sleep(pause)


class PartialUpload:
    """A POST over a raw socket that announces a Content-Length and sends only part of the body."""

    def __init__(self, node: LiveNode, path: str, token: str, length: int) -> None:
        self.node = node
        self.path = path
        self.token = token
        self.length = length
        self.sent = bytearray()
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        _, self.writer = await asyncio.open_connection("127.0.0.1", self.node.port)
        head = (
            f"POST {self.path} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{self.node.port}\r\n"
            f"Authorization: Bearer {self.token}\r\n"
            "Content-Type: application/octet-stream\r\n"
            f"Content-Length: {self.length}\r\n"
            "\r\n"
        )
        self.writer.write(head.encode("ascii"))
        await self.writer.drain()

    async def send(self, data: bytes) -> None:
        assert self.writer is not None
        assert len(self.sent) + len(data) < self.length, "a partial upload must stay partial"
        self.writer.write(data)
        await self.writer.drain()
        self.sent += data

    async def close(self) -> None:
        """Close the connection; errors of a connection the server already dropped are ignored."""
        if self.writer is None:
            return
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
        self.writer = None


async def abort_reason(node: LiveNode, etag: str | None) -> str:
    """The reason the node logged when it aborted the upload of the event with this ETag."""
    assert etag is not None
    marker = f"Upload of {etag.strip(chr(34))} aborted: "
    assert node.log_path is not None
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        for line in node.log_path.read_text(errors="replace").splitlines():
            if marker in line:
                return line.split(marker, 1)[1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"the node never logged that it aborted {etag}")


async def wait_for_new_upload(
    client: httpx.AsyncClient, url: str, previous: Read, first_bytes: asyncio.Event
) -> asyncio.Task[Read]:
    """Poll GET until the topic's current event is no longer ``previous`` (an upload has started),
    then keep that response streaming in a task; ``first_bytes`` is set when its first bytes arrive.

    Responses that still carry ``previous`` must be exactly it.
    """
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        response = await client.send(client.build_request("GET", url), stream=True)
        if response.status_code == 200 and response.headers.get("etag") != previous.etag:
            assert "content-length" not in response.headers, "an unfinished upload has no Content-Length"

            async def follow(response: httpx.Response = response) -> Read:
                try:
                    return await read_response(response, first_bytes)
                finally:
                    await response.aclose()

            return asyncio.create_task(follow())
        read = await read_response(response)
        await response.aclose()
        assert read.status == 200 and read.complete, read
        assert read.body == previous.body and read.etag == previous.etag
        await asyncio.sleep(0.02)
    raise AssertionError("the upload never became the topic's current value")


# 1. A reader streams a 50 MB value while it is still being uploaded.


async def test_reader_streams_a_50_mb_upload_while_it_arrives(node: LiveNode, auth: dict[str, str]) -> None:
    url = f"{node.url}/raw/blobs/big"
    data = payload(50 * MIB, seed=1)
    digest = sha256(data)
    some_pieces_sent = asyncio.Event()
    generator_ended_at: list[float] = []

    async def body() -> AsyncIterator[bytes]:
        def progress(number: int) -> None:
            if number == 4:
                some_pieces_sent.set()

        async for piece in slow_pieces(data, 256 * KIB, 0.02, progress):
            yield piece
        generator_ended_at.append(time.monotonic())

    async def upload(client: httpx.AsyncClient) -> tuple[httpx.Response, float]:
        response = await client.post(url, content=body(), headers=auth)
        return response, time.monotonic()

    async def stream_concurrently(client: httpx.AsyncClient) -> tuple[Read, str, int]:
        await asyncio.wait_for(some_pieces_sent.wait(), DEADLINE)
        deadline = time.monotonic() + DEADLINE
        while True:  # the first chunk may not be stored yet: 404 until it is
            async with client.stream("GET", url) as response:
                if response.status_code == 200:
                    headers = response.headers
                    hasher = hashlib.sha256()
                    received = 0
                    first_byte_at = None
                    error = None
                    try:
                        async for piece in response.aiter_raw():
                            if piece and first_byte_at is None:
                                first_byte_at = time.monotonic()
                            hasher.update(piece)
                            received += len(piece)
                    except httpx.TransportError as exc:
                        error = exc
                    read = Read(200, headers, error=error, first_byte_at=first_byte_at)
                    return read, hasher.hexdigest(), received
                assert response.status_code == 404, response.status_code
                await response.aread()
            assert time.monotonic() < deadline, "the upload never became readable"
            await asyncio.sleep(0.02)

    async with httpx.AsyncClient(timeout=TIMEOUT) as writer, httpx.AsyncClient(timeout=TIMEOUT) as reader:
        upload_task = asyncio.create_task(upload(writer))
        read_task = asyncio.create_task(stream_concurrently(reader))
        (response, answered_at), (read, read_digest, received) = await asyncio.gather(upload_task, read_task)

        assert response.status_code == 200, response.text
        report = response.json()
        assert report["status"] == "ok"

        assert read.error is None, f"the concurrent reader failed: {read.error!r}"
        assert "content-length" not in read.headers, "the concurrent GET should have started mid-upload"
        assert read.etag == f'"{report["id"]}"'
        assert read.first_byte_at is not None
        assert generator_ended_at, "the upload body was not sent to its end"
        # The reader had bytes of the value before the client had even sent its last piece.
        assert read.first_byte_at < generator_ended_at[0] <= answered_at
        assert received == len(data)
        assert read_digest == digest

        async with reader.stream("GET", url) as later:
            assert later.status_code == 200
            assert later.headers["content-length"] == str(50 * MIB)
            assert later.headers["x-spread-sha256"] == digest
            assert later.headers["etag"] == f'"{report["id"]}"'
            hasher = hashlib.sha256()
            async for piece in later.aiter_raw():
                hasher.update(piece)
        assert hasher.hexdigest() == digest

        head = await reader.head(url)
        assert head.status_code == 200
        assert head.headers["content-length"] == str(50 * MIB)
        assert head.headers["x-spread-sha256"] == digest


# 2. An upload whose client goes away: readers get an error, GET falls back to the last value.


async def test_broken_off_upload_falls_back_to_the_previous_value(
    node: LiveNode, auth: dict[str, str], token: str
) -> None:
    path = "/raw/blobs/broken"
    url = node.url + path
    previous_value = b"the last complete value"
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        older = await client.post(url, content=b"an older value", headers=auth)
        assert older.status_code == 200, older.text
        written = await client.post(url, content=previous_value, headers=auth)
        assert written.status_code == 200, written.text
        previous = await get_value(client, url)
        assert previous.status == 200 and previous.body == previous_value
        assert previous.etag == f'"{written.json()["id"]}"'

        upload = PartialUpload(node, path, token, length=20_000_000)
        try:
            await upload.open()
            await upload.send(payload(1 * MIB, seed=2))
            first_bytes = asyncio.Event()
            follower = await wait_for_new_upload(client, url, previous, first_bytes)
            await asyncio.wait_for(first_bytes.wait(), DEADLINE)
            await upload.send(payload(1 * MIB, seed=3))
        finally:
            await upload.close()

        broken = await asyncio.wait_for(follower, DEADLINE)
        assert broken.status == 200
        assert broken.error is not None, (
            f"a reader of a broken upload got a complete-looking 200 with {len(broken.body)} bytes"
        )
        assert 0 < len(broken.body) <= len(upload.sent) < upload.length
        assert broken.body == bytes(upload.sent[: len(broken.body)])
        # Aborted because the client went away, not later because its lease ran out.
        reason = await abort_reason(node, broken.etag)
        assert reason.startswith("ClientDisconnected"), f"aborted for another reason: {reason}"

        after = await get_value(client, url)
        assert after.status == 200 and after.complete
        assert after.body == previous_value
        assert after.etag == previous.etag
        assert after.headers["content-length"] == str(len(previous_value))
        head = await client.head(url)
        assert head.headers["etag"] == previous.etag
        assert head.headers["content-length"] == str(len(previous_value))


# 3. kill -9 during an upload: what was acknowledged survives, the dead upload is never served.


async def test_kill_during_upload_keeps_acknowledged_values(
    node: LiveNode, auth: dict[str, str], token: str
) -> None:
    acknowledged = {
        "/raw/crash/small": b"small acknowledged value",
        "/raw/crash/blob": payload(700 * KIB, seed=4),
        "/raw/crash/target": payload(300 * KIB, seed=5),  # then overwritten by the killed upload
    }
    target = "/raw/crash/target"
    compared = ("etag", "content-length", "x-spread-sha256", "x-spread-iteration", "x-spread-etag", "from")

    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        before: dict[str, Read] = {}
        for path, value in acknowledged.items():
            written = await client.post(node.url + path, content=value, headers=auth)
            assert written.status_code == 200, written.text
            assert written.json()["status"] == "ok"
            read = await get_value(client, node.url + path)
            assert read.status == 200 and read.complete and read.body == value
            assert read.etag == f'"{written.json()["id"]}"'
            before[path] = read

        upload = PartialUpload(node, target, token, length=20_000_000)
        try:
            await upload.open()
            await upload.send(payload(1 * MIB, seed=6))
            first_bytes = asyncio.Event()
            follower = await wait_for_new_upload(client, node.url + target, before[target], first_bytes)
            await asyncio.wait_for(first_bytes.wait(), DEADLINE)
            await upload.send(payload(1 * MIB, seed=7))
            node.kill()
            cut = await asyncio.wait_for(follower, DEADLINE)
        finally:
            await upload.close()
        assert cut.error is not None, "a reader of the killed upload got a complete-looking 200"
        assert len(cut.body) <= len(upload.sent)
        assert cut.body == bytes(upload.sent[: len(cut.body)])

    node.start()

    # A GET that follows the dead upload ends when its 3 s lease runs out; a shorter read timeout
    # than TIMEOUT keeps a node that never aborts it from stalling the test for a minute.
    async with httpx.AsyncClient(timeout=httpx.Timeout(DEADLINE)) as client:
        # Until the dead upload's lease runs out a GET may follow it (and then fail); never may it
        # end normally with anything but the previous complete value.
        previous = before[target]
        reads: list[Read] = []
        deadline = time.monotonic() + DEADLINE
        while True:
            read = await get_value(client, node.url + target)
            reads.append(read)
            assert read.status == 200, read
            assert_consistent(read)
            if read.complete:
                assert read.body == previous.body, f"served {len(read.body)} bytes as a complete value"
                assert "content-length" in read.headers
                break
            assert read.body == bytes(upload.sent[: len(read.body)])
            assert time.monotonic() < deadline, "GET never fell back to the previous value"
            await asyncio.sleep(0.1)
        assert read.etag == previous.etag

        for path, value in acknowledged.items():
            after = await get_value(client, node.url + path)
            assert after.status == 200 and after.complete, after
            assert after.body == value
            for name in compared:
                assert after.headers.get(name) == before[path].headers.get(name), name
            assert after.headers["x-spread-sha256"] == sha256(value)


# 4. X-Spread-Sha256: a matching digest stores the value, a wrong one is refused with 400.


async def test_client_digest_is_checked(node: LiveNode, auth: dict[str, str]) -> None:
    url = f"{node.url}/raw/blobs/digest"
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        first = await client.post(url, content=b"small first value", headers=auth)
        assert first.status_code == 200, first.text

        async def refused(value: bytes, claimed: str) -> None:
            kept = await get_value(client, url)
            response = await client.post(url, content=value, headers={**auth, "X-Spread-Sha256": claimed})
            assert response.status_code == 400, response.text
            assert response.headers["content-type"] == "application/json"
            assert response.json()["error"] == "digest_mismatch"
            assert response.json()["detail"]
            now = await get_value(client, url)
            assert now.status == 200 and now.complete
            assert now.body == kept.body
            assert now.etag == kept.etag
            assert now.headers["x-spread-sha256"] == kept.headers["x-spread-sha256"]

        big = payload(1 * MIB, seed=8)
        other = payload(1 * MIB, seed=9)
        await refused(big, sha256(other))
        await refused(b"tiny", sha256(b"tinY"))

        stored = await client.post(url, content=big, headers={**auth, "X-Spread-Sha256": sha256(big).upper()})
        assert stored.status_code == 200, stored.text
        assert stored.json()["status"] == "ok"
        read = await get_value(client, url)
        assert read.status == 200 and read.complete
        assert read.body == big
        assert read.etag == f'"{stored.json()["id"]}"'
        assert read.headers["content-length"] == str(len(big))
        assert read.headers["x-spread-sha256"] == sha256(big)

        await refused(other, sha256(big))


# 5. Readers in a loop during blob writes only ever get one of the complete values.


@dataclass
class Observed:
    reads: list[Read] = field(default_factory=list)
    in_progress: list[tuple[bytes, Read]] = field(default_factory=list)


async def test_looping_reader_never_sees_mixed_values(node: LiveNode, auth: dict[str, str]) -> None:
    url = f"{node.url}/raw/blobs/mixed"
    # Different sizes and chunk-unaligned lengths, so that a mix of two values can never pass.
    values = [payload(size, seed=10 + n) for n, size in enumerate([300 * KIB, 2 * MIB + 17, 1 * MIB + 4099])]
    values += [payload(1 * MIB + 333, seed=20), payload(1 * MIB + 333, seed=21)]  # uploaded together
    digests = {sha256(value) for value in values}
    observed = Observed()
    writing = True

    async def loop_reader(client: httpx.AsyncClient) -> None:
        while writing:
            observed.reads.append(await get_value(client, url))
            await asyncio.sleep(0.01)

    async def write(
        client: httpx.AsyncClient, reader: httpx.AsyncClient, value: bytes, *, watch: bool = True
    ) -> dict[str, object]:
        async def watch_in_progress(number: int) -> None:
            """Half-way through, a GET must follow this very upload and end with all of it."""
            if not watch or number != len(value) // (64 * KIB) // 2:
                return
            deadline = time.monotonic() + DEADLINE
            while True:
                response = await reader.send(reader.build_request("GET", url), stream=True)
                if response.status_code == 200 and "content-length" not in response.headers:
                    first_bytes = asyncio.Event()

                    async def follow(
                        response: httpx.Response = response, first_bytes: asyncio.Event = first_bytes
                    ) -> None:
                        try:
                            observed.in_progress.append((value, await read_response(response, first_bytes)))
                        finally:
                            await response.aclose()

                    followers.append(asyncio.create_task(follow()))
                    await asyncio.wait_for(first_bytes.wait(), DEADLINE)
                    return
                observed.reads.append(await read_response(response))
                await response.aclose()
                assert time.monotonic() < deadline, "the upload in progress was never readable"

        response = await client.post(url, content=slow_pieces(value, 64 * KIB, 0.005, watch_in_progress))
        assert response.status_code == 200, response.text
        return dict(response.json())

    followers: list[asyncio.Task[None]] = []
    async with (
        httpx.AsyncClient(timeout=TIMEOUT, headers=auth) as writer,
        httpx.AsyncClient(timeout=TIMEOUT, headers=auth) as second_writer,
        httpx.AsyncClient(timeout=TIMEOUT) as watcher,
        httpx.AsyncClient(timeout=TIMEOUT) as reader,
    ):
        first = await writer.post(url, content=values[0])
        assert first.status_code == 200, first.text
        readers = [asyncio.create_task(loop_reader(reader)) for _ in range(LOOP_READERS)]
        try:
            for value in values[1:3]:
                assert (await write(writer, watcher, value))["status"] == "ok"
            together = await asyncio.gather(
                write(writer, watcher, values[3], watch=False),
                write(second_writer, watcher, values[4], watch=False),
            )
            assert {report["status"] for report in together} <= {"ok", "too_late"}
        finally:
            writing = False
            await asyncio.gather(*readers)
            await asyncio.gather(*followers)
        final = await get_value(reader, url)

    assert final.status == 200 and final.complete
    assert final.body in values[3:], "the last write should win"

    assert observed.in_progress, "no GET followed an upload in progress"
    for value, read in observed.in_progress:
        assert read.status == 200
        assert read.error is None, f"reader of an upload in progress failed: {read.error!r}"
        assert read.body == value

    assert observed.reads, "the looping reader made no request"
    for read in observed.reads + [read for _, read in observed.in_progress]:
        assert read.status == 200, read
        assert read.error is None, f"a GET failed although no upload broke off: {read.error!r}"
        assert sha256(read.body) in digests, f"a GET returned {len(read.body)} bytes that were never written"
        assert_consistent(read)
