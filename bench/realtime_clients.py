"""The peer systems' subscribers, publishers and catch-up readers for ``bench.peers_realtime``
(fan-out and catch-up on NATS, Redis and etcd), all asyncio clients in the one measuring process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench import fanout, peers
from bench.load import load
from bench.peer_clients import NATS_BUCKET, NatsKVClient

LOOPBACK = "127.0.0.1"
LOAD_CONCURRENCY = 64  # writes in flight while loading a peer's keys (not measured)
VALUE_B64 = base64.b64encode(fanout.VALUE).decode()

# Connects and subscribes one receiver (holding the gate while it does), sets its ``ready``, then
# hands it every message until cancelled.
Listen = Callable[["Receiver", asyncio.Semaphore], Awaitable[None]]
# Reads a catch-up into a state dict (see ``timed``).
CatchUp = Callable[[dict[str, Any]], Awaitable[None]]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def prefix_range(prefix: str) -> dict[str, str]:
    """The etcd key range (base64, as the JSON gateway wants it) of every key under ``prefix/``."""
    return {"key": _b64(f"{prefix}/"), "range_end": _b64(f"{prefix}0")}


def _index(name: str, separator: str) -> int:
    """The message index in a subject, channel or key such as ``fan.m12`` or ``fan/m12``."""
    return int(name.rpartition(separator)[2][1:])


@dataclass
class Receiver(fanout.Receipts):
    """One peer subscriber: receive time per message index, and what went wrong."""

    ready: asyncio.Event = field(default_factory=asyncio.Event)
    errors: list[str] = field(default_factory=list)
    closed: str | None = None

    async def run(self, listen: Listen, gate: asyncio.Semaphore) -> None:
        try:
            await listen(self, gate)
            self.closed = "the subscription ended"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # reported in the record, never hidden
            self.closed = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            self.ready.set()  # nobody waits for a subscriber that is gone


class Http:
    """One keep-alive HTTP/1.1 connection to etcd's JSON gateway. A few bytes are parsed per
    message: with httpx (h11) and a thousand watch streams open, this process sat at 100 % CPU and
    etcd's figures were the client's."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def open(self) -> Http:
        self.reader, self.writer = await asyncio.open_connection(LOOPBACK, self.port)
        return self

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):  # the server may have closed first; nothing to report
            await self.writer.wait_closed()

    async def _request(self, path: str, payload: dict[str, Any]) -> dict[str, str]:
        """POST ``payload`` as JSON; return the status and headers, the body left unread."""
        body = json.dumps(payload).encode()
        head = f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\nContent-Type: application/json\r\n"
        self.writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status = await self.reader.readline()
        if not status:
            raise ConnectionError(f"{path}: the server closed the connection")
        headers = {"status": status.split()[1].decode()}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return headers

    async def _chunks(self) -> AsyncGenerator[bytes]:
        """The chunks of a chunked body, as they come."""
        while line := await self.reader.readline():
            size = int(line.split(b";")[0], 16)
            if size == 0:
                await self.reader.readline()  # the blank line after the last chunk
                return
            yield await self.reader.readexactly(size)
            await self.reader.readexactly(2)  # CRLF
        raise ConnectionError("the server closed the connection within a response")

    async def post(self, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
        """POST and read the whole answer; return its status and decoded JSON."""
        headers = await self._request(path, payload)
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        else:
            body = b"".join([chunk async for chunk in self._chunks()])
        return int(headers["status"]), json.loads(body) if body else None

    async def stream(self, path: str, payload: dict[str, Any]) -> AsyncGenerator[Any]:
        """POST, then yield each JSON line of the streamed answer, decoded, as it comes."""
        headers = await self._request(path, payload)
        if headers["status"] != "200":
            raise RuntimeError(f"{path}: HTTP {headers['status']}")
        buffer = b""
        async for chunk in self._chunks():
            *lines, buffer = (buffer + chunk).split(b"\n")
            for line in lines:
                if line.strip():
                    yield json.loads(line)


# Fan-out ------------------------------------------------------------------------------------------
class FanoutPeer:
    """A started peer system (``bench.peers``) as the fan-out suite drives it: subscribers on the
    prefix ``fan`` and one publisher of message <i>."""

    transport = ""

    def __init__(self, system: Any) -> None:
        self.port: int = system.port

    async def open(self, subscribers: int) -> None: ...

    async def close(self) -> None: ...

    async def listen(self, receiver: Receiver, gate: asyncio.Semaphore) -> None:
        raise NotImplementedError("FanoutPeer subclasses must implement listen()")

    async def send(self, index: int) -> bool:
        raise NotImplementedError("FanoutPeer subclasses must implement send()")


class NatsFanout(FanoutPeer):
    transport = "core NATS; a connection per subscriber on fan.>; publish fan.m<i> + flush"

    async def _connect(self, errors: list[str]) -> Any:
        import nats

        async def on_error(exc: Exception) -> None:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])

        return await nats.connect(f"nats://{LOOPBACK}:{self.port}", allow_reconnect=False, error_cb=on_error)

    async def open(self, subscribers: int) -> None:
        self.publisher_errors: list[str] = []
        self.publisher = await self._connect(self.publisher_errors)

    async def close(self) -> None:
        await self.publisher.close()

    async def listen(self, receiver: Receiver, gate: asyncio.Semaphore) -> None:
        async def on_message(message: Any) -> None:
            receiver.take(_index(message.subject, "."), time.perf_counter())

        connection = None
        try:
            async with gate:
                connection = await self._connect(receiver.errors)
                await connection.subscribe(f"{fanout.PREFIX}.>", cb=on_message)
                await connection.flush()  # the server has the subscription
            receiver.ready.set()
            await asyncio.Event().wait()  # deliveries come through on_message until cancelled
        finally:
            if connection is not None:
                await connection.close()

    async def send(self, index: int) -> bool:
        await self.publisher.publish(f"{fanout.PREFIX}.m{index}", fanout.VALUE)
        await self.publisher.flush()  # a round trip, as the other publishers wait for their answer
        return True


