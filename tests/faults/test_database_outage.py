"""The database goes away under a running node: PostgreSQL stopped for a while, or a SQLite file
locked by another process. Meanwhile every request answers 503 JSON with a Retry-After (never a
500, an HTML page or a traceback), a websocket subscriber keeps its subscription or resumes it,
and an upload cut off by the fault is never served as complete. Once the database is back the
node serves writes again by itself, without a restart, and the store holds exactly the writes
that were acknowledged.

The PostgreSQL test brings its own private cluster (``initdb`` in a temporary directory, on a free
port; the shared server is never stopped), so it does not depend on the pass's database: it runs
once, in the SQLite pass (the one ``make test-faults`` runs), and is skipped in the PostgreSQL
pass. The locked-SQLite test runs in the SQLite pass only.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from spread_core.testing import LiveNode
from tests.e2e.realtime import View, WebSocket, open_ws, unique_prefix
from tests.nodes import Nodes, uses_postgres
from tests.services import service_missing

from .database import assert_log_intact, assert_unavailable, sqlite_file
from .private_postgres import PrivatePostgres, postgres_bin_dir

pytestmark = pytest.mark.e2e

KIB = 1024
#: Each request during a PostgreSQL outage may wait for the pool's timeout (10 s) before its 503.
TIMEOUT = httpx.Timeout(60.0)
#: How long the node may take to serve writes again once its database is back.
RECOVERY_DEADLINE = 90.0
#: How long a subscriber may take to receive what was written after the recovery.
DELIVERY_DEADLINE = 30.0
#: Writes sent at once while the database is down (group commit batches them together).
CONCURRENT_WRITES = 6
#: Over INLINE_MAX: a value that goes through the streamed blob upload.
BLOB_SIZE = 300 * KIB
UPLOAD_PIECE = 64 * KIB
UPLOAD_PAUSE = 0.05
#: Pieces the in-progress upload sends after the fault began, before it ends its body.
PIECES_AFTER_FAULT = 8
#: A subscription's first frame may wait for the pool's timeout too.
SUBSCRIBE_TIMEOUT = 60.0
#: Websocket close codes of a connection dropped without a close frame, and of a server error.
ABNORMAL_CLOSURE = 1006
INTERNAL_ERROR = 1011


# ----------------------------------------------------------------------------------------------
# What the clients were told, and what the store must hold


@dataclass
class Ledger:
    """Acknowledged values (path → value, event id), writes answered 503 (must not be stored) and
    acknowledged deletes (must stay deleted)."""

    values: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)

    async def write(self, client: httpx.AsyncClient, node: LiveNode, path: str, value: bytes) -> None:
        response = await client.post(f"{node.url}/raw/{path}", content=value)
        assert response.status_code == 200, response.text
        self.values[path] = (value, response.json()["id"])

    async def delete(self, client: httpx.AsyncClient, node: LiveNode, path: str) -> None:
        response = await client.delete(f"{node.url}/raw/{path}")
        assert response.status_code == 200, response.text
        self.values.pop(path)
        self.deleted.add(path)

    async def write_when_back(
        self, client: httpx.AsyncClient, node: LiveNode, path: str, value: bytes
    ) -> None:
        """POST until the node answers 200; every answer before is a proper 503."""
        deadline = time.monotonic() + RECOVERY_DEADLINE
        while True:
            response = await client.post(f"{node.url}/raw/{path}", content=value)
            if response.status_code == 200:
                self.values[path] = (value, response.json()["id"])
                return
            assert_unavailable(response)
            assert time.monotonic() < deadline, "the node did not serve writes again by itself"
            await asyncio.sleep(0.2)

    def current_ids(self) -> dict[str, str]:
        return {path: event_id for path, (_, event_id) in self.values.items()}

    async def assert_stored(self, client: httpx.AsyncClient, node: LiveNode) -> None:
        """Exactly the acknowledged writes: each value with its event id, nothing refused."""
        for path, (value, event_id) in self.values.items():
            read = await settled_read(client, f"{node.url}/raw/{path}")
            assert read.status_code == 200, f"acknowledged {path}: {read.status_code}"
            assert read.content == value, path
            assert read.headers["etag"] == f'"{event_id}"', path
        for path in self.refused | self.deleted:
            response = await client.get(f"{node.url}/raw/{path}")
            assert response.status_code == 404, f"{path} was not acknowledged but is stored"


async def settled_read(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """GET a topic until an answer ends normally. Until the lease of an upload that a fault cut
    off runs out, a GET may follow that upload: it must then end in error (an incomplete chunked
    body), never as a complete 200."""
    deadline = time.monotonic() + RECOVERY_DEADLINE
    while True:
        try:
            response = await client.get(url)
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"GET {url} never ended normally"
            await asyncio.sleep(0.2)
            continue
        if response.status_code == 200:
            assert "content-length" in response.headers, "a complete 200 without Content-Length"
            assert len(response.content) == int(response.headers["content-length"])
        return response


# ----------------------------------------------------------------------------------------------
# A subscriber that lives through the fault


class Subscriber:
    """A websocket subscription to a prefix. If the node closes it, it resumes from its cursor;
    the close codes are kept (1011 would be a consumer that crashed)."""

    def __init__(self, node: LiveNode, prefix: str) -> None:
        self.node = node
        self.prefix = prefix
        self.view = View()
        self.close_codes: list[int | None] = []
        self.stack = contextlib.AsyncExitStack()
        self.ws: WebSocket | None = None

    async def open(self) -> Subscriber:
        self.ws = await self.stack.enter_async_context(
            open_ws(self.node, self.prefix, since=self.view.cursor)
        )
        events, synced = await self.ws.catch_up()
        for event in events:
            self.view.apply(event)
        self.view.mark(synced["iteration"], "synced")
        return self

    async def close(self) -> None:
        await self.stack.aclose()
        self.ws = None

    async def wait_for(self, ids: dict[str, str]) -> None:
        """Read frames until the subscriber's view of the prefix is ``ids``."""
        deadline = time.monotonic() + DELIVERY_DEADLINE
        while self.view.ids != ids:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the subscriber has {self.view.ids}, not {ids}"
            assert self.ws is not None
            try:
                frame = await self.ws.frame(timeout=remaining)
            except ConnectionClosed:
                self.close_codes.append(self.ws.connection.close_code)
                await self.close()
                await self.open()
                continue
            if frame["type"] == "update":
                self.view.apply(frame["event"])
            elif frame["type"] == "heartbeat":
                self.view.mark(frame["iteration"], "heartbeat")
            elif frame["type"] == "error":
                assert frame["code"] == "unavailable", frame
            else:
                raise AssertionError(f"unexpected frame: {frame}")


