"""Node-to-node replication between real node processes, each with its own database: links made
with the management commands, writes over HTTP, state read from each node's database."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from spread_core.testing import LiveNode

from .cluster import (
    delete,
    event_count,
    head,
    link,
    node_name,
    query,
    start_node,
    state,
    status,
    wait_converged,
    wait_until,
    write,
)
from .realtime import BASE_DATE, DEADLINE, bearer, open_ws, unique_prefix, writer_token

pytestmark = pytest.mark.e2e


def test_one_link_carries_writes_both_ways_and_reports_its_state(make_node: Callable[..., LiveNode]) -> None:
    a, b = start_node(make_node, "rep-a"), start_node(make_node, "rep-b")
    p = unique_prefix("both")
    link(a, b, p)
    on_a = write(a, f"{p}/from-a", "written on A")
    on_b = write(b, f"{p}/from-b", "written on B")
    converged = wait_converged([a, b], p)
    assert converged == {on_a["path"]: on_a["id"], on_b["path"]: on_b["id"]}
    # The connector saves a link's state every PEER_POLL_INTERVAL: wait for a save after the sync.
    wait_until(lambda: status(a)["peers"][0]["cursor"] >= on_b["iteration"], 5, lambda: str(status(a)))
    wait_until(lambda: status(a)["peers"][0]["connected"], 5, lambda: str(status(a)))
    peer = status(a)["peers"][0]
    assert peer["remote_node"] == node_name(b)
    assert peer["prefixes"] == [p]
    assert peer["last_error"] == ""
    assert state(a, p) == state(b, p)


# ----------------------------------------------------------------------------------------------
# Convergence, and no loops


TOPICS = 10
OPS_PER_NODE = 40
ORIGINS = ("alice", "bob", "carol")
#: Few distinct dates, so that writes on different nodes often carry the same date.
DATES = [BASE_DATE + step * 1000 for step in range(6)]


def hammer(node: LiveNode, prefix: str, seed: int) -> set[str]:
    """Random writes and deletes on ``node`` (equal dates, different origins); the event ids."""
    rng = random.Random(seed)
    ids = set()
    for _ in range(OPS_PER_NODE):
        path = f"{prefix}/t{rng.randrange(TOPICS)}"
        uid, date = rng.choice(ORIGINS), rng.choice(DATES)
        if rng.random() < 0.2:
            ids.add(delete(node, path, uid=uid, date=date)["id"])
        else:
            ids.add(write(node, path, f"{uid}@{date} on {node_name(node)}", uid=uid, date=date)["id"])
    return ids


@pytest.mark.parametrize("topology", ["chain", "triangle"])
def test_concurrent_writes_on_every_node_converge_and_nothing_circulates(
    make_node: Callable[..., LiveNode], topology: str
) -> None:
    a, b, c = (start_node(make_node, f"{topology}-{n}") for n in "abc")
    p = unique_prefix(topology)
    link(a, b, p)
    link(b, c, p)
    if topology == "triangle":
        link(c, a, p)
    with ThreadPoolExecutor(3) as pool:
        written = set().union(*pool.map(hammer, [a, b, c], [p] * 3, [1, 2, 3]))

    converged = wait_converged([a, b, c], p)
    assert set(converged) <= {f"{p}/t{i}" for i in range(TOPICS)}
    assert set(converged.values()) <= written
    # Every node stored every event exactly once, and the logs stop growing: an event travels
    # each link at most once and is never stored again, so nothing circulates.
    time.sleep(1.0)
    heads = [head(node) for node in (a, b, c)]
    time.sleep(1.0)
    for node, before in zip((a, b, c), heads, strict=True):
        assert event_count(node) == len(written)
        assert head(node) == before == len(written)
    # Each link carried each event at most once in each direction (its client's counters).
    for node in (a, b, c):
        for peer in status(node)["peers"]:
            assert peer["entries_sent"] <= len(written), peer
            assert peer["entries_received"] <= len(written), peer


# ----------------------------------------------------------------------------------------------
# Resync


RESYNC_EVENTS = 10_000
RESYNC_CONCURRENCY = 16


async def write_many(node: LiveNode, prefix: str, count: int) -> None:
    """``count`` POSTs to distinct topics, RESYNC_CONCURRENCY at a time."""
    headers = {**bearer(writer_token("bulk")), "Content-Type": "text/plain"}
    queue = iter(range(count))
    async with httpx.AsyncClient(base_url=node.url, headers=headers, timeout=60) as client:

        async def worker() -> None:
            for i in queue:
                response = await client.post(f"/raw/{prefix}/n{i}", content=f"value {i}".encode())
                assert response.status_code == 200, response.text

        await asyncio.gather(*(worker() for _ in range(RESYNC_CONCURRENCY)))


def node_state(node: LiveNode) -> str:
    """Whether ``node`` still runs, and the end of its log (for a failure message)."""
    exit_code = node.process.poll() if node.process is not None else "not started"
    log = node.log_path.read_text(errors="replace")[-3000:] if node.log_path else ""
    return f"exit code {exit_code}; its log ends:\n{log}"


def test_a_killed_node_resyncs_from_its_cursor_and_writes_on_both_sides_merge(
    make_node: Callable[..., LiveNode],
) -> None:
    a, b = start_node(make_node, "resync-a"), start_node(make_node, "resync-b")
    p = unique_prefix("resync")
    link(b, a, p)
    for i in range(5):
        write(a, f"{p}/early{i}", "before the outage")
    wait_converged([a, b], p)
    wait_until(lambda: status(b)["peers"][0]["cursor"] >= head(a), 5, lambda: str(status(b)))
    cursor_before = status(b)["peers"][0]["cursor"]
    assert cursor_before > 0

    b.kill()
    try:
        asyncio.run(write_many(a, p, RESYNC_EVENTS))
    except httpx.TransportError as exc:  # seen twice in CI (2026-12-02): say what A was doing
        raise AssertionError(f"A dropped a connection: {exc!r}; {node_state(a)}") from exc
    b.start()
    on_b = write(b, f"{p}/written-on-b", "while catching up")
    # A crash in the middle of the catch-up: batches are applied atomically with the cursor, so
    # the next connection re-sends at most one batch and nothing is skipped.
    wait_until(lambda: event_count(b) >= RESYNC_EVENTS // 10, 60, lambda: "B does not catch up")
    b.kill()
    b.start()

    converged = wait_converged([a, b], p, deadline=120)
    assert len(converged) == 5 + RESYNC_EVENTS + 1
    assert converged[on_b["path"]] == on_b["id"]
    link_state = status(b)["peers"][0]
    # From its cursor, not from zero: past the events it had before the outage and the batches
    # it applied before the second kill.
    assert link_state["resumed_from"] > cursor_before + RESYNC_EVENTS // 20
    assert event_count(b) == event_count(a) == 5 + RESYNC_EVENTS + 1

    # The other side down: writes on the surviving node are kept and merged when it returns.
    a.kill()
    while_down = write(b, f"{p}/while-a-down", "A is down")
    a.start()
    assert wait_converged([a, b], p, deadline=30)[while_down["path"]] == while_down["id"]


# ----------------------------------------------------------------------------------------------
# Sharding by interest


def test_a_node_stores_only_the_prefixes_it_asked_for_plus_its_own_writes(
    make_node: Callable[..., LiveNode],
) -> None:
    a, b = start_node(make_node, "shard-a"), start_node(make_node, "shard-b")
    wanted, other, local = unique_prefix("wanted"), unique_prefix("other"), unique_prefix("local")
    link(b, a, wanted)
    write(a, f"{wanted}/x", "replicated")
    write(a, f"{other}/y", "stays on A")
    write(b, f"{local}/z", "stays on B")
    write(b, f"{wanted}/from-b", "replicated back")
    wait_converged([a, b], wanted)
    assert set(state(b, wanted)) == {f"{wanted}/x", f"{wanted}/from-b"}
    time.sleep(1.0)  # several heartbeats: nothing else arrives
    assert state(b, other) == {}
    assert state(a, local) == {}
    assert set(state(b)) == {f"{wanted}/x", f"{wanted}/from-b", f"{local}/z"}


# ----------------------------------------------------------------------------------------------
# Credentials


def ws_url(node: LiveNode) -> str:
    return f"ws://127.0.0.1:{node.port}/replicate/"


def hello(node: str, want: list[str]) -> str:
    return json.dumps({"type": "hello", "node": node, "want": want, "since": 0})


async def refused_status(node: LiveNode, token: str | None) -> tuple[int, dict[str, object]]:
    headers = bearer(token) if token else {}
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(node), additional_headers=headers):
            pass
    return refused.value.response.status_code, json.loads(refused.value.response.body or b"{}")


async def closed_with(websocket: ClientConnection) -> tuple[list[dict[str, object]], int | None]:
    """Frames until the node closes the socket, and its close code."""
    frames = []
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(DEADLINE):
            async for message in websocket:
                assert isinstance(message, str)
                frames.append(json.loads(message))
    return frames, websocket.close_code


async def test_the_replication_endpoint_needs_a_node_credential_and_enforces_its_prefixes(
    make_node: Callable[..., LiveNode],
) -> None:
    a = start_node(make_node, "guard-a")
    allowed, forbidden = unique_prefix("allowed"), unique_prefix("forbidden")
    credential = a.manage("spread_token", "--node", "intruder", "--prefix", allowed).strip()

    assert (await refused_status(a, None))[0] == 401
    status_code, body = await refused_status(a, writer_token("a-device"))  # not a node credential
    assert (status_code, body["error"]) == (401, "authentication_failed")

    # Asking for a prefix the credential does not cover: an error frame, then close 4403.
    async with connect(ws_url(a), additional_headers=bearer(credential)) as websocket:
        await websocket.send(hello("intruder", [forbidden]))
        frames, code = await closed_with(websocket)
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "forbidden"
    assert code == 4403

    # Claiming another node's name: refused the same way.
    async with connect(ws_url(a), additional_headers=bearer(credential)) as websocket:
        await websocket.send(hello("someone-else", [allowed]))
        frames, code = await closed_with(websocket)
    assert code == 4403

    # Pushing an entry outside the credential's prefixes: refused, and nothing is stored.
    async with connect(ws_url(a), additional_headers=bearer(credential)) as websocket:
        await websocket.send(hello("intruder", [allowed]))
        their_hello = json.loads(await websocket.recv())
        assert their_hello["type"] == "hello" and their_hello["want"] == [allowed]
        entry = {
            "kind": "write",
            "iteration": 1,
            "id": "0" * 32,
            "path": f"{forbidden}/x",
            "from": "intruder",
            "date": BASE_DATE,
            "content_type": "text/plain",
            "deleted": False,
            "is_blob": False,
            "aborted": False,
            "size": 3,
            "complete": True,
            "sha256": "",
            "value_b64": "YmFk",
        }
        await websocket.send(json.dumps({"type": "events", "entries": [entry], "upto": 1, "head": 1}))
        frames, code = await closed_with(websocket)
    assert code == 4403
    assert any(f.get("code") == "forbidden_path" for f in frames)
    assert state(a, forbidden) == {}
    assert event_count(a) == 0


# ----------------------------------------------------------------------------------------------
# Big values


MIB = 1024 * 1024
BIG_VALUE = 100 * MIB
PIECE = MIB


def piece(index: int) -> bytes:
    """Deterministic, incompressible-looking megabyte number ``index`` of a big value."""
    return hashlib.sha256(str(index).encode()).digest() * (PIECE // 32)


class PausedUpload:
    """A streamed POST of ``size`` bytes that stops after ``pause_at`` bytes until ``resume()``."""

    def __init__(self, node: LiveNode, path: str, size: int, pause_at: int) -> None:
        self.node, self.path, self.size, self.pause_at = node, path, size, pause_at
        self.paused = threading.Event()
        self.resumed = threading.Event()
        self.digest = hashlib.sha256()
        self.report: dict[str, object] = {}
        self.thread = threading.Thread(target=self.run)

    def body(self) -> Iterator[bytes]:
        for index in range(self.size // PIECE):
            if index * PIECE == self.pause_at:
                self.paused.set()
                self.resumed.wait(120)
            data = piece(index)
            self.digest.update(data)
            yield data

    def run(self) -> None:
        headers = {**bearer(writer_token("uploader")), "Content-Type": "application/octet-stream"}
        response = httpx.post(
            f"{self.node.url}/raw/{self.path}", content=self.body(), headers=headers, timeout=300
        )
        self.report = response.json()

    def __enter__(self) -> PausedUpload:
        self.thread.start()
        assert self.paused.wait(120), "the upload did not reach its pause"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.resumed.set()
        self.thread.join(300)


def first_bytes(node: LiveNode, path: str, count: int) -> bytes:
    """The first ``count`` bytes of the node's value at ``path`` (waiting for them to arrive)."""
    with httpx.stream("GET", f"{node.url}/raw/{path}", timeout=60) as response:
        assert response.status_code == 200, response.read()
        received = b""
        for data in response.iter_bytes():
            received += data
            if len(received) >= count:
                return received[:count]
    raise AssertionError(f"the value ended after {len(received)} bytes")