class RedisFanout(FanoutPeer):
    transport = "Redis pub/sub; a connection per subscriber, PSUBSCRIBE fan/*; PUBLISH fan/m<i>"

    async def open(self, subscribers: int) -> None:
        import redis.asyncio

        self.client = redis.asyncio.Redis(host=LOOPBACK, port=self.port, max_connections=subscribers + 8)

    async def close(self) -> None:
        await self.client.aclose()

    async def listen(self, receiver: Receiver, gate: asyncio.Semaphore) -> None:
        pubsub = self.client.pubsub()
        try:
            messages = pubsub.listen()
            async with gate:
                await pubsub.psubscribe(f"{fanout.PREFIX}/*")
                while (await anext(messages))["type"] != "psubscribe":
                    pass  # nothing is published before every subscriber is ready
            receiver.ready.set()
            async for message in messages:
                received_at = time.perf_counter()
                if message["type"] == "pmessage":
                    receiver.take(_index(message["channel"].decode(), "/"), received_at)
        finally:
            await pubsub.aclose()

    async def send(self, index: int) -> bool:
        await self.client.publish(f"{fanout.PREFIX}/m{index}", fanout.VALUE)
        return True


class EtcdFanout(FanoutPeer):
    transport = "etcd watch on fan/, HTTP JSON gateway, an HTTP connection per watcher; kv/put"

    async def open(self, subscribers: int) -> None:
        self.publisher = await Http(self.port).open()

    async def close(self) -> None:
        await self.publisher.close()

    async def listen(self, receiver: Receiver, gate: asyncio.Semaphore) -> None:
        http = Http(self.port)
        try:
            async with gate:
                await http.open()
                answers = http.stream("/v3/watch", {"create_request": prefix_range(fanout.PREFIX)})
                created = await anext(answers)
                if not created.get("result", {}).get("created"):
                    raise RuntimeError(f"watch not created: {created}")
            receiver.ready.set()
            async with contextlib.aclosing(answers):
                async for answer in answers:
                    received_at = time.perf_counter()
                    if "error" in answer:
                        receiver.errors.append(str(answer["error"])[:200])
                    for event in answer.get("result", {}).get("events", ()):
                        key = base64.b64decode(event["kv"]["key"]).decode()
                        receiver.take(_index(key, "/"), received_at)
        finally:
            await http.close()

    async def send(self, index: int) -> bool:
        status, _ = await self.publisher.post(
            "/v3/kv/put", {"key": _b64(f"{fanout.PREFIX}/m{index}"), "value": VALUE_B64}
        )
        return status == 200