# ----------------------------------------------------------------------------------------------
# An upload in progress when the fault begins


@dataclass
class SlowUpload:
    """A streamed upload sending a piece every UPLOAD_PAUSE seconds; once ``fault`` is set it sends
    PIECES_AFTER_FAULT more pieces and ends its body, so the node meets the fault while it stores
    the upload."""

    node: LiveNode
    path: str
    auth: dict[str, str]
    fault: asyncio.Event = field(default_factory=asyncio.Event)

    async def body(self) -> AsyncIterator[bytes]:
        rng = random.Random(self.path)
        after_fault = 0
        while after_fault < PIECES_AFTER_FAULT:
            yield rng.randbytes(UPLOAD_PIECE)
            if self.fault.is_set():
                after_fault += 1
            await asyncio.sleep(UPLOAD_PAUSE)

    async def run(self, client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(f"{self.node.url}/raw/{self.path}", content=self.body(), headers=self.auth)

    async def wait_stored(self, client: httpx.AsyncClient, previous_id: str) -> None:
        """Wait until the node has stored the upload's first chunk: it is the topic's value."""
        deadline = time.monotonic() + DELIVERY_DEADLINE
        while True:
            response = await client.head(f"{self.node.url}/raw/{self.path}")
            if response.status_code == 200 and response.headers["etag"] != f'"{previous_id}"':
                assert "x-spread-sha256" not in response.headers, "the upload is not complete"
                return
            assert time.monotonic() < deadline, "the upload was never stored"
            await asyncio.sleep(0.05)


# ----------------------------------------------------------------------------------------------
# The scenario both faults go through


async def requests_while_down(
    client: httpx.AsyncClient,
    node: LiveNode,
    prefix: str,
    ledger: Ledger,
    kept: str,
    doomed: str,
    *,
    reads_blocked: bool,
) -> None:
    """GET, DELETE, several POSTs and a blob POST at once while the database is unavailable: every
    write answers 503 ``unavailable`` with a Retry-After and stores nothing; so does the GET when
    ``reads_blocked``, else it may also answer with the value."""
    posts = {f"{prefix}/down/{number}": f"refused {number}".encode() for number in range(CONCURRENT_WRITES)}
    posts[f"{prefix}/down/blob"] = random.Random(1).randbytes(BLOB_SIZE)
    read, *writes = await asyncio.gather(
        client.get(f"{node.url}/raw/{kept}"),
        client.delete(f"{node.url}/raw/{doomed}"),
        *(client.post(f"{node.url}/raw/{path}", content=value) for path, value in posts.items()),
    )
    if reads_blocked or read.status_code != 200:
        assert_unavailable(read)
    else:
        assert read.content == ledger.values[kept][0]
    for answer in writes:
        assert_unavailable(answer)
    ledger.refused |= set(posts)


async def live_through_a_fault(
    node: LiveNode,
    auth: dict[str, str],
    begin_fault: Callable[[], None],
    end_fault: Callable[[], None],
    *,
    reads_blocked: bool,
) -> None:
    """Write, subscribe and start an upload; ``begin_fault()``; check the requests made during
    the fault; ``end_fault()``; check that the node serves writes again by itself, that the
    subscriber got every change, and that the store holds exactly the acknowledged writes. With
    ``reads_blocked`` GETs must get 503 too (a stopped server), else they may also succeed (SQLite
    readers do not wait for a writer)."""
    prefix = unique_prefix("fault")
    kept, doomed, uploaded = f"{prefix}/kept", f"{prefix}/doomed", f"{prefix}/uploaded"
    ledger = Ledger()
    async with (
        httpx.AsyncClient(timeout=TIMEOUT, headers=auth) as client,
        httpx.AsyncClient(timeout=TIMEOUT, headers=auth) as uploader,
    ):
        for path in (kept, doomed, uploaded):
            await ledger.write(client, node, path, f"{path} before the fault".encode())
        subscriber = await Subscriber(node, prefix).open()
        upload = SlowUpload(node, uploaded, auth)
        upload_task = asyncio.create_task(upload.run(uploader))
        try:
            await upload.wait_stored(client, ledger.values[uploaded][1])

            await asyncio.to_thread(begin_fault)
            try:
                upload.fault.set()
                await requests_while_down(
                    client, node, prefix, ledger, kept, doomed, reads_blocked=reads_blocked
                )
                cut_off = await asyncio.wait_for(upload_task, RECOVERY_DEADLINE)
                assert_unavailable(cut_off)
            finally:
                await asyncio.to_thread(end_fault)

            await ledger.write_when_back(client, node, f"{prefix}/back/first", b"first write when back")
            await ledger.delete(client, node, doomed)
            for number in range(3):
                await ledger.write(client, node, f"{prefix}/back/{number}", f"back {number}".encode())
            await ledger.write(client, node, f"{prefix}/back/blob", random.Random(2).randbytes(BLOB_SIZE))
            await ledger.assert_stored(client, node)
            await subscriber.wait_for(ledger.current_ids())
        finally:
            upload_task.cancel()
            await subscriber.close()
    assert_log_intact(node)
    assert not {ABNORMAL_CLOSURE, INTERNAL_ERROR} & set(subscriber.close_codes), "a consumer crashed"


# ----------------------------------------------------------------------------------------------
# 3a. PostgreSQL stopped under the node


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if uses_postgres():
        pytest.skip("runs once, in the SQLite pass: it brings its own PostgreSQL cluster")
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        service_missing("PostgreSQL's initdb and pg_ctl are not installed under /usr/lib/postgresql")
    cluster = PrivatePostgres(bin_dir)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.mark.postgres
async def test_postgresql_outage_answers_503_and_the_node_recovers_by_itself(
    private_postgres: PrivatePostgres, nodes: Nodes, auth: dict[str, str]
) -> None:
    node = nodes.start(
        "pg-outage",
        DATABASE_URL=private_postgres.create_database("spread"),
        DJANGO_SETTINGS_MODULE="tests.node_settings_realtime",
    )
    await live_through_a_fault(node, auth, private_postgres.stop, private_postgres.start, reads_blocked=True)


@pytest.mark.postgres
async def test_a_subscription_opened_while_postgresql_is_down_is_told_to_come_back(
    private_postgres: PrivatePostgres, nodes: Nodes
) -> None:
    node = nodes.start("pg-subscribe", DATABASE_URL=private_postgres.create_database("spread"))
    prefix = unique_prefix("down")
    await asyncio.to_thread(private_postgres.stop)
    try:
        async with open_ws(node, prefix) as ws:
            frame = await ws.next(timeout=SUBSCRIBE_TIMEOUT)
            assert (frame["type"], frame.get("code")) == ("error", "unavailable"), frame
            assert await ws.closed() not in (ABNORMAL_CLOSURE, INTERNAL_ERROR)
    finally:
        await asyncio.to_thread(private_postgres.start)
    deadline = time.monotonic() + RECOVERY_DEADLINE
    while True:  # once the database is back, the client's next attempt subscribes
        async with open_ws(node, prefix) as ws:
            frame = await ws.next(timeout=SUBSCRIBE_TIMEOUT)
            if frame["type"] == "synced":
                return
            assert (frame["type"], frame.get("code")) == ("error", "unavailable"), frame
        assert time.monotonic() < deadline, "no subscription succeeded after the database came back"
        await asyncio.sleep(0.5)


# ----------------------------------------------------------------------------------------------
# 3b. The SQLite file locked by another process

#: Holds an exclusive transaction on the file given as argument until a line arrives on stdin.
LOCK_HOLDER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
connection.execute("COMMIT")
"""


class LockHolder:
    """Another process holding ``BEGIN EXCLUSIVE`` on a SQLite file between ``lock`` and ``release``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.process: subprocess.Popen[str] | None = None

    def lock(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", LOCK_HOLDER, self.path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "locked"

    def release(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        assert process.stdin is not None
        try:
            process.stdin.write("\n")
            process.stdin.close()
            assert process.wait(timeout=RECOVERY_DEADLINE) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


@pytest.mark.usefixtures("sqlite_pass")
async def test_a_sqlite_file_locked_by_another_process_answers_503_then_recovers(
    nodes: Nodes, auth: dict[str, str]
) -> None:
    node = nodes.start("locked", DJANGO_SETTINGS_MODULE="tests.node_settings_short_busy_timeout")
    holder = LockHolder(sqlite_file(node))
    try:
        await live_through_a_fault(node, auth, holder.lock, holder.release, reads_blocked=False)
    finally:
        holder.release()