def sha256_of(node: LiveNode, path: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with httpx.stream("GET", f"{node.url}/raw/{path}", timeout=120) as response:
        assert response.status_code == 200
        for data in response.iter_bytes():
            digest.update(data)
            size += len(data)
    return digest.hexdigest(), size


def completed(node: LiveNode, event_id: str) -> bool:
    rows = query(node, f"SELECT complete FROM spread_core_event WHERE event_id = '{event_id}'")
    return bool(rows) and bool(rows[0][0])


def wait_for_topic(node: LiveNode, path: str) -> None:
    wait_until(lambda: path in state(node), 10, lambda: f"{path} never reached {node_name(node)}")


def test_a_big_upload_is_readable_on_the_peer_before_it_ends_and_arrives_identical(
    make_node: Callable[..., LiveNode],
) -> None:
    a, b = start_node(make_node, "blob-a"), start_node(make_node, "blob-b")
    p = unique_prefix("blob")
    link(b, a, p)
    path = f"{p}/video"
    with PausedUpload(a, path, BIG_VALUE, pause_at=BIG_VALUE // 4) as upload:
        # A quarter is uploaded and the upload is held: B already serves its first bytes.
        wait_for_topic(b, path)
        assert first_bytes(b, path, 2 * PIECE) == piece(0) + piece(1)
        assert upload.report == {}  # still in progress
    assert upload.report["status"] == "ok"
    expected = upload.digest.hexdigest()
    assert sha256_of(a, path) == (expected, BIG_VALUE)
    wait_until(lambda: completed(b, str(upload.report["id"])), 60, lambda: "B never completed its copy")
    assert sha256_of(b, path) == (expected, BIG_VALUE)


def test_a_link_that_drops_mid_blob_resumes_it_and_never_serves_it_truncated(
    make_node: Callable[..., LiveNode],
) -> None:
    a, b = start_node(make_node, "drop-a"), start_node(make_node, "drop-b")
    p = unique_prefix("drop")
    link(b, a, p)
    path = f"{p}/archive"
    size = 40 * MIB
    with PausedUpload(a, path, size, pause_at=size // 2) as upload:
        wait_for_topic(b, path)
        assert first_bytes(b, path, PIECE) == piece(0)
        b.kill()  # the link drops with B holding part of the value
        held = [path.stat().st_size for path in Path(b.env["SPREAD_BLOB_ROOT"]).glob("*/*")]
        assert sum(held) > 0  # B's file store holds part of the value
        assert query(b, "SELECT COUNT(*) FROM spread_core_event WHERE complete")[0][0] == 0
        b.start()
    assert upload.report["status"] == "ok"
    expected = upload.digest.hexdigest()
    # B's readers wait for the rest instead of getting a truncated value; the copy is exact.
    assert sha256_of(b, path) == (expected, size)


# ----------------------------------------------------------------------------------------------
# Read-through


def test_read_through_fetches_a_path_the_node_does_not_hold_from_a_peer_without_storing_it(
    make_node: Callable[..., LiveNode],
) -> None:
    a = start_node(make_node, "through-a")
    b = start_node(make_node, "through-b", DJANGO_SETTINGS_MODULE="tests.node_settings_read_through")
    plain = start_node(make_node, "through-plain")
    held, elsewhere = unique_prefix("held"), unique_prefix("elsewhere")
    # B's credential also lets it read `elsewhere`, which its link does not replicate.
    link(b, a, held, credential=[held, elsewhere])
    link(plain, a, held, credential=[held, elsewhere])
    remote = write(a, f"{elsewhere}/doc", "only on A")

    response = httpx.get(f"{b.url}/raw/{elsewhere}/doc", timeout=30)
    assert response.status_code == 200
    assert response.text == "only on A"
    assert response.headers["ETag"] == f'"{remote["id"]}"'
    assert response.headers["X-Spread-Read-Through"] == f"{a.url}/"
    assert state(b, elsewhere) == {}  # passed on, not stored

    assert httpx.get(f"{b.url}/raw/{elsewhere}/missing", timeout=30).status_code == 404
    # Without READ_THROUGH a miss is a 404, and a path the node replicates is answered locally.
    assert httpx.get(f"{plain.url}/raw/{elsewhere}/doc", timeout=30).status_code == 404
    assert httpx.get(f"{b.url}/raw/{held}/not-yet", timeout=30).status_code == 404


# ----------------------------------------------------------------------------------------------
# Managing links on a running node


async def test_a_link_without_prefixes_carries_everything_live_and_removing_it_stops_it(
    make_node: Callable[..., LiveNode],
) -> None:
    a, b = start_node(make_node, "whole-a"), start_node(make_node, "whole-b")
    one, two = unique_prefix("one"), unique_prefix("two")
    await asyncio.to_thread(link, b, a)  # no prefix: everything
    assert "[/]" in await asyncio.to_thread(b.manage, "spread_peer", "list")

    async with open_ws(b, one) as subscriber:
        await subscriber.catch_up()
        written = await asyncio.to_thread(write, a, f"{one}/x", "to a websocket on B")
        update = await subscriber.update()  # delivered on B like a local write
        assert (update["id"], update["value"]) == (written["id"], "to a websocket on B")
    await asyncio.to_thread(write, a, f"{two}/y", "another subtree")
    await asyncio.to_thread(wait_converged, [a, b], "")

    await asyncio.to_thread(b.manage, "spread_peer", "remove", f"{a.url}/")
    assert "No peers." in await asyncio.to_thread(b.manage, "spread_peer", "list")
    await asyncio.sleep(1.0)  # several PEER_POLL_INTERVALs: the running node dropped the link
    after = await asyncio.to_thread(write, a, f"{one}/after", "not replicated any more")
    await asyncio.sleep(1.0)
    assert after["path"] not in await asyncio.to_thread(state, b)