async def peer_fanout_run(
    peer: FanoutPeer, count: int, messages: int, rate: float, burst: int
) -> dict[str, Any]:
    """Subscribe ``count`` receivers, then the phases of ``bench.fanout.run_phases``; the result has
    the shape of ``bench.fanout.fanout_run``'s."""
    tally = fanout.Tally()
    receivers = [Receiver(tally) for _ in range(count)]
    gate = asyncio.Semaphore(fanout.CONNECT_CONCURRENCY)
    await peer.open(count)
    started = time.perf_counter()
    tasks = [asyncio.create_task(r.run(peer.listen, gate)) for r in receivers]
    result: dict[str, Any] = {}
    try:
        with contextlib.suppress(TimeoutError):  # who is not ready is counted below
            await asyncio.wait_for(
                asyncio.gather(*(r.ready.wait() for r in receivers)), fanout.SUBSCRIBE_TIMEOUT
            )
        result["subscribe"] = {
            "seconds": round(time.perf_counter() - started, 3),
            "synced": sum(r.ready.is_set() and r.closed is None for r in receivers),
        }
        result.update(await fanout.run_phases(receivers, tally, peer.send, messages, rate, burst))
    finally:
        result["problems"] = {
            "closed_early": sorted({r.closed for r in receivers if r.closed})[:5],
            "closed_early_count": sum(1 for r in receivers if r.closed),
            "errors": sorted({e for r in receivers for e in r.errors})[:5],
        }
        for task in tasks:
            task.cancel()
        with contextlib.suppress(TimeoutError):  # the servers are stopped next anyway
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), fanout.CLOSE_TIMEOUT)
        await peer.close()
    return result


# Catch-up -----------------------------------------------------------------------------------------
async def timed(read: CatchUp) -> dict[str, Any]:
    """Run ``read(state)``, bounded by CATCHUP_TIMEOUT; it adds the keys it gets to
    ``state["keys"]``, counts ``state["updates"]`` and sets ``state["done"]`` (perf_counter) once
    it holds every key. Return the seconds to done, the items (distinct keys), the updates and any
    error."""
    state: dict[str, Any] = {"keys": set(), "updates": 0, "done": None}
    started = time.perf_counter()
    error = None
    try:
        await asyncio.wait_for(read(state), fanout.CATCHUP_TIMEOUT)
    except Exception as exc:  # reported in the record
        error = f"{type(exc).__name__}: {exc}"[:300]
    if state["done"] is None and error is None:
        error = "ended before it held every key"
    return {
        "seconds": round((state["done"] or time.perf_counter()) - started, 3),
        "items": len(state["keys"]),
        "updates": state["updates"],
        "error": error,
    }


def nats_catch_up(port: int) -> CatchUp:
    """A new connection watches every key under ``cu.`` until the initial values are delivered."""

    async def read(state: dict[str, Any]) -> None:
        import nats

        connection = await nats.connect(f"nats://{LOOPBACK}:{port}", allow_reconnect=False)
        try:
            kv = await connection.jetstream().key_value(NATS_BUCKET)
            watcher = await kv.watch(f"{fanout.CATCHUP_PREFIX}.>")
            async for entry in watcher:
                if entry is None:  # nats-py's marker: the initial values are delivered
                    state["done"] = time.perf_counter()
                    break
                state["updates"] += 1
                state["keys"].add(entry.key)
            await watcher.stop()
        finally:
            await connection.close()

    return read


def etcd_catch_up(port: int, head: int) -> CatchUp:
    """A new connection watches the prefix ``cu/`` from revision 1 until the event at ``head``."""

    async def read(state: dict[str, Any]) -> None:
        http = await Http(port).open()
        try:
            request = {"create_request": {**prefix_range(fanout.CATCHUP_PREFIX), "start_revision": 1}}
            async with contextlib.aclosing(http.stream("/v3/watch", request)) as answers:
                async for answer in answers:
                    if "error" in answer:
                        raise RuntimeError(str(answer["error"])[:200])
                    events = answer.get("result", {}).get("events", ())
                    state["updates"] += len(events)
                    state["keys"].update(event["kv"]["key"] for event in events)
                    if events and int(events[-1]["kv"]["mod_revision"]) >= head:
                        state["done"] = time.perf_counter()
                        return
        finally:
            await http.close()

    return read


def etcd_range(port: int) -> CatchUp:
    """A new connection reads the prefix ``cu/`` with one range request."""

    async def read(state: dict[str, Any]) -> None:
        http = await Http(port).open()
        try:
            status, answer = await http.post("/v3/kv/range", prefix_range(fanout.CATCHUP_PREFIX))
            if status != 200:
                raise RuntimeError(f"range: HTTP {status}: {str(answer)[:200]}")
            state["done"] = time.perf_counter()
            state["updates"] = len(answer.get("kvs", ()))
            state["keys"].update(kv["key"] for kv in answer.get("kvs", ()))
        finally:
            await http.close()

    return read


async def load_nats(system: peers.NatsKV, topics: int) -> dict[str, Any]:
    """Put ``topics`` keys ``cu.<i>`` of 100 B into the KV bucket, concurrently; the load figures."""
    client = NatsKVClient(system.port)
    await client.open(LOAD_CONCURRENCY)
    try:

        async def put(index: int) -> None:
            await client.put(f"{fanout.CATCHUP_PREFIX}/{index:05d}", fanout.VALUE)

        return await load(put, topics, LOAD_CONCURRENCY)
    finally:
        await client.close()


async def load_etcd(port: int, topics: int) -> dict[str, Any]:
    """Put ``topics`` keys ``cu/<i>`` of 100 B into etcd, one revision each, over LOAD_CONCURRENCY
    connections; the load figures, with the head revision and the keys etcd counts."""
    pool: asyncio.Queue[Http] = asyncio.Queue()
    try:
        for _ in range(LOAD_CONCURRENCY):
            pool.put_nowait(await Http(port).open())

        async def put(index: int) -> None:
            http = await pool.get()
            try:
                key = _b64(f"{fanout.CATCHUP_PREFIX}/{index:05d}")
                status, answer = await http.post("/v3/kv/put", {"key": key, "value": VALUE_B64})
                if status != 200:  # load counts it as an error
                    raise RuntimeError(f"put: HTTP {status}: {str(answer)[:200]}")
            finally:
                pool.put_nowait(http)

        figures = await load(put, topics, LOAD_CONCURRENCY)
        http = await pool.get()
        pool.put_nowait(http)
        _, answer = await http.post(
            "/v3/kv/range", {**prefix_range(fanout.CATCHUP_PREFIX), "count_only": True}
        )
        figures.update(head=int(answer["header"]["revision"]), keys=int(answer.get("count", 0)))
        return figures
    finally:
        while not pool.empty():
            await pool.get_nowait().close()
